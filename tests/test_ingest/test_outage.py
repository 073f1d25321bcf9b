"""Broker outages: nothing acknowledged is lost, never-retried events survive through the spool."""

from __future__ import annotations

import json
import time

import pytest

from hookstream.broker import LocalBroker
from hookstream.kafka import ensure_topics
from hookstream.schemas import headers as h
from hookstream.schemas.routing import TOPICS
from fixtures.kafka import read_topic
from test_ingest.payloads import CATALOG, envelope

AUTH, THREE_DS, DEPOSIT = CATALOG[0], CATALOG[9], CATALOG[13]
STATIC_POLICY = "hookstream.ingest.authorization:static_policy"


@pytest.fixture
def outage_settings(own_broker: LocalBroker, make_settings):
    if own_broker.pid is None:
        own_broker.start()
    settings = make_settings(kafka_bootstrap=own_broker.bootstrap, delivery_timeout_s=3.0)
    ensure_topics(settings, list(TOPICS))
    return settings


def _body(row, op: str) -> bytes:
    product, event_type, status, _, data, _, _ = row
    return envelope(product, event_type, status, op, data)


def test_broker_down_answers_503_within_the_delivery_timeout_and_the_retry_lands(
    own_broker, outage_settings, start_receiver
):
    receiver = start_receiver(outage_settings)
    assert receiver.post(_body(DEPOSIT, "before")).status_code == 200  # metadata cached, as in production

    own_broker.stop()
    started = time.monotonic()
    response = receiver.post(_body(DEPOSIT, "during"))
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert elapsed <= outage_settings.delivery_timeout_s + 1.0
    ready = receiver.post(b"{}", key=None)  # auth still answered while Kafka is down
    assert ready.status_code == 401

    own_broker.start()
    deadline = time.monotonic() + 30
    while True:  # the platform retries: 1 s doubling
        retry = receiver.post(_body(DEPOSIT, "during"))
        if retry.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert retry.status_code == 200
    ops = [json.loads(r.value)["operation_id"] for r in read_topic(outage_settings, "cryptomate.deposits", 2)]
    assert "before" in ops and "during" in ops  # at least once: an early attempt may land as well


