"""The ledger authorization policy: a linked, active card whose available balance covers the bill → hold."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from hookstream.ingest.authorization import AuthorizationRequest, Decision
from hookstream.rules import MerchantRules, rule_violation
from hookstream.ledger import CardState, Ledger, LedgerError, UnitOfWork
from hookstream.logs import get_logger
from hookstream.schemas.routing import loggable_operation_id
from hookstream.settings import Settings

log = get_logger(__name__)

APPROVE = "00"
DO_NOT_HONOUR = "05"
INSUFFICIENT_FUNDS = "51"
MAX_BATCH = 256
POSTGRES_DECIDERS = 4

_Item = tuple[AuthorizationRequest, "Future[Decision]"]
MAX_RELEASE_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class _Release:
    request: AuthorizationRequest
    attempts: int


class LedgerPolicy:
    """Approve with a hold when the card is linked, not frozen or blocked, passes the merchant
    rules, and `bill_amount` (USD) fits the account's available balance.

    A card not linked yet is linked to `metadata.account` when the authorization carries one.
    Decisions are group-committed: one thread takes every waiting authorization, decides each in
    its own savepoint and commits them together — one fsync for a burst instead of one each, and
    no writers queueing on the database lock. On SQLite (one writer at a time) one thread does this;
    on Postgres several do, and every batch takes its account rows in one global order (accounts are
    looked up first, then decided in account order), so concurrent batches never deadlock.
    """

    def __init__(self, settings: Settings) -> None:
        # A lock wait must give up well inside the answer budget, never hold the answer hostage.
        busy_ms = max(50, int(settings.authorization_budget_ms * 0.5))
        sqlite = settings.database_url.startswith("sqlite")
        workers = 1 if sqlite else POSTGRES_DECIDERS
        self.ledger = Ledger(settings.database_url, busy_timeout_ms=busy_ms, pool_size=workers + 1)
        self.rules = MerchantRules.from_settings(settings)
        self._queue: queue.SimpleQueue[_Item | _Release | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"hookstream-holds-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # --- the Decider's interface ----------------------------------------------------------------
    def submit(self, request: AuthorizationRequest) -> Future[Decision]:
        future: Future[Decision] = Future()
        broken = self._rules_broken(request)
        if broken is not None:
            future.set_result(Decision(DO_NOT_HONOUR, broken))
        else:
            self._queue.put((request, future))
        return future

    def __call__(self, request: AuthorizationRequest) -> Decision:
        return self.submit(request).result()

    def compensate(self, request: AuthorizationRequest, decision: Decision) -> None:
        """The approval came after the fallback decline was sent: queue the release of its hold.

        Releases run on the deciding thread, in its batches, so they never race decisions for the
        account's row; a release whose batch fails is queued again.
        """
        self._queue.put(_Release(request, attempts=0))

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self.ledger.close()

    # --- deciding -------------------------------------------------------------------------------
    def _rules_broken(self, request: AuthorizationRequest) -> str | None:
        data = request.data
        merchant = data.merchant_data
        return rule_violation(self.rules, data.bill_amount, merchant.mcc_code if merchant else None,
                              merchant.country if merchant else None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._decide_batch(batch)

    def _decide_batch(self, batch: list[_Item | _Release]) -> None:
        outcomes: list[tuple[Future[Decision], Decision | BaseException]] = []
        releases: list[_Release] = []
        # one item: its transaction is its step; several: a savepoint each, so one failure is contained
        step = (lambda: nullcontext()) if len(batch) == 1 else (lambda: uow.savepoint("hs_auth"))
        try:
            with self.ledger.unit_of_work() as uow:
                for account, item, card in self._in_account_order(uow, batch):
                    if isinstance(item, _Release):
                        try:
                            with step():
                                self._release(uow, item.request)
                            releases.append(item)
                        except LedgerError as exc:
                            log.warning("authorization.late_release_failed", error=type(exc).__name__)
                            self._retry_release(item)
                        continue
                    request, future = item
                    if not future.set_running_or_notify_cancel():  # answered with the fallback already
                        continue
                    try:
                        with step():
                            outcomes.append((future, self._decide(uow, request, card, account)))
                    except LedgerError as exc:
                        outcomes.append((future, exc))
        except Exception as exc:  # noqa: BLE001 - the commit failed: no decision of the batch stands
            log.error("authorization.batch_failed", size=len(batch), error=type(exc).__name__, detail=str(exc))
            outcomes = []
            for item in batch:
                if isinstance(item, _Release):
                    continue
                future = item[1]
                if future.running() or (not future.done() and future.set_running_or_notify_cancel()):
                    outcomes.append((future, exc))
            for release in releases:
                self._retry_release(release)
        for future, outcome in outcomes:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _retry_release(self, release: _Release) -> None:
        if release.attempts + 1 >= MAX_RELEASE_ATTEMPTS:
            log.error("authorization.late_hold_not_released", dedup_key=release.request.dedup_key,
                      operation_id=loggable_operation_id(release.request.envelope))
            return
        self._queue.put(_Release(release.request, release.attempts + 1))

    @staticmethod
    def _release(uow: UnitOfWork, request: AuthorizationRequest) -> None:
        result = uow.release_hold(request.data.card_id, request.envelope.operation_id,
                                  f"{request.dedup_key}:late-release", memo="late decision released")
        log.warning("authorization.late_hold_released", operation_id=loggable_operation_id(request.envelope),
                    released=result.applied)

    @staticmethod
    def _in_account_order(uow: UnitOfWork, batch: list[_Item | _Release]) -> list[tuple[str, Any, Any]]:
        """The batch with each item's card state and account, sorted by account (the lock order)."""
        keyed = []
        for item in batch:
            request = item.request if isinstance(item, _Release) else item[0]
            card = uow.card_state(request.data.card_id)
            account = card.account_id if card is not None else (request.data.metadata or {}).get("account")
            keyed.append((account if isinstance(account, str) else "", item, card))
        keyed.sort(key=lambda k: k[0])
        return keyed

    @staticmethod
    def _decide(uow: UnitOfWork, request: AuthorizationRequest, card: CardState | None, account: str) -> Decision:
        data = request.data
        if card is None:
            if not account:
                return Decision(DO_NOT_HONOUR, "card_not_linked")
            card = uow.link_card(data.card_id, account)
        if card.frozen:
            return Decision(DO_NOT_HONOUR, "card_frozen")
        if card.blocked:
            return Decision(DO_NOT_HONOUR, "card_blocked")
        hold = uow.place_hold(card.account_id, data.card_id, request.envelope.operation_id,
                              data.bill_amount, request.dedup_key, memo="authorization")
        if hold.placed:
            return Decision(APPROVE, "approved" if hold.reason == "ok" else hold.reason, hold_id=str(hold.hold_id))
        if hold.reason == "insufficient_funds":
            return Decision(INSUFFICIENT_FUNDS, "insufficient_funds")
        return Decision(DO_NOT_HONOUR, hold.reason)


def ledger_policy(settings: Settings) -> LedgerPolicy:
    """`HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.policy:ledger_policy`."""
    return LedgerPolicy(settings)
