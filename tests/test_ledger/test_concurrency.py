"""Concurrent authorizations never spend more than the available balance."""

from __future__ import annotations

import threading
import time
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


def test_a_sqlite_writer_of_the_process_gets_its_turn_beside_one_that_writes_back_to_back(tmp_path) -> None:
    """A processor's lane commits and begins again at once; its dispatcher's round must get the next turn,
    not wait out SQLite's busy-handler sleeps while the lane keeps winning (it waited up to 2.5 s)."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", auto_upgrade=True)
    order: list[str] = []
    stop = threading.Event()

    def write(name: str, n: int, hold_s: float = 0.0) -> None:
        with ledger.unit_of_work() as uow:
            uow.credit(f"acct-{name}", Decimal("1.00"), f"{name}-{n}", memo="turns")
            order.append(name)
            time.sleep(hold_s)  # the lane decides its batch under the write lock

    def busy() -> None:
        n = 0
        while not stop.is_set():
            write("busy", n, hold_s=0.003)
            n += 1

    try:
        with ledger.unit_of_work() as uow:
            uow.ensure_account("acct-busy")
            uow.ensure_account("acct-other")
        lane = threading.Thread(target=busy)
        lane.start()
        while len(order) < 20:  # the busy writer is in its stride
            time.sleep(0.005)
        for n in range(30):
            write("other", n)
        stop.set()
        lane.join(timeout=30)
    finally:
        ledger.close()

    first, last = order.index("other"), len(order) - 1 - order[::-1].index("other")
    runs, run = [], 0
    for name in order[first:last + 1]:
        if name == "busy":
            run += 1
        else:
            runs.append(run)
            run = 0
    # Turns alternate: while one writer waits, the other commits at most once (twice when the waiter arrived
    # just after the lock was handed on) before the waiter's turn.
    assert order.count("other") == 30 and max(runs) <= 2, runs
