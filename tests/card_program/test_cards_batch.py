"""The cards processor's decisions inside one batch, on both real ledgers: what a decision reads is what
its batch applies.

A batch decides each event on the view (committed rows plus what the batch's earlier decisions staged)
and applies the settlements at commit. Two follow-ups of one hold in one batch see each other; a hold
that someone else settles between the read and the commit gets the batch refused and decided again,
never a capture applied on a stale read.
"""

from __future__ import annotations

from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from card_program.conftest import balance, card_data, envelope, fund
from hookstream.domain.effects import Settle
from hookstream.ledger.unmatched import unmatched
from hookstream.logs import get_logger
from hookstream.processors.apply import Applier
from hookstream.processors.batch import Batch, HoldChanged
from hookstream.processors.cards import CardsProcessor
from hookstream.processors.parse import parse_record
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key

LOG = get_logger("test.cards_batch")


def _event(offset: int, event_type: str, status: str, operation_id: str, amount: str):
    body = envelope("B", "cards", event_type, status, operation_id, card_data("crd_a", amount))
    record = SimpleNamespace(topic="cards", partition=0, offset=offset, key=b"crd_a", value=body, headers=[])
    event, _ = parse_record(record, {}, None, LOG)
    return event


def _hold(ledger, operation_id: str, amount: str) -> None:
    body = envelope("B", "cards", "authorization", "pending", operation_id, card_data("crd_a", amount))
    with ledger.unit_of_work() as uow:
        assert uow.place_hold("acct-1", "crd_a", operation_id, D(amount), dedup_key(parse_envelope(body)),
                              memo="authorization").reason == "ok"


def _inbox(ledger) -> dict[str, str]:
    with ledger.unit_of_work(read_only=True) as uow:
        rows = uow.connection.execute(text("SELECT dedup_key, outcome FROM inbox WHERE processor = 'cards'"))
        return {r[0]: r[1] for r in rows}


def test_a_clearing_after_a_reversal_in_the_same_batch_sees_the_hold_released(settings, ledger) -> None:
    fund(ledger, "acct-1", "100.00", cards={"crd_a": "WEBHOOK"})
    _hold(ledger, "life_1", "20.00")
    applier = Applier(CardsProcessor(settings), settings, can_send=False)
    batch = Batch(ledger)
    reversal = _event(1, "reversal", "success", "life_1", "20.00")
    cleared = _event(2, "cleared", "success", "life_1", "20.00")
    assert applier.apply(batch, reversal, LOG, 1) == "ok"
    assert applier.apply(batch, cleared, LOG, 1) == "ok"
    # Staged, not committed: the clearing read the hold as the reversal leaves it.
    assert [s.effects.settlements for s in batch.staged] == [
        [Settle("release", "crd_a", "life_1", "released")],
        [Settle("capture", "crd_a", "life_1", "unmatched", D("20.00"))]]
    batch.commit("cards")

    # The hold freed once; the clearing's money left all the same (a debit), kept for an operator.
    assert balance(ledger, "acct-1") == (D("80.00"), D("0.00"), D("80.00"))
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.hold_status("crd_a", "life_1") == "released"
        assert [(u.dedup_key, u.reason, u.posted) for u in unmatched(uow, "cards")] == [
            (cleared.dedup_key, "unmatched", True)]
        assert uow.recomputed_balance("acct-1") == uow.balance("acct-1")
    assert _inbox(ledger) == {reversal.dedup_key: "ok", cleared.dedup_key: "unmatched"}


@pytest.mark.parametrize("ledger_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_hold_settled_elsewhere_after_the_decision_read_it_refuses_the_batch_and_is_decided_again(
        settings, ledger) -> None:
    # Postgres only: on SQLite the batch holds the database's write lock from its first statement, so no
    # other writer can come between its read and its commit.
    fund(ledger, "acct-1", "100.00", cards={"crd_a": "WEBHOOK"})
    _hold(ledger, "life_1", "20.00")
    applier = Applier(CardsProcessor(settings), settings, can_send=False)
    cleared = _event(1, "cleared", "success", "life_1", "20.00")

    batch = Batch(ledger)
    assert applier.apply(batch, cleared, LOG, 1) == "ok"
    assert batch.staged[0].effects.settlements == [Settle("capture", "crd_a", "life_1", "captured", D("20.00"))]
    # The receiver's compensation (say) releases that hold in its own transaction, before the batch commits.
    with ledger.unit_of_work() as uow:
        assert uow.release_hold("crd_a", "life_1", "compensation", memo="late approval").reason == "released"
    with pytest.raises(HoldChanged):
        batch.commit("cards")
    # Nothing of the batch committed: no capture, no claim.
    assert balance(ledger, "acct-1") == (D("100.00"), D("0.00"), D("100.00"))
    assert _inbox(ledger) == {}

    # Decided again (as the lane does after a failed batch): on what the ledger holds now.
    batch = Batch(ledger)
    assert applier.apply(batch, cleared, LOG, 2) == "ok"
    assert batch.staged[0].effects.settlements == [Settle("capture", "crd_a", "life_1", "unmatched", D("20.00"))]
    batch.commit("cards")
    assert balance(ledger, "acct-1") == (D("80.00"), D("0.00"), D("80.00"))
    assert _inbox(ledger) == {cleared.dedup_key: "unmatched"}
