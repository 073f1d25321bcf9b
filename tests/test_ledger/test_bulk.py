"""Set-based writes (`ledger.bulk`) on both ledgers: what a deciding batch's commit runs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hookstream.ledger import Ledger, bulk
from hookstream.ledger.errors import UnknownAccount


def test_postings_claims_and_balances_go_in_once_per_key_and_a_missing_account_fails_the_whole_move(
        ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        for account in ("a", "b"):
            uow.ensure_account(account)
        uow.credit("a", Decimal("1.00"), "k-0")  # posted before: the bulk insert must skip it
    with ledger.unit_of_work() as uow:
        # 900 rows: more than one SQLite chunk
        rows = [("a" if i % 2 else "b", "credit", 100 + i, f"k-{i}", None) for i in range(900)]
        inserted = bulk.post_many(uow, rows)
        assert inserted == {("credit", f"k-{i}") for i in range(1, 900)}
        bulk.move_balances(uow, {"a": sum(100 + i for i in range(1, 900, 2)),
                                 "b": sum(100 + i for i in range(2, 900, 2))})
        keys = [f"d-{i}" for i in range(900)]
        assert bulk.claim_many(uow, "p", [(k, "t", 0, i, "ok") for i, k in enumerate(keys[:850])]) == set(keys[:850])
        assert bulk.claimed_among(uow, "p", keys) == set(keys[:850])
        assert bulk.claim_many(uow, "p", [(k, "t", 0, i, "ok") for i, k in enumerate(keys)]) == set(keys[850:])
        bulk.set_outcomes(uow, "p", [("d-1", "unmatched")])
        bulk.unclaim(uow, "p", "d-2")
        assert bulk.claimed_among(uow, "p", ["d-1", "d-2"]) == {"d-1"}
    with ledger.unit_of_work(read_only=True) as uow:
        for account in ("a", "b"):  # the running totals agree with the postings
            assert uow.balance(account).balance == uow.recomputed_balance(account).balance
        assert uow.balance("a").balance == Decimal("1.00") + sum(Decimal(100 + i) / 100 for i in range(1, 900, 2))
        assert uow.inbox_entry("p", "d-1").outcome == "unmatched"
    with pytest.raises(UnknownAccount, match="nowhere"):
        with ledger.unit_of_work() as uow:
            bulk.move_balances(uow, {"a": 5, "nowhere": 5})
    with ledger.unit_of_work(read_only=True) as uow:  # rolled back: "a" did not move either
        assert uow.balance("a").balance == uow.recomputed_balance("a").balance


def test_held_holds_settle_as_a_set_all_or_nothing(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        uow.ensure_account("a")
        uow.credit("a", Decimal("100.00"), "seed")
        uow.link_card("c", "a")
        for i in range(3):
            assert uow.place_hold("a", "c", f"op-{i}", Decimal("10.00"), f"auth-{i}").reason == "ok"
        assert uow.release_hold("c", "op-2", "gone").reason == "released"
    with ledger.unit_of_work(read_only=True) as uow:  # the read-ahead: the pairs that have a hold, as they are
        found = bulk.holds_among(uow, [("c", "op-0"), ("c", "op-2"), ("c", "nope"), ("other", "op-0")])
        assert {pair: (row.account_id, row.amount_cents, row.status) for pair, row in found.items()} == {
            ("c", "op-0"): ("a", 1000, "held"), ("c", "op-2"): ("a", 1000, "released")}
    settle = [bulk.Settlement("c", "op-0", "capture", 1250, "clr-0", None),
              bulk.Settlement("c", "op-1", "release", None, "rev-1", "m")]

    # One hold of the set is not held any more: nothing of the set is written, the caller goes one by one.
    deltas: dict[str, int] = {}
    held: dict[str, int] = {}
    with ledger.unit_of_work() as uow:
        assert not bulk.settle_many(uow, [*settle, bulk.Settlement("c", "op-2", "capture", 1000, "clr-2", None)],
                                    deltas, held)
        assert (deltas, held) == ({}, {})
        assert [uow.hold_status("c", f"op-{i}") for i in range(3)] == ["held", "held", "released"]
        assert uow.statement("a")[-1].kind == "release"  # the seed, three holds, the release of op-2

    # All held: the holds settle, their postings go in with the hold they settle, the moves come back summed.
    with ledger.unit_of_work() as uow:
        assert bulk.settle_many(uow, settle, deltas, held)
        assert (deltas, held) == ({"a": -1250}, {"a": -2000})
        bulk.move_balances(uow, deltas, held)
    with ledger.unit_of_work(read_only=True) as uow:
        assert [uow.hold_status("c", f"op-{i}") for i in range(3)] == ["captured", "released", "released"]
        assert uow.balance("a") == uow.recomputed_balance("a")
        assert uow.balance("a").balance == Decimal("87.50") and uow.balance("a").held == Decimal("0.00")
        tail = [(p.kind, p.amount, p.hold_id is not None) for p in uow.statement("a")[-2:]]
        assert tail == [("capture", Decimal("12.50"), True), ("release", Decimal("10.00"), True)]

    # Again (a redelivery's set): the postings are there already, so nothing is written.
    with ledger.unit_of_work() as uow:
        uow.execute_sql("UPDATE holds SET status = 'held'" + (" WHERE operation_id = 'op-0'"), {} if
                        uow.dialect_name == "postgresql" else ())
        assert not bulk.settle_many(uow, settle[:1], {}, {})
        assert uow.hold_status("c", "op-0") == "held"
