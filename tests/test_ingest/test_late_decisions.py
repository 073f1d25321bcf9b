"""Authorizations answered with the fallback code leave no hold behind (real ledgers, real locks)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from decimal import Decimal

import psycopg

from hookstream.ingest.authorization import AuthorizationRequest, Decider
from hookstream.ingest.policy import LedgerPolicy
from hookstream.ledger import Ledger
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key, parse_data
from test_ingest.payloads import card_txn, envelope


def _request(op: str, amount: str, card: str = "crd_late") -> AuthorizationRequest:
    env = parse_envelope(envelope("cards", "authorization", "pending", op, card_txn(card, amount)))
    return AuthorizationRequest(env, parse_data(env), dedup_key(env))


def _funded(url: str) -> Ledger:
    ledger = Ledger(url, auto_upgrade=True)
    ledger.upgrade()
    with ledger.unit_of_work() as uow:
        uow.link_card("crd_late", "acct-late")
        uow.credit("acct-late", Decimal("100.00"), "seed")
    return ledger


async def _settle(ledger: Ledger, want_first: str | None, timeout: float = 10) -> tuple:
    """Poll the books while the event loop keeps running (late decisions complete on it)."""
    deadline = time.monotonic() + timeout
    while True:
        with ledger.unit_of_work(read_only=True) as uow:
            state = (uow.hold_status("crd_late", "late-1"), uow.hold_status("crd_late", "late-2"),
                     uow.balance("acct-late").held)
        if state[0] == want_first or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.05)


async def _two_late(decider: Decider, ledger: Ledger, lock, unlock, want_first: str | None) -> tuple:
    # connected and warmed up first (a card of an empty account: declined, nothing held), so the first late
    # decision's batch leaves within its 0.1 s on a busy machine
    warm, _ = await decider.decide(_request("warm-0", "1.00", card="crd_unlinked"), 5.0)
    assert warm.hold_id is None
    lock()
    first = asyncio.create_task(decider.decide(_request("late-1", "30.00"), 0.1))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(decider.decide(_request("late-2", "30.00"), 0.1))
    answers = await asyncio.gather(first, second)
    await asyncio.sleep(0.1)
    unlock()  # well inside the ledger's lock wait (half the budget)
    await asyncio.sleep(0.5)
    return [a for a, _ in answers], await _settle(ledger, want_first)


def test_decisions_not_started_by_the_deadline_are_never_made(make_settings):
    settings = make_settings(authorization_budget_ms=800)
    ledger = _funded(settings.database_url)
    decider = Decider(settings, LedgerPolicy(settings))
    blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    # SQLite takes the write lock before any decision of a batch starts: both are still waiting.
    answers, state = asyncio.run(_two_late(decider, ledger, lambda: blocker.execute("BEGIN IMMEDIATE"),
                                           lambda: blocker.execute("ROLLBACK"), None))
    assert [(a.response_code, a.reason) for a in answers] == [("05", "timeout"), ("05", "timeout")]
    assert state == (None, None, Decimal("0.00"))
    decider.close()
    ledger.close()


def test_an_approval_made_after_the_fallback_answer_is_released(make_settings, postgres_database_url):
    url = postgres_database_url
    settings = make_settings(authorization_budget_ms=800, database_url=url)
    ledger = _funded(url)
    decider = Decider(settings, LedgerPolicy(settings))
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    blocker = psycopg.connect(conninfo, autocommit=False)

    def lock() -> None:  # the account row: late-1's hold waits on it mid-decision
        blocker.execute("SELECT 1 FROM accounts WHERE id = 'acct-late' FOR UPDATE")

    answers, (first, second, held) = asyncio.run(_two_late(decider, ledger, lock, blocker.rollback, "released"))
    blocker.close()
    assert [(a.response_code, a.reason) for a in answers] == [("05", "timeout"), ("05", "timeout")]
    # late-1 was being decided: approved after the answer, then its hold released; late-2 queued
    # behind it in the same batch may be decided late too, and is released the same way.
    assert first == "released"
    assert second in (None, "released")
    assert held == Decimal("0.00")
    decider.close()
    ledger.close()