def test_broker_down_authorization_and_3ds_are_answered_in_time_spooled_and_forwarded(
    own_broker, outage_settings, start_receiver
):
    # A fixed answer: this test is about the broker, not the books (the ledger's decisions meet outages in
    # test_authorization_decisions.py).
    receiver = start_receiver(outage_settings, HOOKSTREAM_AUTHORIZATION_POLICY=STATIC_POLICY)
    assert receiver.post(_body(DEPOSIT, "warmup")).status_code == 200

    own_broker.stop()
    started = time.monotonic()
    auth = receiver.post(_body(AUTH, "auth-during-outage"))
    auth_elapsed = time.monotonic() - started
    assert auth.status_code == 200
    assert auth.json() == {"response_code": "05"}
    assert auth_elapsed < 1.2  # the platform's hard deadline

    challenge = receiver.post(_body(THREE_DS, "3ds-during-outage"))
    assert challenge.status_code == 200
    assert challenge.json() == {"response_code": "OK"}

    segments = list(outage_settings.spool_dir.glob("*.seg"))
    assert segments and sum(p.stat().st_size for p in segments) > 0
    metrics = receiver_metrics(receiver)
    assert metrics["hookstream_spool_depth"] == 2.0

    own_broker.start()
    auth_records = read_topic(outage_settings, "cryptomate.cards.transactions", 1, timeout=40)
    challenge_records = read_topic(outage_settings, "cryptomate.cards.3ds", 1, timeout=20)
    assert [r.value for r in auth_records] == [_body(AUTH, "auth-during-outage")]
    assert auth_records[0].headers[h.SPOOLED] == "1"
    assert auth_records[0].headers[h.RESPONSE_CODE] == "05"
    assert [r.value for r in challenge_records] == [_body(THREE_DS, "3ds-during-outage")]
    deadline = time.monotonic() + 10
    while list(outage_settings.spool_dir.glob("*.seg")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(outage_settings.spool_dir.glob("*.seg")) == []
    assert receiver_metrics(receiver)["hookstream_spool_depth"] == 0.0


def test_broker_down_an_invalid_authorization_is_kept_and_unrouted_or_invalid_others_get_503_until_they_land(
    own_broker, outage_settings, start_receiver
):
    """Authentic means kept, through an outage too: an invalid authorization (never sent again by the platform)
    is answered 400 in time and spooled to quarantine; unrouted and other invalid bodies get 503 (retried)."""
    receiver = start_receiver(outage_settings)
    assert receiver.post(_body(DEPOSIT, "warmup")).status_code == 200

    product, event_type, status, _, data, _, _ = AUTH
    bad_auth = envelope(product, event_type, status, "auth-invalid", {**data, "bill_amount": "lots"})
    unknown = envelope("cards", "card_upgraded_to_titanium", "done", "unknown-1", {"card_id": "crd_1"})
    truncated = b'{"product": "cards", "event_type": "deposit", '
    own_broker.stop()
    started = time.monotonic()
    answered = receiver.post(bad_auth)
    assert answered.status_code == 400 and time.monotonic() - started < 1.2
    assert answered.json()["response_code"] == "INVALID"
    assert receiver.post(unknown).status_code == 503
    assert receiver.post(truncated).status_code == 503
    assert receiver_metrics(receiver)["hookstream_spool_depth"] == 1.0

    own_broker.start()
    deadline = time.monotonic() + 60
    pending = {unknown: 200, truncated: 400}
    while pending and time.monotonic() < deadline:  # the platform retries these: 1 s doubling
        pending = {body: want for body, want in pending.items() if receiver.post(body).status_code != want}
        time.sleep(1)
    assert not pending
    quarantined = {r.value: r for r in read_topic(outage_settings, "cryptomate.quarantine", 2, timeout=40)}
    assert set(quarantined) == {bad_auth, truncated}
    assert quarantined[bad_auth].headers[h.SPOOLED] == "1" and "bill_amount" in quarantined[bad_auth].headers[h.ERROR]
    assert [r.value for r in read_topic(outage_settings, "cryptomate.unrouted", 1)] == [unknown]


def test_spool_left_by_a_dead_receiver_is_forwarded_by_the_next_one(
    own_broker, outage_settings, start_receiver
):
    first = start_receiver(outage_settings)
    own_broker.stop()
    assert first.post(_body(AUTH, "orphaned-auth")).status_code == 200
    first.proc.kill()  # dies with the spool on disk

    own_broker.start()
    start_receiver(outage_settings)
    records = read_topic(outage_settings, "cryptomate.cards.transactions", 1, timeout=40)
    assert [r.value for r in records] == [_body(AUTH, "orphaned-auth")]


def test_full_spool_answers_503_rather_than_pretending(own_broker, outage_settings, start_receiver):
    receiver = start_receiver(outage_settings, HOOKSTREAM_SPOOL_MAX_BYTES="4096")
    own_broker.stop()
    codes = [receiver.post(_body(THREE_DS, f"c{i}")).status_code for i in range(6)]
    own_broker.start()
    assert codes[0] == 200  # the first ones fit
    assert 503 in codes  # the bound holds: no 200 without a durable copy


def test_readyz_follows_the_broker(own_broker, outage_settings, start_receiver):
    import httpx

    receiver = start_receiver(outage_settings)
    assert httpx.get(f"{receiver.base}/readyz").status_code == 200
    own_broker.stop()
    time.sleep(1.1)  # readiness is cached for one second
    assert httpx.get(f"{receiver.base}/readyz", timeout=10).status_code == 503
    assert httpx.get(f"{receiver.base}/healthz").status_code == 200
    own_broker.start()


def receiver_metrics(receiver) -> dict[str, float]:
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(f"{receiver.base}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_receiver_stopped_after_an_outage_forwards_its_spool_before_exiting(
    own_broker, outage_settings, start_receiver
):
    receiver = start_receiver(outage_settings, HOOKSTREAM_SPOOL_FORWARD_INTERVAL_S="3600")
    own_broker.stop()
    assert receiver.post(_body(AUTH, "drain-me")).status_code == 200
    assert list(outage_settings.spool_dir.glob("*.seg"))
    own_broker.start()
    receiver.proc.stop(timeout=30)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert '"event": "ingest.stopped"' in receiver.proc.output()
    assert list(outage_settings.spool_dir.glob("*.seg")) == []
    records = read_topic(outage_settings, "cryptomate.cards.transactions", 1, timeout=20)
    assert [r.value for r in records] == [_body(AUTH, "drain-me")]
