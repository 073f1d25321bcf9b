"""The ledger authorization policy: a linked, active card whose available balance covers the bill → hold."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sys
import threading
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from hookstream import metrics
from hookstream.domain.authorization import (
    DO_NOT_HONOUR, MAX_BILL_CENTS, Card, bill_cents, card_refusal, response_code,
)
from hookstream.ingest.authorization import AuthorizationRequest, Decision
from hookstream.ledger import Ledger, LedgerError, LedgerTransientError, UnitOfWork, closed, decide_pg, decisions
from hookstream.ledger.migrations import outdated
from hookstream.ledger.money import from_cents
from hookstream.logs import get_logger
from hookstream.rules import MerchantRules, rule_violation
from hookstream.schemas.routing import loggable_operation_id
from hookstream.settings import Settings

log = get_logger(__name__)

MAX_BATCH = 256
MAX_RECORDS = 64  # fallback answers put on record per call, at most
FALLBACK_GIVE_UP_S = 600.0  # a fallback answer not on record after this is reported (the cards processor
#                             still releases the hold when it reads the declined answer from Kafka)
RECONNECT_BACKOFF_S = (0.05, 1.0)  # first and longest pause after the database could not be reached
SCHEMA_RECHECK_S = 2.0  # how often a receiver whose ledger needs `db upgrade` looks again (while probed)
SCHEMA_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM schema_version"
IDLE_RETRY_S = 0.2  # how soon pending fallback records are tried again when nothing else is queued
# Beside a CPU-busy thread (kafka-python's sender) every GIL hand-back waits up to one switch
# interval (default 5 ms); the decision path does few syscalls, but each one pays that wait.
SWITCH_INTERVAL_S = 0.0005


class Books(Protocol):
    """Where decisions are made and recorded: SQLite (a deciding thread) or Postgres (the event loop)."""

    async def decide(self, request: AuthorizationRequest, cents: int) -> Decision: ...

    def fallback(self, request: AuthorizationRequest, decision: Decision) -> None: ...

    async def recorded(self, request: AuthorizationRequest) -> Decision | None: ...

    def close(self) -> None: ...


class LedgerPolicy:
    """Approve with a hold when the card is linked, not frozen or blocked, passes the merchant
    rules, and `bill_amount` (USD) fits the account's available balance.

    A card not linked yet is linked to `metadata.account` when the authorization carries one. Every
    answer is recorded under the event's dedup key with the hold it placed, in one transaction, so
    a redelivery gets the first answer and a hold exists if and only if that answer was an approval;
    a fallback answer (budget spent, database down) is recorded too, releasing a late hold.
    Decisions are group-committed: everything waiting goes to the database as one transaction.
    """

    def __init__(self, settings: Settings) -> None:
        # A lock wait must give up well inside the answer budget, never hold the answer hostage.
        busy_ms = max(50, int(settings.authorization_budget_ms * 0.5))
        self.rules = MerchantRules.from_settings(settings)
        self.books: Books
        if settings.database_url.startswith("sqlite"):
            self.books = SqliteBooks(Ledger.from_settings(settings, busy_timeout_ms=busy_ms, pool_size=2))
        else:
            self.books = PostgresBooks(settings.database_url, busy_ms, settings.authorization_budget_ms)

    async def decide(self, request: AuthorizationRequest) -> Decision:
        data = request.data
        merchant = data.merchant_data
        broken = rule_violation(self.rules, data.bill_amount, merchant.mcc_code if merchant else None,
                                merchant.country if merchant else None)
        if broken is not None:
            return Decision(DO_NOT_HONOUR, broken)
        cents = bill_cents(data.bill_amount)
        if cents is None:  # decided here, alone: never sent along with other authorizations
            return Decision(DO_NOT_HONOUR, "invalid_amount")
        return await self.books.decide(request, cents)

    def fallback(self, request: AuthorizationRequest, decision: Decision) -> None:
        self.books.fallback(request, decision)

    async def recorded(self, request: AuthorizationRequest) -> Decision | None:
        return await self.books.recorded(request)

    def problem(self) -> str | None:
        """Why this policy cannot decide at all (the receiver is not ready), else None."""
        check = getattr(self.books, "problem", None)
        return check() if check is not None else None

    def close(self) -> None:
        self.books.close()


def _hint(request: AuthorizationRequest) -> str | None:
    account = (request.data.metadata or {}).get("account")
    return account if isinstance(account, str) and account else None


@dataclass(slots=True)
class _Fallback:
    """A fallback answer to put on record (and a late hold to release)."""

    request: AuthorizationRequest
    decision: Decision
    since: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        if time.monotonic() - self.since < FALLBACK_GIVE_UP_S:
            return False
        metrics.authorization_fallbacks.labels("late_hold_stuck").inc()
        log.error("authorization.fallback_not_recorded", dedup_key=self.request.dedup_key,
                  operation_id=loggable_operation_id(self.request.envelope))
        return True


def _answer(row: tuple[str, str, int | None] | None) -> Decision | None:
    """A recorded (code, reason, hold id) as the answer to give again; None when nothing is on record."""
    if row is None or not row[0]:
        return None
    code, reason, hold = row
    return Decision(code, reason, hold_id=str(hold) if hold is not None else None)


def _log_released(request: AuthorizationRequest, hold_id: object) -> None:
    log.warning("authorization.late_hold_released", operation_id=loggable_operation_id(request.envelope),
                hold_id=str(hold_id))


# --- Postgres: one flusher on the event loop, one function call per batch ---------------------------
@dataclass(slots=True)
class _Waiting:
    request: AuthorizationRequest
    cents: int
    future: asyncio.Future[Decision]


class PostgresBooks:
    """Group commit on the receiver's event loop: one flusher sends every queued decision (and every
    fallback answer to record) as ONE call of `hookstream_authorize`, as soon as the previous call
    returns — no timer, no deciding threads, no SQLAlchemy. A decision cancelled (budget spent)
    before its batch is sent is never made."""

    def __init__(self, database_url: str, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
        self._conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._options = f"-c lock_timeout={lock_timeout_ms} -c statement_timeout={statement_timeout_ms}"
        self._waiting: deque[_Waiting] = deque()
        self._fallbacks: list[_Fallback] = []  # always sent first: a redelivery must find them on record
        self._conn: Any = None
        self._reader: Any = None  # a second connection: reads the record while the first one decides
        self._reader_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # The connection was lost: a background task connects and warms a new one; decisions are answered
        # at once (the fallback) until it is ready, and never pay the connection or plpgsql's compile.
        self._reconnecting: asyncio.Task[None] | None = None
        self._records_due = 0.0  # fallback records alone are retried from then on
        # A ledger older than this code (`hookstream db upgrade` not run yet) decides nothing: the receiver
        # says so on /readyz, and looks again while it is probed.
        self._schema_problem: str | None = None
        self._schema_checked = 0.0
        self._schema_task: asyncio.Task[None] | None = None
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:  # built inside the server's loop (uvicorn's app factory): connect and warm up now
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start()
        assert self._wake is not None
        self._wake.clear()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._wake = loop, asyncio.Event()
        self._task = loop.create_task(self._run(), name="hookstream-authorize")

    def _kick(self) -> None:
        if self._task is None or self._task.done() or self._loop is not asyncio.get_running_loop():
            self._start()
        assert self._wake is not None
        self._wake.set()

    async def decide(self, request: AuthorizationRequest, cents: int) -> Decision:
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(request, cents, future))
        self._kick()
        return await future  # cancelled by the budget: the flusher drops it unless already sent

    def fallback(self, request: AuthorizationRequest, decision: Decision) -> None:
        self._fallbacks.append(_Fallback(request, decision))
        self._kick()

    async def recorded(self, request: AuthorizationRequest) -> Decision | None:
        """The answer on record, read on the reader connection: a plain read waits for no lock and no
        batch (a row being decided right now is not committed, so not seen: that delivery answers it)."""
        try:
            if self._reader is None or self._reader.closed:
                self._reader = await self._connect()
            cursor = await self._reader.execute(decisions.RECORDED_PG, (request.dedup_key,), prepare=True)
            row = await cursor.fetchone()
        except Exception:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.pgconn.finish()
            raise
        return _answer(row)

    def problem(self) -> str | None:
        """The schema problem found at start (or at the last look), else None; called by /readyz on the loop,
        it starts another look when the last one is SCHEMA_RECHECK_S old."""
        if (self._schema_problem is not None and time.monotonic() - self._schema_checked >= SCHEMA_RECHECK_S
                and (self._schema_task is None or self._schema_task.done())):
            self._schema_task = asyncio.get_running_loop().create_task(
                self._recheck_schema(), name="hookstream-authorize-schema")
        return self._schema_problem

    async def _schema_current(self, conn: Any) -> bool:
        """Compare the ledger's schema version with this code's; sets or clears the problem."""
        self._schema_checked = time.monotonic()
        try:
            row = await (await conn.execute(SCHEMA_VERSION_SQL)).fetchone()
            version = int(row[0])
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != "42P01":  # undefined table: an empty database
                raise
            version = 0
        problem = outdated(version)
        if problem is None:
            if self._schema_problem is not None:
                log.info("authorization.ledger_ready", schema_version=version)
            self._schema_problem = None
            return True
        if self._schema_problem is None:
            log.error("authorization.ledger_not_ready", reason=problem)
        self._schema_problem = problem
        return False

    async def _recheck_schema(self) -> None:
        try:
            conn = await self._connection()
            if await self._schema_current(conn):
                await self._warm_up(conn)
        except Exception as exc:  # noqa: BLE001 - the next probe looks again
            self._schema_checked = time.monotonic()
            log.warning("authorization.schema_check_failed", error=type(exc).__name__, detail=str(exc)[:300])

    async def _run(self) -> None:
        assert self._wake is not None
        await self._warm()
        while True:
            if not self._fallbacks:
                await self._wake.wait()
            else:  # records still to write: try again soon even if nothing else arrives
                try:
                    await asyncio.wait_for(self._wake.wait(), max(self._records_due - time.monotonic(), 0.001))
                except TimeoutError:
                    pass
            self._wake.clear()
            while self._waiting or (self._fallbacks and time.monotonic() >= self._records_due):
                await self._flush()

    async def _flush(self) -> None:
        self._fallbacks = [f for f in self._fallbacks if not f.expired()]
        records = self._fallbacks[:MAX_RECORDS]  # a backlog of records never crowds decisions out
        later = {f.request.dedup_key for f in self._fallbacks[MAX_RECORDS:]}
        batch: list[_Waiting] = []
        deferred: list[_Waiting] = []  # redeliveries whose fallback answer is not on record yet
        while self._waiting and len(records) + len(batch) < MAX_BATCH:
            item = self._waiting.popleft()
            if item.future.done():  # cancelled: answered with the fallback, never decided
                continue
            (deferred if item.request.dedup_key in later else batch).append(item)
        if self._reconnecting is not None and not self._reconnecting.done():  # the database is gone: answer at once
            self._fail(batch + deferred, LedgerTransientError("authorization database unreachable"))
            self._records_due = time.monotonic() + IDLE_RETRY_S  # records wait for the reconnection's wake-up
            return
        self._waiting.extendleft(reversed(deferred))
        if not batch and not records:
            return
        try:
            rows = await self._call(records, batch)
        except Exception as exc:  # noqa: BLE001 - a failed call decides nothing: every future learns why
            self._failed_call(exc, len(records) + len(batch))
            self._records_due = time.monotonic() + IDLE_RETRY_S
            self._fail(batch, exc)
            return
        del self._fallbacks[:len(records)]
        for record, (_code, _reason, hold) in zip(records, rows[:len(records)], strict=True):
            if hold is not None:
                _log_released(record.request, hold)
        for item, (code, reason, hold) in zip(batch, rows[len(records):], strict=True):
            if not item.future.done():
                item.future.set_result(Decision(code, reason, hold_id=str(hold) if hold is not None else None))

    async def _open_reader(self) -> None:
        try:
            if self._reader is None or self._reader.closed:
                self._reader = await self._connect()
        except Exception as exc:  # noqa: BLE001 - a fallback connects it again when it needs it
            log.warning("authorization.reader_connect_failed", error=type(exc).__name__)

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        return self._conn

    async def _connect(self) -> Any:
        import psycopg  # the postgres extra

        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, options=self._options, connect_timeout=2)

    @staticmethod
    async def _warm_up(conn: Any) -> None:
        """Run the function once in a rolled-back transaction: the first real batch on this connection then
        pays neither plpgsql's compile nor the planning (~0.2 s on a busy machine)."""
        async with conn.transaction(force_rollback=True):
            await conn.execute(decide_pg.CALL, (
                [True, False], ["hs-warm-1", "hs-warm-2"], ["hs-warm", "hs-warm"], ["hs-warm", "hs-warm"],
                [0, 1], [None, "hs-warm"], ["05", ""], ["warm", ""], ["warm", "warm"], MAX_BILL_CENTS),
                prepare=True)

    async def _warm(self) -> None:
        """Connect and warm up before the first authorization arrives."""
        try:
            conn = await self._connection()
            if not await self._schema_current(conn):
                return  # not ready: /readyz says why and looks again
            await self._warm_up(conn)
            # ready before a fallback needs it, without holding the first batch back
            self._reader_task = asyncio.get_running_loop().create_task(self._open_reader())
        except Exception as exc:  # noqa: BLE001 - decisions connect again on their own
            log.warning("authorization.warm_up_failed", error=type(exc).__name__, detail=str(exc)[:300])

    async def _call(self, records: list[_Fallback], batch: list[_Waiting]) -> list[tuple[str, str, int | None]]:
        conn = await self._connection()
        requests = [r.request for r in records] + [w.request for w in batch]
        params = (
            [True] * len(records) + [False] * len(batch),
            [r.dedup_key for r in requests],
            [r.data.card_id for r in requests],
            [r.envelope.operation_id for r in requests],
            [0] * len(records) + [w.cents for w in batch],
            [_hint(r) for r in requests],
            [r.decision.response_code for r in records] + [""] * len(batch),
            [r.decision.reason for r in records] + [""] * len(batch),
            [r.attempt for r in requests],
            MAX_BILL_CENTS,
        )
        cursor = await conn.execute(decide_pg.CALL, params, prepare=True)
        return await cursor.fetchall()

    def _failed_call(self, exc: Exception, size: int) -> None:
        conn, lost = self._conn, self._conn is None or self._conn.closed or _is_connection_error(exc)
        log.error("authorization.batch_failed", size=size, error=type(exc).__name__, detail=str(exc)[:300])
        if lost:  # reconnect in the background; until then answer at once instead of queueing for nothing
            self._conn = None
            if conn is not None:
                conn.pgconn.finish()
            if self._reconnecting is None or self._reconnecting.done():
                self._reconnecting = asyncio.get_running_loop().create_task(
                    self._reconnect(), name="hookstream-authorize-reconnect")

    async def _reconnect(self) -> None:
        """Connect and warm a new connection, pausing longer after each failure (up to 1 s); then wake
        the flusher: pending fallback records go first, decisions resume on a warm connection."""
        pause = RECONNECT_BACKOFF_S[0]
        while True:
            await asyncio.sleep(pause)
            conn = None
            try:
                conn = await self._connect()
                await self._warm_up(conn)
            except Exception as exc:  # noqa: BLE001 - still down: try again later
                if conn is not None:
                    conn.pgconn.finish()
                log.debug("authorization.reconnect_failed", error=type(exc).__name__)
                pause = min(pause * 2, RECONNECT_BACKOFF_S[1])
                continue
            self._conn, self._records_due = conn, time.monotonic()
            log.info("authorization.database_reconnected")
            if self._wake is not None:
                self._wake.set()
            return

    @staticmethod
    def _fail(batch: list[_Waiting], exc: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    def close(self) -> None:
        """Record pending fallback answers one last time, then close (from any thread)."""
        loop, task = self._loop, self._task
        if loop is None or task is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop.is_running() and running is not loop:
            try:
                asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=5)
            except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                log.warning("authorization.close_failed", error=type(exc).__name__)
        else:  # the loop is gone: nothing can be awaited, drop the sockets
            for conn in (self._conn, self._reader):
                if conn is not None:
                    conn.pgconn.finish()
            self._conn = self._reader = None
        if self._fallbacks:
            log.error("authorization.fallbacks_not_recorded", count=len(self._fallbacks))

    async def _aclose(self) -> None:
        assert self._task is not None
        self._task.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            self._reconnecting = None
        if self._fallbacks:
            self._records_due = 0.0
            await self._flush()
        for conn in (self._conn, self._reader):
            if conn is not None:
                await conn.close()
        self._conn = self._reader = None


