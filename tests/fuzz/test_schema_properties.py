"""Properties of the pure contracts (no broker): bounded amounts, bounded headers, one name per spelling."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pydantic_core import from_json

from fuzz.conftest import CASES
from fuzz.strategies import hostile_number, hostile_timestamp, three_ds_body
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import EnvelopeError, canonical_name, parse_envelope
from hookstream.schemas.routing import ROUTES, dedup_key, loggable_operation_id, parse_data, route_for
from hookstream.schemas.types import MONEY_MAX_ADJUSTED_EXPONENT, MONEY_MIN_EXPONENT, to_decimal

PURE = hypothesis_settings(max_examples=max(CASES, 200), deadline=None, database=None)


@PURE
@given(hostile_number)
def test_an_amount_is_a_small_finite_decimal_or_a_value_error_and_costs_no_time(raw: str):
    try:
        value = from_json(raw)  # as the receiver's parser hands it over
    except ValueError:
        return  # not JSON to pydantic either (e.g. an integer of 5,000 digits): the body is quarantined
    started = time.perf_counter()
    try:
        amount = to_decimal(value)
    except ValueError:
        return
    finally:
        assert time.perf_counter() - started < 0.05
    if amount is None:
        return
    assert isinstance(amount, Decimal) and amount.is_finite()
    assert amount.adjusted() <= MONEY_MAX_ADJUSTED_EXPONENT and amount.as_tuple().exponent >= MONEY_MIN_EXPONENT
    assert int(amount * 100).bit_length() < 200  # the ledger's arithmetic on it is cheap


@PURE
@given(hostile_timestamp, st.sampled_from(sorted(ROUTES)))
def test_hostile_timestamps_parse_or_are_refused_as_invalid_data(raw: str, route: tuple[str, str]):
    product, event_type = route
    body = ('{"product": "%s", "event_type": "%s", "operation_id": "op", "data": {"card_id": "c", '
            '"wallet_id": "w", "id": "i", "code": "c0de", "amount": "1", "bill_amount": "1", '
            '"created_at": %s, "blocked_at": %s, "transaction_timestamp": %s}}') % (product, event_type, raw, raw, raw)
    try:
        envelope = parse_envelope(body)
        parse_data(envelope, route_for(envelope))
    except EnvelopeError as exc:
        assert exc.errors  # what is wrong, named
        assert "c0de" not in json.dumps(exc.errors)


@PURE
@given(st.binary(max_size=4 * h.MAX_VALUE_BYTES), st.binary(max_size=4 * h.MAX_VALUE_BYTES))
def test_header_values_are_bounded_and_distinct_values_stay_distinct(a: bytes, b: bytes):
    assert len(h.fit(a)) <= h.MAX_VALUE_BYTES
    assert h.fit(a) == a if len(a) <= h.MAX_VALUE_BYTES else h.fit(a) != a
    if a != b:
        assert h.fit(a) != h.fit(b)


@PURE
@given(st.text(max_size=60))
def test_canonical_names_are_idempotent(name: str):
    once = canonical_name(name)
    assert canonical_name(once) == once
    assert once == once.strip("_")


@PURE
@given(three_ds_body())
def test_a_3ds_code_never_appears_in_what_is_logged_or_keyed_in_any_spelling(pair: tuple[bytes, str]):
    body, code = pair
    envelope = parse_envelope(body)
    assert envelope.event_type == "notification_3ds_authorization"
    assert code not in loggable_operation_id(envelope)
    assert code not in dedup_key(envelope)


@pytest.mark.parametrize("op_length", [10, 600, 200_000])
def test_operation_ids_of_any_length_give_bounded_keys(op_length: int):
    envelope = parse_envelope({"product": "cards", "event_type": "deposit", "operation_id": "o" * op_length,
                               "data": {"wallet_id": "w" * op_length, "amount": "1"}})
    assert len(loggable_operation_id(envelope).encode()) <= h.MAX_VALUE_BYTES
    assert len(dedup_key(envelope).encode()) <= h.MAX_VALUE_BYTES
