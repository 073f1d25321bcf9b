"""Concurrent authorizations never spend more than the available balance."""

from __future__ import annotations

import threading
from decimal import Decimal

from hookstream.ledger import HoldResult, Ledger

THREADS = 200


def test_200_concurrent_holds_of_10_against_1000_approve_exactly_100_and_leave_0_available(
        funded: Ledger) -> None:
    start = threading.Barrier(THREADS)
    results: list[HoldResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def authorize(n: int) -> None:
        try:
            start.wait(timeout=30)
            with funded.unit_of_work() as uow:  # each authorization is its own transaction
                assert uow.claim("ingest", f"cards|authorization|pending|op-{n}")
                result = uow.place_hold("acct", "card-1", f"op-{n}", Decimal("10.00"), f"auth-op-{n}")
            with lock:
                results.append(result)
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=authorize, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == []
    assert len(results) == THREADS
    assert sum(r.placed for r in results) == 100
    assert {r.reason for r in results if not r.placed} == {"insufficient_funds"}
    with funded.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct").available == Decimal("0.00")
        assert uow.balance("acct").held == Decimal("1000.00")
        assert uow.recomputed_balance("acct") == uow.balance("acct")
        assert sum(1 for p in uow.statement("acct") if p.kind == "hold") == 100