def _is_connection_error(exc: Exception) -> bool:
    """The server is gone or unreachable (not a lock or statement timeout, which are per call)."""
    import psycopg

    if isinstance(exc, (psycopg.InterfaceError, OSError)):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.OperationalError) and (sqlstate is None or sqlstate[:2] in ("08", "57"))


# --- SQLite: one deciding thread (one writer at a time), one transaction per batch ------------------
@dataclass(frozen=True, slots=True)
class _Decide:
    request: AuthorizationRequest
    cents: int
    future: concurrent.futures.Future[Decision]


class SqliteBooks:
    """A deciding thread takes every authorization waiting for it, decides each in its own
    savepoint and commits them together: one fsync for a burst, no writers queueing on the lock."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._queue: queue.SimpleQueue[_Decide | _Fallback | None] = queue.SimpleQueue()
        self._fallbacks: list[_Fallback] = []  # owned by the thread; always decided first
        self._thread = threading.Thread(target=self._run, name="hookstream-holds", daemon=True)
        self._thread.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="hookstream-recorded")

    async def decide(self, request: AuthorizationRequest, cents: int) -> Decision:
        future: concurrent.futures.Future[Decision] = concurrent.futures.Future()
        self._queue.put(_Decide(request, cents, future))
        return await asyncio.wrap_future(future)  # cancelled by the budget: not decided unless running

    def fallback(self, request: AuthorizationRequest, decision: Decision) -> None:
        self._queue.put(_Fallback(request, decision))

    async def recorded(self, request: AuthorizationRequest) -> Decision | None:
        """The answer on record, read beside the deciding thread (WAL: a read waits for no writer)."""
        return await asyncio.wrap_future(self._readers.submit(self._read_recorded, request.dedup_key))

    def _read_recorded(self, dedup_key: str) -> Decision | None:
        with self.ledger.unit_of_work(read_only=True) as uow:
            found = decisions.recorded(uow, dedup_key)
        return _answer((found.response_code, found.reason, found.hold_id) if found is not None else None)

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._queue.put(None)
        self._thread.join(timeout=5)
        if self._fallbacks:  # one last attempt before the process goes
            self._decide_batch([])
            if self._fallbacks:
                log.error("authorization.fallbacks_not_recorded", count=len(self._fallbacks))
        self.ledger.close()

    def _run(self) -> None:
        try:  # open the connection and check the schema before the first authorization waits on it
            with self.ledger.unit_of_work(read_only=True):
                pass
        except LedgerError as exc:
            log.warning("authorization.warm_up_failed", error=type(exc).__name__, detail=str(exc)[:300])
        while True:
            try:
                first = self._queue.get(timeout=IDLE_RETRY_S if self._fallbacks else None)
            except queue.Empty:
                self._decide_batch([])
                continue
            if first is None:
                return
            batch: list[_Decide] = []
            item: _Decide | _Fallback | None = first
            while item is not None:
                if isinstance(item, _Fallback):
                    self._fallbacks.append(item)
                else:
                    batch.append(item)
                if len(batch) + min(len(self._fallbacks), MAX_RECORDS) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
            self._decide_batch(batch)

    def _decide_batch(self, batch: list[_Decide]) -> None:
        self._fallbacks = [f for f in self._fallbacks if not f.expired()]
        records = self._fallbacks[:MAX_RECORDS]  # a backlog of records never crowds decisions out
        later = {f.request.dedup_key for f in self._fallbacks[MAX_RECORDS:]}
        for item in batch:  # a redelivery whose fallback answer is not on record yet: after it is
            if item.request.dedup_key in later:
                self._queue.put(item)
        batch = [item for item in batch if item.request.dedup_key not in later]
        if not batch and not records:
            return
        outcomes: list[tuple[concurrent.futures.Future[Decision], Decision | BaseException]] = []
        released: list[tuple[AuthorizationRequest, int]] = []
        # one item: its transaction is its step; several: a savepoint each, so one failure is contained
        step = (lambda: nullcontext()) if len(batch) + len(records) == 1 else (lambda: uow.savepoint("hs_auth"))
        try:
            with self.ledger.unit_of_work() as uow:
                for record in records:  # first: a redelivery in this batch must find the answer on record
                    with step():
                        hold = _record_fallback(uow, record)
                    if hold is not None:
                        released.append((record.request, hold))
                for item in batch:  # the write lock is ours now: a decision not cancelled yet is made
                    if not item.future.set_running_or_notify_cancel():
                        continue
                    try:
                        with step():
                            outcomes.append((item.future, _decide(uow, item.request, item.cents)))
                    except LedgerError as exc:
                        outcomes.append((item.future, exc))
        except Exception as exc:  # noqa: BLE001 - the commit failed: no decision of the batch stands
            log.error("authorization.batch_failed", size=len(batch) + len(records), error=type(exc).__name__,
                      detail=str(exc)[:300])
            for item in batch:
                future = item.future
                if future.running() or (not future.done() and future.set_running_or_notify_cancel()):
                    future.set_exception(exc)
            return
        self._fallbacks = self._fallbacks[len(records):]
        for request, hold in released:
            _log_released(request, hold)
        for future, outcome in outcomes:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _record_fallback(uow: UnitOfWork, record: _Fallback) -> int | None:
    """Put the fallback answer on record; the hold its own late decision placed is released."""
    request, decision = record.request, record.decision
    found = decisions.recorded(uow, request.dedup_key)
    if found is None:
        decisions.record(uow, request.dedup_key, request.data.card_id, request.envelope.operation_id,
                         decision.response_code, decision.reason, None, request.attempt)
        return None
    if found.attempt != request.attempt:  # an earlier delivery got the first answer: it stands
        return None
    released = None
    if found.hold_id is not None:
        result = uow.release_hold(request.data.card_id, request.envelope.operation_id,
                                  f"{request.dedup_key}:late-release", memo="late decision released")
        released = found.hold_id if result.applied else None
    decisions.overwrite(uow, request.dedup_key, decision.response_code, decision.reason)
    return released


def _decide(uow: UnitOfWork, request: AuthorizationRequest, cents: int) -> Decision:
    """The first answer for this dedup key, decided and recorded with its hold; or the one on record."""
    data = request.data
    found, closed_already = decisions.prior(uow, request.dedup_key, data.card_id, request.envelope.operation_id)
    if found is not None:
        hold = str(found.hold_id) if found.hold_id is not None else None
        return Decision(found.response_code, found.reason, hold_id=hold)
    state = uow.card_state(data.card_id)
    card = Card(state.account_id, state.frozen, state.blocked) if state is not None else None
    hint = _hint(request)
    # The platform declined (or settled) it already: a hold now would never be released.
    reason = closed.REASON if closed_already else card_refusal(card, hint)
    hold_id: int | None = None
    if reason is None:
        account = card.account_id if card is not None else uow.link_card(data.card_id, str(hint)).account_id
        hold = uow.place_hold(account, data.card_id, request.envelope.operation_id, from_cents(cents),
                              request.dedup_key, memo="authorization")
        reason = "approved" if hold.reason == "ok" else hold.reason
        hold_id = hold.hold_id if hold.placed else None
    code = response_code(reason)
    decisions.record(uow, request.dedup_key, data.card_id, request.envelope.operation_id, code, reason,
                     hold_id, request.attempt)
    return Decision(code, reason, hold_id=str(hold_id) if hold_id is not None else None)


def ledger_policy(settings: Settings) -> LedgerPolicy:
    """`HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.policy:ledger_policy`."""
    return LedgerPolicy(settings)
