"""Concurrency, the authorization budget, metrics and secrets, through the running receiver."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from fixtures.http_load import post_many
from hookstream.schemas import headers as h
from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, envelope

AUTH, THREE_DS, DEPOSIT = CATALOG[0], CATALOG[9], CATALOG[13]


def _body(row, op: str, **data_overrides) -> bytes:
    product, event_type, status, _, data, _, _ = row
    return envelope(product, event_type, status, op, {**data, **data_overrides})


def test_2000_concurrent_valid_requests_become_2000_records(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    bodies = [_body(DEPOSIT, f"0xload{i:04d}", wallet_id=f"wlt_{i % 37}") for i in range(2000)]

    port = int(receiver.url.split(":")[2].split("/")[0])
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies,
                                   {"X-Webhook-Key": KEY, "Content-Type": "application/json"}, 200))
    codes = result.statuses
    assert codes.count(200) == 2000
    records = topic_reader("cryptomate.deposits", 2000, timeout=60)
    assert len(records) == 2000
    assert {json.loads(r.value)["operation_id"] for r in records} == {f"0xload{i:04d}" for i in range(2000)}


def test_authorization_is_answered_with_the_configured_code_and_the_decision_is_published(
    settings, start_receiver, topic_reader
):
    receiver = start_receiver(settings, HOOKSTREAM_AUTHORIZATION_POLICY="hookstream.ingest.authorization:static_policy",
                              HOOKSTREAM_AUTHORIZATION_STATIC_CODE="00")
    started = time.monotonic()
    response = receiver.post(_body(AUTH, "life_evt_ok"))
    assert time.monotonic() - started < 1.2
    assert response.status_code == 200
    assert response.json() == {"response_code": "00"}
    [record] = topic_reader("cryptomate.cards.transactions", 1)
    assert record.value == _body(AUTH, "life_evt_ok")
    assert record.headers[h.RESPONSE_CODE] == "00"
    assert record.headers[h.DECISION_REASON] == "static"
    assert float(record.headers[h.DECISION_MS]) >= 0


def test_slow_policy_gets_the_fallback_code_within_the_budget(settings, start_receiver, topic_reader):
    receiver = start_receiver(
        settings,
        HOOKSTREAM_AUTHORIZATION_POLICY="test_ingest.policies:slow_policy",
        HOOKSTREAM_AUTHORIZATION_BUDGET_MS="300",
        HOOKSTREAM_AUTHORIZATION_FALLBACK_CODE="91",
        PYTHONPATH="tests",
    )
    started = time.monotonic()
    response = receiver.post(_body(AUTH, "life_evt_slow"))
    elapsed = time.monotonic() - started
    assert response.json() == {"response_code": "91"}
    assert elapsed < 0.6
    [record] = topic_reader("cryptomate.cards.transactions", 1)
    assert record.headers[h.DECISION_REASON] == "timeout"
    text = httpx.get(f"{receiver.base}/metrics").text
    assert 'hookstream_authorization_fallbacks_total{cause="timeout"} 1.0' in text
    assert 'hookstream_authorization_decisions_total{reason="timeout",response_code="91"} 1.0' in text


def test_failing_policy_gets_the_fallback_code(settings, start_receiver):
    receiver = start_receiver(settings, HOOKSTREAM_AUTHORIZATION_POLICY="test_ingest.policies:broken_policy",
                              PYTHONPATH="tests")
    assert receiver.post(_body(AUTH, "life_evt_err")).json() == {"response_code": "05"}


def test_keys_and_3ds_codes_never_reach_logs_metrics_or_error_bodies(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings, HOOKSTREAM_LOG_LEVEL="debug")
    code = "3ds-code-7f1e2d"
    assert receiver.post(_body(THREE_DS, code, code=code)).status_code == 200
    bad = receiver.post(_body(THREE_DS, code, code=code, card_id=None))
    assert bad.status_code == 400
    receiver.post(b"{}", key="wrong-but-long-enough-key")
    metrics_text = httpx.get(f"{receiver.base}/metrics").text
    [record] = topic_reader("cryptomate.cards.3ds", 1)
    assert code not in record.headers[h.DEDUP_KEY] and code not in record.headers[h.OPERATION_ID]
    log = receiver.proc.output()
    assert "webhook.published" in log
    for secret in (KEY, code, "wrong-but-long-enough-key"):
        assert secret not in log
        assert secret not in metrics_text
        assert secret not in bad.text


def test_metrics_count_received_and_published_per_event_type(settings, start_receiver):
    receiver = start_receiver(settings)
    for i in range(3):
        receiver.post(_body(DEPOSIT, f"m{i}"))
    text = httpx.get(f"{receiver.base}/metrics").text
    assert 'hookstream_webhooks_received_total{event_type="deposit",product="virtual_wallets"} 3.0' in text
    assert 'hookstream_webhooks_published_total{event_type="deposit",product="virtual_wallets"} 3.0' in text
    assert "hookstream_publish_duration_seconds_bucket" in text
    assert 'hookstream_request_duration_seconds_count{route="webhook",status="200"} 3.0' in text


def test_several_workers_share_the_load_log_redacted_json_and_aggregate_metrics(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings, workers=2)
    port = int(receiver.url.split(":")[2].split("/")[0])
    bodies = [_body(DEPOSIT, f"0xw{i}") for i in range(200)]
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies,
                                   {"X-Webhook-Key": KEY, "Content-Type": "application/json"}, 20))
    assert result.statuses == [200] * 200
    assert len(topic_reader("cryptomate.deposits", 200)) == 200
    text = httpx.get(f"{receiver.base}/metrics").text
    assert 'hookstream_webhooks_published_total{event_type="deposit",product="virtual_wallets"} 200.0' in text
    lines = [line for line in receiver.proc.output().splitlines() if "webhook.published" in line]
    assert len(lines) == 200 and all(line.startswith("{") for line in lines)  # every worker: JSON logs
    assert KEY not in receiver.proc.output()


def test_a_record_acknowledged_after_it_was_spooled_is_not_forwarded_again(settings, start_receiver, topic_reader):
    """A 3DS challenge whose ack comes later than its spool deadline is spooled, then acknowledged after all:
    the forwarder finds it already on Kafka and leaves exactly one copy there."""
    receiver = start_receiver(settings, HOOKSTREAM_SPOOL_AFTER_S="0.0005", HOOKSTREAM_SPOOL_FORWARD_INTERVAL_S="3")
    ops = [f"late_ack_{i:02d}" for i in range(40)]
    port = int(receiver.url.split(":")[2].split("/")[0])
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", [_body(THREE_DS, op) for op in ops],
                                   {"X-Webhook-Key": KEY, "Content-Type": "application/json"}, 20))
    assert result.statuses.count(200) == len(ops)
    deadline = time.monotonic() + 30
    while httpx.get(f"{receiver.base}/healthz").json()["spool_depth"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{receiver.base}/healthz").json()["spool_depth"] == 0
    text = httpx.get(f"{receiver.base}/metrics").text
    spooled = next(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("hookstream_spool_written_total"))
    assert spooled > 0  # the deadline was shorter than an ack: the copies exist
    records = topic_reader("cryptomate.cards.3ds", len(ops))
    assert sorted(json.loads(r.value)["operation_id"] for r in records) == ops


def test_a_body_at_the_largest_allowed_limit_is_published(settings, start_receiver, topic_reader):
    """HOOKSTREAM_MAX_BODY_BYTES cannot be set past what one Kafka record holds; at that bound the body
    and its metadata headers still fit, so the webhook is kept (not 503 forever)."""
    from hookstream.settings import MAX_RECORD_BODY_BYTES

    receiver = start_receiver(settings, HOOKSTREAM_MAX_BODY_BYTES=str(MAX_RECORD_BODY_BYTES))
    small = _body(DEPOSIT, "0xbiggest", note="")
    body = _body(DEPOSIT, "0xbiggest", note="x" * (MAX_RECORD_BODY_BYTES - len(small)))
    assert len(body) == MAX_RECORD_BODY_BYTES
    response = receiver.post(body, **{"X-Trace-Id": "t" * 4096})
    assert response.status_code == 200, receiver.proc.output()[-3000:]
    [record] = topic_reader("cryptomate.deposits", 1)
    assert record.value == body


def test_an_absurd_request_timestamp_is_refused_not_a_server_error(settings, start_receiver):
    receiver = start_receiver(settings, HOOKSTREAM_REQUEST_TIMESTAMP_WINDOW_S="300")
    for stamp in ("1" * 4096, "9" * 400, "-" + "9" * 30, "1e999"):
        assert receiver.post(_body(DEPOSIT, "0xstamp"), **{"X-Request-Timestamp": stamp}).status_code == 401
    fresh = str(int(time.time() * 1000))
    assert receiver.post(_body(DEPOSIT, "0xstamp"), **{"X-Request-Timestamp": fresh}).status_code == 200
