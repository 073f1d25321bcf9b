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
