"""`hookstream process three-ds` end to end: sandbox challenge → receiver → Kafka → processor → respond API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from card_program.conftest import envelope, fund, wait_until
from hookstream.idempotency import idempotency_key
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key


def expected_key(gen: str, code: str) -> str:
    body = envelope(gen, "cards", "notification_3ds_authorization", "pending", code, {"code": code, "card_id": "c"})
    return idempotency_key("three-ds", dedup_key(parse_envelope(body)), "3ds-respond")


@pytest.mark.parametrize("gen", ["A", "B"])
def test_challenges_are_answered_with_the_policy_verdict_and_stale_ones_expire_unanswered(
        gen, e2e_settings, e2e_ledger, start_pipeline, start_processor):
    fund(e2e_ledger, "acct-1", "100.00", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings, generation=gen)
    three_ds = start_processor("three-ds", e2e_settings, api_url=sandbox.base)

    covered = sandbox.trigger("3ds", card_id="crd_webhook", transaction_amount="42.50")["code"]
    too_much = sandbox.trigger("3ds", card_id="crd_webhook", transaction_amount="150.00")["code"]
    # A challenge whose 5 minutes ran out before it reached us (sent verbatim by the sandbox).
    stale = str(uuid.uuid4())
    old = (datetime.now(UTC) - timedelta(minutes=6)).isoformat().replace("+00:00", "Z")
    body = envelope(gen, "cards", "notification_3ds_authorization", "pending", stale,
                    {"code": stale, "card_id": "crd_webhook", "merchant_name": "Acme Coffee",
                     "merchant_country_code": "USA", "transaction_amount": "1.00",
                     "transaction_currency": "USD", "transaction_timestamp": old})
    sandbox.trigger("raw", body=json.loads(body), policy="no_retry")

    answers = wait_until(lambda: len(r := sandbox.control("GET", "3ds-responses")) >= 2 and r, "two 3DS answers")
    wait_until(lambda: three_ds.outcome("expired") >= 1, "the stale challenge recorded as expired")
    by_code = {a["code"]: a for a in sandbox.control("GET", "3ds-responses")}
    assert set(by_code) == {covered, too_much}, "the expired challenge must not be answered"
    assert (by_code[covered]["approve"], by_code[covered]["outcome"]) == (True, "ACCEPTED")
    assert (by_code[too_much]["approve"], by_code[too_much]["outcome"]) == (False, "ACCEPTED")
    for code in (covered, too_much):
        assert by_code[code]["idempotency_key"] == expected_key(gen, code)
    assert len(answers) == 2
    assert three_ds.outcome("ok") == 2 and three_ds.outcome("dead_lettered") == 0

    # The verdicts are logged with their reasons; the secret codes appear nowhere in the output.
    answered = {(e["approve"], e["reason"]) for e in three_ds.log_events("three_ds.decided")}
    assert answered == {(True, "approved"), (False, "insufficient_funds")}
    output = three_ds.proc.output()
    assert '"event.processed"' in output and not any(c in output for c in (covered, too_much, stale))
    with e2e_ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-1").available == D("100.00"), "3DS moves no money"
