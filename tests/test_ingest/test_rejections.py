"""Authentication, size limit, quarantine and unrouted: authentic means kept, the rest is refused."""

from __future__ import annotations

import json
import time

import httpx

from hookstream.schemas import headers as h
from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, envelope

DEPOSIT = CATALOG[13]


def _body(op: str = "0xdep") -> bytes:
    product, event_type, status, _, data, _, _ = DEPOSIT
    return envelope(product, event_type, status, op, data)


def test_wrong_or_missing_key_is_401_without_detail_and_publishes_nothing(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    for key in (None, "wrong-key-000000000000", KEY[:-1], KEY + "x", ""):
        response = receiver.post(_body(), key=key)
        assert response.status_code == 401
        assert response.content == b""
    for topic in ("cryptomate.deposits", "cryptomate.quarantine", "cryptomate.unrouted"):
        assert topic_reader(topic, 1, timeout=2) == []


def test_both_keys_of_a_rotation_are_accepted(make_settings, start_receiver, topic_reader):
    settings = make_settings(webhook_keys="old-key-0000000001,new-key-0000000002")
    from hookstream.kafka import ensure_topics
    from hookstream.schemas.routing import TOPICS
    ensure_topics(settings, list(TOPICS))
    receiver = start_receiver(settings)
    assert receiver.post(_body("a"), key="old-key-0000000001").status_code == 200
    assert receiver.post(_body("b"), key="new-key-0000000002").status_code == 200
    assert receiver.post(_body("c"), key="other-key-000000003").status_code == 401
    assert len(topic_reader("cryptomate.deposits", 2)) == 2


def test_request_timestamp_outside_the_window_is_refused(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings, HOOKSTREAM_REQUEST_TIMESTAMP_WINDOW_S="300")

    def ms_from_now(offset_s: float) -> str:  # read the clock per request: a loaded machine may take seconds
        return str(int((time.time() + offset_s) * 1000))

    fresh = ms_from_now(-5)
    assert receiver.post(_body("fresh"), **{"X-Request-Timestamp": fresh}).status_code == 200
    assert receiver.post(_body("stale"), **{"X-Request-Timestamp": ms_from_now(-330)}).status_code == 401
    assert receiver.post(_body("future"), **{"X-Request-Timestamp": ms_from_now(+330)}).status_code == 401
    assert receiver.post(_body("garbage"), **{"X-Request-Timestamp": "yesterday"}).status_code == 401
    records = topic_reader("cryptomate.deposits", 1)
    assert [json.loads(r.value)["operation_id"] for r in records] == ["fresh"]
    assert records[0].headers[h.REQUEST_TIMESTAMP] == fresh


def test_timestamp_window_zero_disables_the_check(settings, start_receiver):
    receiver = start_receiver(settings, HOOKSTREAM_REQUEST_TIMESTAMP_WINDOW_S="0")
    assert receiver.post(_body("old"), **{"X-Request-Timestamp": "1000"}).status_code == 200


def test_body_over_the_limit_is_413_and_not_published(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings, HOOKSTREAM_MAX_BODY_BYTES="4096")
    product, event_type, status, _, data, _, _ = DEPOSIT
    big = envelope(product, event_type, status, "big", {**data, "padding": "x" * 5000})
    assert receiver.post(big).status_code == 413
    assert receiver.post(_body("small")).status_code == 200
    records = topic_reader("cryptomate.deposits", 1)
    assert [json.loads(r.value)["operation_id"] for r in records] == ["small"]


def test_non_json_body_goes_to_quarantine_byte_for_byte_and_answers_400(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    body = b'{"product": "cards", "event_type": '  # truncated JSON
    response = receiver.post(body)
    assert response.status_code == 400
    assert response.json()["response_code"] == "INVALID"
    [record] = topic_reader("cryptomate.quarantine", 1)
    assert record.value == body
    assert "not JSON" in json.loads(record.headers[h.ERROR])["error"]


def test_invalid_event_data_is_quarantined_with_the_error_and_no_input_values(
    settings, start_receiver, topic_reader
):
    receiver = start_receiver(settings)
    body = json.dumps({"product": "cards", "event_type": "notification_3ds_authorization",
                       "operation_id": "secret-3ds-code-123", "status": "pending",
                       "data": {"code": "secret-3ds-code-123", "transaction_amount": "lots"}}).encode()
    response = receiver.post(body)
    assert response.status_code == 400
    assert "secret-3ds-code-123" not in response.text
    [record] = topic_reader("cryptomate.quarantine", 1)
    assert record.value == body
    error = json.loads(record.headers[h.ERROR])
    assert {d["loc"] for d in error["details"]} >= {"data.card_id", "data.transaction_amount"}
    assert "secret-3ds-code-123" not in record.headers[h.ERROR]
    assert "secret-3ds-code-123" not in receiver.proc.output()


def test_envelope_without_product_or_operation_is_quarantined(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    body = b'{"kind": "deposit", "operation_id": "x", "data": {}}'
    assert receiver.post(body).status_code == 400
    assert [r.value for r in topic_reader("cryptomate.quarantine", 1)] == [body]


def test_unknown_product_or_event_type_goes_to_unrouted_and_answers_200(settings, start_receiver, topic_reader):
    receiver = start_receiver(settings)
    bodies = [
        envelope("cards", "card_renamed", "success", "op-u1", {"card_id": "c"}),
        envelope("payments", "payout", "success", "op-u2", {"anything": 1}, generation="A", casing="upper"),
    ]
    for body in bodies:
        response = receiver.post(body)
        assert response.status_code == 200
        assert response.json() == {"response_code": "OK"}
    records = topic_reader("cryptomate.unrouted", 2)
    assert sorted(r.value for r in records) == sorted(bodies)
    assert {r.headers[h.EVENT_TYPE] for r in records} == {"card_renamed", "payout"}


def test_webhook_path_serves_only_post_and_other_routes_still_answer(settings, start_receiver, topic_reader):
    """POST on the webhook path skips the router (WebhookFastPath); every other request still goes through it."""
    receiver = start_receiver(settings)
    assert httpx.get(receiver.url, timeout=10).status_code == 405
    assert httpx.put(receiver.url, content=_body("put"), headers={"X-Webhook-Key": KEY}, timeout=10).status_code == 405
    assert receiver.post(_body("0xfast")).status_code == 200
    assert [r.value for r in topic_reader("cryptomate.deposits", 1)] == [_body("0xfast")]
    base = receiver.url.rsplit("/webhooks/", 1)[0]
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
