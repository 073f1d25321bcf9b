"""`hookstream process three-ds` end to end: sandbox challenge → receiver → Kafka → processor → respond API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from card_program.conftest import envelope, fund, wait_until
from fixtures.kafka import read_topic
from hookstream.idempotency import idempotency_key
from hookstream.processors.dlq import COMMAND, IDEMPOTENCY_KEY
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import CARDS_3DS, dedup_key, dlq_topic


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


def test_an_answer_the_platform_refuses_for_good_is_dead_lettered_once_with_its_origin_and_no_code(
        e2e_settings, e2e_ledger, start_pipeline, start_processor):
    """ARCHITECTURE 7 for API commands: a permanent refusal (412) is not retried; the command goes to
    `hookstream.three-ds.dlq` with the event it came from in its headers, its 3DS code redacted."""
    fund(e2e_ledger, "acct-1", "100.00", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings)
    sandbox.control("POST", "faults", json={"status": 412, "count": 1, "paths": ["/cards/virtual-cards/"]})
    three_ds = start_processor("three-ds", e2e_settings, api_url=sandbox.base)
    code = sandbox.trigger("3ds", card_id="crd_webhook", transaction_amount="10.00")["code"]

    wait_until(lambda: three_ds.metric("hookstream_outbox_commands_total", command="respond_3ds",
                                       outcome="dead_lettered") >= 1, "the refused answer dead-lettered")
    (letter,) = read_topic(e2e_settings, dlq_topic("three-ds"), 1)
    (event,) = read_topic(e2e_settings, CARDS_3DS, 1)
    assert (letter.headers[h.ORIGIN_TOPIC], letter.headers[h.ORIGIN_PARTITION], letter.headers[h.ORIGIN_OFFSET]) == (
        event.topic, str(event.partition), str(event.offset))
    assert letter.headers[h.DEDUP_KEY] == event.headers[h.DEDUP_KEY]
    assert (letter.headers[COMMAND], letter.headers[IDEMPOTENCY_KEY]) == ("respond_3ds", expected_key("B", code))
    assert letter.headers[h.ERROR_TYPE] and letter.headers[h.ATTEMPTS] == "1"  # permanent: never retried
    assert code.encode() not in letter.value and json.loads(letter.value)["args"]["code"] == "<redacted>"
    assert sandbox.control("GET", "3ds-responses") == []  # the refusal took no effect; nothing sent again
    assert code not in three_ds.proc.output()
