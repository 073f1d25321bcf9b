"""Envelope normalisation, money, routing and dedup keys: pure, no broker."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from hookstream.schemas import EnvelopeError, dedup_key, parse_envelope, route_for
from hookstream.schemas.routing import ROUTES, TOPICS, loggable_operation_id, parse_data


def test_generation_a_and_b_normalise_to_the_same_envelope():
    a = parse_envelope(b'{"operation":"TREASURY","sub_operation":"DEPOSIT","operation_id":"x","status":"SUCCESS","data":{}}')
    b = parse_envelope(b'{"product":"treasury","event_type":"deposit","operation_id":"x","status":"success","data":{}}')
    assert (a.generation, b.generation) == ("A", "B")
    assert (a.product, a.event_type, a.status) == (b.product, b.event_type, b.status) == ("treasury", "deposit", "success")
    assert dedup_key(a) == dedup_key(b) == "treasury:deposit:success:x"


@pytest.mark.parametrize("raw, expected", [
    ("42.50", Decimal("42.50")), (45.23, Decimal("45.23")), (0.1, Decimal("0.1")), (10, Decimal("10")),
    ("1e2", Decimal("100")),
])
def test_amounts_as_strings_or_numbers_become_exact_decimals(raw, expected):
    env = parse_envelope(json.dumps({"product": "cards", "event_type": "authorization", "operation_id": "o",
                                     "data": {"card_id": "c", "bill_amount": raw}}))
    assert parse_data(env).bill_amount == expected


@pytest.mark.parametrize("raw", ["lots", True, "NaN", "Infinity", None])
def test_non_numeric_amounts_are_refused(raw):
    env = parse_envelope(json.dumps({"product": "cards", "event_type": "authorization", "operation_id": "o",
                                     "data": {"card_id": "c", "bill_amount": raw}}))
    with pytest.raises(EnvelopeError) as info:
        parse_data(env)
    assert info.value.errors[0]["loc"] == "data.bill_amount"
    assert "input" not in info.value.errors[0]


def test_unknown_fields_are_kept_not_refused():
    env = parse_envelope(b'{"product":"cards","event_type":"refund","operation_id":"o","new_field":1,'
                         b'"data":{"card_id":"c","surprise":{"a":1}}}')
    assert env.model_extra == {"new_field": 1}
    assert parse_data(env).model_extra == {"surprise": {"a": 1}}


@pytest.mark.parametrize("body", [b"", b"[]", b"null", b'{"data":{}}', b'{"product":"cards","data":{}}',
                                  b'{"product":" ","event_type":"x","operation_id":"o"}', b"\xff\xfe"])
def test_non_envelopes_raise_envelope_error(body):
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def test_velocity_block_dedup_key_is_card_and_block_time():
    env = parse_envelope(b'{"product":"cards","event_type":"card_blocked_by_velocity","operation_id":"crd",'
                         b'"status":"success","data":{"card_id":"crd","blocked_at":"2026-04-23T10:00:00Z"}}')
    assert dedup_key(env) == "cards:card_blocked_by_velocity:crd:2026-04-23T10:00:00Z"


def test_3ds_operation_id_which_is_the_code_never_appears_in_keys():
    env = parse_envelope(b'{"product":"cards","event_type":"notification_3ds_authorization",'
                         b'"operation_id":"otp-123456","data":{"code":"otp-123456","card_id":"c"}}')
    assert "otp-123456" not in dedup_key(env)
    assert "otp-123456" not in loggable_operation_id(env)
    assert dedup_key(env) == dedup_key(env)  # stable: redeliveries dedupe


def test_clearing_pending_and_success_of_one_operation_have_different_dedup_keys():
    base = {"product": "CARDS", "event_type": "CLEARING", "operation_id": "op", "data": {"card_id": "c"}}
    keys = {dedup_key(parse_envelope(json.dumps({**base, "status": s}))) for s in ("PENDING", "SUCCESS")}
    assert len(keys) == 2


def test_every_route_targets_a_created_topic_and_keys_by_entity():
    for (product, event_type), route in ROUTES.items():
        assert route.topic in TOPICS
        assert route.key_field in route.model.model_fields, (product, event_type)
    assert route_for(parse_envelope(b'{"product":"cards","event_type":"nope","operation_id":"o"}')) is None
