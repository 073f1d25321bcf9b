"""The ledger authorization policy: a linked, active card whose available balance covers the bill → hold."""

from __future__ import annotations

import heapq
import queue
import threading
import time
import zlib
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field

from hookstream import metrics
from hookstream.ingest.authorization import AuthorizationRequest, Decision
from hookstream.ledger import CardState, Ledger, LedgerError, UnitOfWork
from hookstream.logs import get_logger
from hookstream.rules import MerchantRules, rule_violation
from hookstream.schemas.routing import loggable_operation_id
from hookstream.settings import Settings

log = get_logger(__name__)

APPROVE = "00"
DO_NOT_HONOUR = "05"
INSUFFICIENT_FUNDS = "51"
MAX_BATCH = 256
POSTGRES_DECIDERS = 4
RELEASE_BACKOFF_S = (0.05, 5.0)  # first and longest wait between attempts to release a late hold
RELEASE_ATTEMPTS = 60  # ~4 minutes of attempts before a late hold is reported as stuck


@dataclass(frozen=True, slots=True)
class _Decide:
    request: AuthorizationRequest
    future: Future[Decision]


@dataclass(order=True, slots=True)
class _Release:
    due: float
    attempts: int = field(compare=False)
    request: AuthorizationRequest = field(compare=False)


_Item = _Decide | _Release


class LedgerPolicy:
    """Approve with a hold when the card is linked, not frozen or blocked, passes the merchant
    rules, and `bill_amount` (USD) fits the account's available balance.

    A card not linked yet is linked to `metadata.account` when the authorization carries one.
    Decisions are group-committed: a deciding thread takes every authorization waiting for it,
    decides each in its own savepoint and commits them together — one fsync for a burst, and no
    writers queueing on the database lock. SQLite (one writer at a time) gets one such thread;
    Postgres gets several, each owning the cards that hash to it, and every batch takes its account
    rows in sorted order, so batches that share an account wait briefly and never deadlock.
    """

    def __init__(self, settings: Settings) -> None:
        # A lock wait must give up well inside the answer budget, never hold the answer hostage.
        busy_ms = max(50, int(settings.authorization_budget_ms * 0.5))
        workers = 1 if settings.database_url.startswith("sqlite") else POSTGRES_DECIDERS
        self.ledger = Ledger(settings.database_url, busy_timeout_ms=busy_ms, pool_size=workers + 1)
        self.rules = MerchantRules.from_settings(settings)
        self._deciders = [_Decider(self.ledger, i) for i in range(workers)]

    def _decider(self, request: AuthorizationRequest) -> _Decider:
        return self._deciders[zlib.crc32(request.data.card_id.encode()) % len(self._deciders)]

    # --- the Decider's interface ----------------------------------------------------------------
    def submit(self, request: AuthorizationRequest) -> Future[Decision]:
        future: Future[Decision] = Future()
        data = request.data
        merchant = data.merchant_data
        broken = rule_violation(self.rules, data.bill_amount, merchant.mcc_code if merchant else None,
                                merchant.country if merchant else None)
        if broken is not None:
            future.set_result(Decision(DO_NOT_HONOUR, broken))
        else:
            self._decider(request).put(_Decide(request, future))
        return future

    def __call__(self, request: AuthorizationRequest) -> Decision:
        return self.submit(request).result()

    def compensate(self, request: AuthorizationRequest, decision: Decision) -> None:
        """The approval came after the fallback decline was sent: queue the release of its hold.

        It runs on the thread that owns the card, in its batches, so it never races that card's
        decisions; a release that fails is tried again later, with backoff.
        """
        self._decider(request).put(_Release(0.0, 0, request))

    def close(self) -> None:
        for decider in self._deciders:
            decider.stop()
        self.ledger.close()


