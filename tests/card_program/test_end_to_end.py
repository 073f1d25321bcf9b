"""The card program end to end: sandbox purchases → receiver (ledger policy places the hold) → Kafka →
`hookstream process cards` settles it, in both envelope generations."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from card_program.conftest import balance, fund, wait_until

LEDGER_POLICY = "hookstream.ingest.policy:ledger_policy"


@pytest.mark.parametrize("gen", ["A", "B"])
def test_purchase_clearing_reversal_and_refund_leave_the_books_right(
        gen, e2e_settings, e2e_ledger, start_pipeline, start_processor):
    fund(e2e_ledger, "acct-1", "100.00", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings, generation=gen, policy=LEDGER_POLICY)
    cards = start_processor("cards", e2e_settings)

    purchase = sandbox.trigger("authorization", card_id="crd_webhook", bill_amount="42.50")
    assert (purchase["status"], purchase["response_code"]) == ("approved", "00")
    assert balance(e2e_ledger, "acct-1") == (D("100.00"), D("42.50"), D("57.50")), "the receiver's hold"
    assert sandbox.api("POST", "/cards/webhook/simulate/clearing", json={"card_id": "crd_webhook"}).status_code == 201
    wait_until(lambda: balance(e2e_ledger, "acct-1") == (D("57.50"), D("0.00"), D("57.50")), "the capture")

    second = sandbox.trigger("authorization", card_id="crd_webhook", bill_amount="20.00")
    assert second["status"] == "approved"
    assert sandbox.api("POST", "/cards/webhook/simulate/reversal",
                       json={"card_id": "crd_webhook", "bill_amount": 20.00}).status_code == 201
    assert sandbox.api("POST", "/cards/webhook/simulate/refund",
                       json={"card_id": "crd_webhook", "bill_amount": 10.00}).status_code == 201
    too_big = sandbox.trigger("authorization", card_id="crd_webhook", bill_amount="500.00")
    assert (too_big["status"], too_big["response_code"]) == ("declined", "51")

    # authorization, authorized, cleared, authorization, authorized, reversal, refund, authorization, declined
    wait_until(lambda: cards.handled() >= 9, "nine card records handled")
    wait_until(lambda: balance(e2e_ledger, "acct-1") == (D("67.50"), D("0.00"), D("67.50")), "final books")
    assert cards.metric("hookstream_ledger_unmatched_total") == 0
    assert cards.outcome("dead_lettered") == 0
    with e2e_ledger.unit_of_work(read_only=True) as uow:
        kinds = [p.kind for p in uow.statement("acct-1")]
        assert uow.recomputed_balance("acct-1") == uow.balance("acct-1")
    assert kinds == ["credit", "hold", "capture", "hold", "release", "refund"]