class _Decider:
    """One deciding thread: batches of decisions and releases, one transaction each."""

    def __init__(self, ledger: Ledger, index: int) -> None:
        self.ledger = ledger
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._later: list[_Release] = []  # releases waiting for their next attempt (a heap by due time)
        self._thread = threading.Thread(target=self._run, name=f"hookstream-holds-{index}", daemon=True)
        self._thread.start()

    def put(self, item: _Item) -> None:
        self._queue.put(item)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        if self._later:  # releases still waiting for a retry: one last attempt before the process goes
            pending = list(self._later)
            self._later.clear()
            self._decide_batch(pending)
            if self._later:  # the cards processor releases them when it reads the declined answer
                log.error("authorization.late_holds_left", count=len(self._later))

    def _run(self) -> None:
        while True:
            wait = max(0.0, self._later[0].due - time.monotonic()) if self._later else None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                first = None if not self._later else self._due()
                if first is None:
                    continue
            if first is None:
                return
            batch: list[_Item] = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            while self._later and self._later[0].due <= time.monotonic() and len(batch) < MAX_BATCH:
                batch.append(heapq.heappop(self._later))
            self._decide_batch(batch)

    def _due(self) -> _Release | None:
        if self._later and self._later[0].due <= time.monotonic():
            return heapq.heappop(self._later)
        return None

    def _decide_batch(self, batch: list[_Item]) -> None:
        outcomes: list[tuple[Future[Decision], Decision | BaseException]] = []
        released: list[_Release] = []
        # one item: its transaction is its step; several: a savepoint each, so one failure is contained
        step = (lambda: nullcontext()) if len(batch) == 1 else (lambda: uow.savepoint("hs_auth"))
        try:
            with self.ledger.unit_of_work() as uow:
                for account, item, card in _in_account_order(uow, batch):
                    if isinstance(item, _Release):
                        try:
                            with step():
                                _release(uow, item.request)
                            released.append(item)
                        except LedgerError as exc:
                            log.warning("authorization.late_release_failed", error=type(exc).__name__)
                            self._retry(item)
                        continue
                    if not item.future.set_running_or_notify_cancel():  # answered with the fallback
                        continue
                    try:
                        with step():
                            outcomes.append((item.future, _decide(uow, item.request, card, account)))
                    except LedgerError as exc:
                        outcomes.append((item.future, exc))
        except Exception as exc:  # noqa: BLE001 - the commit failed: no decision of the batch stands
            log.error("authorization.batch_failed", size=len(batch), error=type(exc).__name__, detail=str(exc))
            outcomes = []
            for item in batch:
                if isinstance(item, _Release):
                    continue
                future = item.future
                if future.running() or (not future.done() and future.set_running_or_notify_cancel()):
                    outcomes.append((future, exc))
            for release in released:
                self._retry(release)
        for future, outcome in outcomes:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _retry(self, release: _Release) -> None:
        attempts = release.attempts + 1
        if attempts >= RELEASE_ATTEMPTS:
            metrics.authorization_fallbacks.labels("late_hold_stuck").inc()
            log.error("authorization.late_hold_not_released", dedup_key=release.request.dedup_key,
                      operation_id=loggable_operation_id(release.request.envelope))
            return
        first, longest = RELEASE_BACKOFF_S
        delay = min(first * 2**attempts, longest)
        heapq.heappush(self._later, _Release(time.monotonic() + delay, attempts, release.request))


def _in_account_order(uow: UnitOfWork, batch: list[_Item]) -> list[tuple[str, _Item, CardState | None]]:
    """The batch with each item's card state and account, sorted by account (the lock order)."""
    keyed = []
    for item in batch:
        data = item.request.data
        card = uow.card_state(data.card_id)
        account = card.account_id if card is not None else (data.metadata or {}).get("account")
        keyed.append((account if isinstance(account, str) else "", item, card))
    keyed.sort(key=lambda k: k[0])
    return keyed


def _release(uow: UnitOfWork, request: AuthorizationRequest) -> None:
    result = uow.release_hold(request.data.card_id, request.envelope.operation_id,
                              f"{request.dedup_key}:late-release", memo="late decision released")
    log.warning("authorization.late_hold_released", operation_id=loggable_operation_id(request.envelope),
                released=result.applied)


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
