"""The ledger's front door: `Ledger` owns the engine, `UnitOfWork` is one transaction of book-keeping."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

from sqlalchemy import Connection, case, func, select
from sqlalchemy import exc as sa_exc

from hookstream.ledger import closed, decisions, migrations
from hookstream.ledger.engine import SQLITE_BEGIN, is_sqlite_memory, make_engine
from hookstream.ledger.errors import (
    LedgerError,
    LedgerTransientError,
    SchemaNotReady,
    UnknownAccount,
    is_transient_db_error,
)
from hookstream.ledger.models import (
    Balance,
    CardState,
    HoldResult,
    InboxEntry,
    Posting,
    PostingResult,
    SettlementResult,
)
from hookstream.ledger.money import from_cents, to_cents
from hookstream.ledger.schema import UtcDateTime, holds, inbox, postings, utcnow
from hookstream.ledger.statements import Prepared, statements_for
from hookstream.logs import get_logger
from hookstream.settings import Settings

log = get_logger("hookstream.ledger")


class FairLock:
    """A lock handed to its waiters in the order they came: SQLite's writers of one process take turns.

    Without it, two threads of one process writing to a SQLite ledger (a processor's lane and its outbox
    dispatcher) meet in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between looks at the lock: a
    thread that commits and begins again at once keeps winning, and the other one waited up to 2.5 s
    (measured: dispatcher rounds at 1,000 3DS answers/s). Waiting here, the next writer gets the lock the
    moment the previous one commits. Other processes still meet in SQLite's busy handler.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout_s: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout_s):
            return True  # handed over by release(): the lock stayed held, now by us
        with self._mutex:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return False
        return True  # handed over between the timeout and the mutex

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


class HoldRow(NamedTuple):
    id: int
    account_id: str
    amount_cents: int
    status: str


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Re-raise driver errors as LedgerTransientError (retry) or LedgerError (do not)."""
    try:
        yield
    except LedgerError:
        raise
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        detail = f"{type(getattr(exc, 'orig', None) or exc).__name__}: {getattr(exc, 'orig', None) or exc}"
        if is_transient_db_error(exc):
            raise LedgerTransientError(f"transient database error: {detail}") from exc
        raise LedgerError(f"database error: {detail}") from exc


class Ledger:
    """The client's books in one database. Thread-safe; open one per process and share it.

    SQLite gets its schema on first use; Postgres needs `upgrade()` (`hookstream db upgrade`) first
    unless `auto_upgrade=True`.
    """

    def __init__(self, database_url: str, *, auto_upgrade: bool | None = None,
                 busy_timeout_ms: int = 10_000, pool_size: int = 5, max_overflow: int = 10,
                 pool_timeout_s: float = 10.0, statement_timeout_ms: int = 0, echo: bool = False) -> None:
        self.engine = make_engine(database_url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size,
                                  max_overflow=max_overflow, pool_timeout_s=pool_timeout_s,
                                  statement_timeout_ms=statement_timeout_ms, echo=echo)
        self.dialect: str = self.engine.dialect.name
        self._auto_upgrade = (self.dialect == "sqlite") if auto_upgrade is None else auto_upgrade
        self._ready = False
        self._ready_lock = threading.Lock()
        # An in-memory SQLite database is one shared connection: units of work take turns.
        self._serial = threading.RLock() if is_sqlite_memory(database_url) else None
        # A SQLite file: this process's write transactions take turns in arrival order (FairLock).
        self._writers = FairLock() if self.dialect == "sqlite" and self._serial is None else None
        self._writer_wait_s = busy_timeout_ms / 1000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Ledger:
        """The ledger `settings` name, with its pool and timeout settings (`overrides` win)."""
        options: dict[str, Any] = dict(
            busy_timeout_ms=settings.database_lock_timeout_ms, pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_max_overflow, pool_timeout_s=settings.database_pool_timeout_s,
            statement_timeout_ms=settings.database_statement_timeout_ms)
        options.update(overrides)
        return cls(settings.database_url, **options)

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # --- schema ------------------------------------------------------------------------------------
    def upgrade(self) -> list[migrations.Migration]:
        """Create or migrate the schema; returns the migrations applied (empty when up to date)."""
        with translate_db_errors(), self.engine.begin() as conn:
            applied = migrations.upgrade(conn)
        for migration in applied:
            log.info("ledger.migrated", version=migration.version, description=migration.description)
        self._ready = True
        return applied

    def schema_version(self) -> int:
        """The applied schema version (0: empty database). A read: never takes SQLite's write lock."""
        with self._serial or nullcontext(), translate_db_errors(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            return migrations.current_version(conn)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            version = self.schema_version()
            if self._auto_upgrade and version < migrations.LATEST:
                # Only a schema that needs work takes the write lock (a busy ledger with a current
                # schema must not stop a process at start: `database is locked`).
                self.upgrade()
                return
            problem = migrations.outdated(version)
            if problem is not None:
                raise SchemaNotReady(problem)
            self._ready = True

    # --- transactions ------------------------------------------------------------------------------
    @contextmanager
    def unit_of_work(self, *, read_only: bool = False) -> Iterator[UnitOfWork]:
        """One transaction: commits when the block exits normally, rolls back on any exception.

        Claim the event first (`uow.claim(...)`) and apply its effect in the same block, so the claim
        and the effect commit or vanish together. Busy/locked/deadlocked/unreachable databases raise
        LedgerTransientError: retry the whole block.
        """
        self._ensure_ready()
        with self._writer_turn(read_only), self._serial or nullcontext(), translate_db_errors(), \
                self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{SQLITE_BEGIN: "DEFERRED" if read_only else "IMMEDIATE"})
            with conn.begin():
                uow = UnitOfWork(conn)
                try:
                    yield uow
                finally:
                    uow.close()

    @contextmanager
    def _writer_turn(self, read_only: bool) -> Iterator[None]:
        if self._writers is None or read_only:
            yield
            return
        started = time.monotonic()
        if not self._writers.acquire(self._writer_wait_s):
            raise LedgerTransientError(f"transient database error: database is locked (another writer of this "
                                       f"process for {time.monotonic() - started:.1f} s)")
        try:
            yield
        finally:
            self._writers.release()


class UnitOfWork:
    """Book-keeping operations inside one open transaction. Do not keep it past its `with` block."""

    def __init__(self, conn: Connection) -> None:
        self.connection = conn
        dialect = conn.dialect
        self._sql = statements_for(dialect)
        self._dialect = dialect
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        self._cursor: Any = None
        self._timestamp = UtcDateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        self._now_value: Any = None

    def close(self) -> None:
        """Release the DB-API cursor (the transaction itself ends with the `with` block)."""
        if self._cursor is not None:
            cursor, self._cursor = self._cursor, None
            cursor.close()

    def _now(self) -> Any:
        """The transaction's time (as Postgres's now()): taken and converted once per unit of work;
        converting a fresh timestamp per statement was ~6 % of a processor's per-event cost."""
        if self._now_value is None:
            self._now_value = self._timestamp(utcnow())
        return self._now_value

    def _run(self, sql: Prepared, params: dict[str, Any]) -> Any:
        """Execute a prepared statement on this transaction's DB-API cursor."""
        return self.execute_sql(sql.text, sql.params(params))

    def execute_sql(self, text: str, params: Any, *, many: bool = False) -> Any:
        """Execute driver-level SQL (the dialect's paramstyle) on this transaction's cursor; the cursor.

        Driver errors come out as SQLAlchemy's DBAPIError (a lost connection invalidated), so the
        runtime classifies them like any other ledger error.
        """
        if self._cursor is None:
            self._cursor = self.connection.connection.cursor()
        try:
            if many:
                self._cursor.executemany(text, params)
            else:
                self._cursor.execute(text, params)
        except self._dbapi_error as exc:
            disconnected = self._dialect.is_disconnect(exc, self.connection.connection, self._cursor)
            if disconnected:
                self.connection.invalidate(exc)
            raise sa_exc.DBAPIError.instance(  # the same wrapper SQLAlchemy raises, for classification
                text, params, exc, self._dbapi_error, connection_invalidated=disconnected,
                dialect=self._dialect) from exc
        return self._cursor

    @property
    def dialect_name(self) -> str:
        return self._dialect.name

    def now_value(self) -> Any:
        """The transaction's time, converted for the driver (see `_now`)."""
        return self._now()

    def _one(self, sql: Prepared, params: dict[str, Any]) -> Any:
        """The first row, or None."""
        return self._run(sql, params).fetchone()

    @contextmanager
    def savepoint(self, name: str = "hs_sp") -> Iterator[UnitOfWork]:
        """A nested step of this transaction: an exception undoes only what ran inside it.

        Issued on the driver connection: SQLAlchemy's begin_nested costs more than a hold itself.
        A savepoint that cannot be rolled back (connection lost) re-raises as LedgerTransientError.
        """
        driver = self.connection.connection.driver_connection
        driver.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            try:
                driver.execute(f"ROLLBACK TO SAVEPOINT {name}")
                driver.execute(f"RELEASE SAVEPOINT {name}")
            except Exception as exc:  # noqa: BLE001 - the transaction is gone; the caller must not commit
                raise LedgerTransientError(f"savepoint lost: {exc!r}") from exc
            raise
        driver.execute(f"RELEASE SAVEPOINT {name}")

    # --- inbox -------------------------------------------------------------------------------------
    def claim(self, processor: str, dedup_key: str, topic: str | None = None,
              partition: int | None = None, offset: int | None = None,
              outcome: str | None = None) -> bool:
        """Record that `processor` handles this event; False when it already did (skip the effect).

        On Postgres a concurrent claim of the same key waits for the first transaction and then
        returns False (or True, if that one rolled back).
        """
        return self._one(self._sql.claim, {
            "processor": processor, "dedup_key": dedup_key, "topic": topic, "partition": partition,
            "offset": offset, "outcome": outcome, "processed_at": self._now(),
        }) is not None

    def set_outcome(self, processor: str, dedup_key: str, outcome: str) -> bool:
        """Note what processing a claimed event led to ("ok", "expired", "unmatched", …)."""
        return self._run(self._sql.set_outcome, {
            "p_processor": processor, "p_dedup_key": dedup_key, "p_outcome": outcome}).rowcount == 1

    def inbox_entry(self, processor: str, dedup_key: str) -> InboxEntry | None:
        """The claim for this event, if any."""
        row = self.connection.execute(select(inbox).where(inbox.c.processor == processor,
                                                          inbox.c.dedup_key == dedup_key)).first()
        return InboxEntry(**row._mapping) if row else None

    # --- accounts and links ------------------------------------------------------------------------
    def ensure_account(self, account_id: str, currency: str = "USD") -> bool:
        """Create the account if it does not exist; True when created."""
        now = self._now()
        return self._one(self._sql.ensure_account, {
            "id": account_id, "currency": currency, "balance_cents": 0, "held_cents": 0,
            "created_at": now, "updated_at": now,
        }) is not None

    def account_exists(self, account_id: str) -> bool:
        return self._one(self._sql.account_exists, {"p_account_id": account_id}) is not None

    def link_card(self, card_id: str, account_id: str, approval_method: str | None = None) -> CardState:
        """Link (or relink) a card to an account, creating the account if needed.

        A later call without `approval_method` keeps the stored one (the platform never changes it).
        """
        self.ensure_account(account_id)
        now = utcnow()
        self.connection.execute(self._sql.link_card, {
            "card_id": card_id, "account_id": account_id, "approval_method": approval_method,
            "frozen": False, "blocked": False, "created_at": now, "updated_at": now,
        })
        state = self.card_state(card_id)
        assert state is not None
        return state

    def link_wallet(self, wallet_id: str, account_id: str) -> None:
        """Link (or relink) a deposit wallet to an account, creating the account if needed."""
        self.ensure_account(account_id)
        self.connection.execute(self._sql.link_wallet, {"wallet_id": wallet_id, "account_id": account_id,
                                                        "created_at": utcnow()})

    def account_for_card(self, card_id: str) -> str | None:
        row = self._one(self._sql.account_for_card, {"p_card_id": card_id})
        return row[0] if row else None

    def account_for_wallet(self, wallet_id: str) -> str | None:
        row = self._one(self._sql.account_for_wallet, {"p_wallet_id": wallet_id})
        return row[0] if row else None

    def cards_for_account(self, account_id: str) -> list[CardState]:
        """Every card linked to the account (e.g. TOP_UP cards whose virtual balance to refresh)."""
        rows = self._run(self._sql.cards_for_account, {"p_account_id": account_id}).fetchall()
        return [CardState(card, account, method, bool(frozen), bool(blocked))
                for card, account, method, frozen, blocked in rows]

    def set_card_state(self, card_id: str, frozen: bool | None = None,
                       blocked: bool | None = None) -> CardState | None:
        """Change a linked card's frozen/blocked flags (None leaves a flag as is); None if not linked."""
        if frozen is not None:
            self._run(self._sql.set_frozen, {"p_card_id": card_id, "p_flag": frozen, "p_now": self._now()})
        if blocked is not None:
            self._run(self._sql.set_blocked, {"p_card_id": card_id, "p_flag": blocked, "p_now": self._now()})
        return self.card_state(card_id)

    def card_state(self, card_id: str) -> CardState | None:
        """The card's link and flags, or None when the card is not linked."""
        row = self._one(self._sql.card_state, {"p_card_id": card_id})
        if row is None:
            return None
        card, account, method, frozen, blocked = row
        return CardState(card, account, method, bool(frozen), bool(blocked))

    # --- money -------------------------------------------------------------------------------------
    def credit(self, account_id: str, amount: Any, dedup_key: str, kind: str = "credit",
               memo: str | None = None) -> PostingResult:
        """Add money (a deposit: kind "credit"; a merchant refund: kind "refund"), once per dedup key."""
        if kind not in ("credit", "refund"):
            raise ValueError(f"credit kind must be 'credit' or 'refund', not {kind!r}")
        return self._post_to_balance(account_id, kind, to_cents(amount), dedup_key, memo, sign=1)

    def debit(self, account_id: str, amount: Any, dedup_key: str,
              memo: str | None = None) -> PostingResult:
        """Take money out without a hold (withdrawals, unmatched settlements), once per dedup key.

        The balance may go negative: a debit records something that already happened.
        """
        return self._post_to_balance(account_id, "debit", to_cents(amount), dedup_key, memo, sign=-1)

    def _post_to_balance(self, account_id: str, kind: str, cents: int, dedup_key: str,
                         memo: str | None, sign: int) -> PostingResult:
        # Touch the account row first: it checks existence and, on Postgres, takes the row lock.
        if not self._move(account_id, balance=sign * cents):
            raise UnknownAccount(account_id)
        if not self._post(account_id, kind, cents, dedup_key, memo):
            self._move(account_id, balance=-sign * cents)  # already posted: undo the move
            return PostingResult(False, "duplicate", account_id, from_cents(cents))
        return PostingResult(True, "ok", account_id, from_cents(cents))

    def place_hold(self, account_id: str, card_id: str, operation_id: str, amount: Any,
                   dedup_key: str, memo: str | None = None) -> HoldResult:
        """Reserve `amount` for a card authorization if available balance covers it.

        One conditional UPDATE decides (available >= amount) so concurrent holds can never together
        exceed the available balance. One hold per (card_id, operation_id).
        """
        cents = to_cents(amount)
        now = self._now()
        # Reserve first (the common, non-duplicate case costs three statements); a duplicate is
        # found by the hold's unique (card_id, operation_id) and its reservation undone.
        reserved = self._one(self._sql.reserve, {"p_account_id": account_id, "p_cents": cents, "p_now": now})
        if reserved is None:
            existing = self._find_hold(card_id, operation_id, lock=False)
            if existing is not None:  # a redelivery may no longer fit: its own hold uses the funds
                return self._duplicate_hold(existing)
            left = self._one(self._sql.available, {"p_account_id": account_id})
            if left is None:
                return HoldResult(False, "unknown_account")
            return HoldResult(False, "insufficient_funds", account_id=account_id, available=from_cents(left[0]))
        available = reserved[0]
        inserted = self._one(self._sql.insert_hold, {
            "account_id": account_id, "card_id": card_id, "operation_id": operation_id,
            "amount_cents": cents, "captured_cents": None, "status": "held", "created_at": now,
            "updated_at": now,
        })
        hold_id = inserted[0] if inserted else None
        if hold_id is None:  # this operation already has a hold (redelivery or concurrent twin)
            self._move(account_id, held=-cents)
            existing = self._find_hold(card_id, operation_id, lock=False)
            assert existing is not None
            return self._duplicate_hold(existing)
        if not self._post(account_id, "hold", cents, dedup_key, memo, hold_id):
            raise LedgerError(f"dedup key {dedup_key!r} already placed a hold for another operation")
        return HoldResult(True, "ok", hold_id, account_id, from_cents(available))

    def _duplicate_hold(self, hold: Any) -> HoldResult:
        left = self._one(self._sql.available, {"p_account_id": hold.account_id})
        return HoldResult(True, "duplicate", hold.id, hold.account_id, from_cents(left[0]))

    def capture_hold(self, card_id: str, operation_id: str, final_amount: Any, dedup_key: str,
                     memo: str | None = None) -> SettlementResult:
        """Settle a card transaction: the hold leaves `held`, `final_amount` leaves `balance`.

        The final amount may differ from the hold (tips, FX). Without an active hold the capture is
        still posted, as a debit on the card's account, with reason "unmatched"; a card that is not
        linked gives "unknown_card" and posts nothing.
        """
        cents = to_cents(final_amount)
        hold = self._find_hold(card_id, operation_id, lock=True)
        if hold is not None and hold.status == "held":
            if not self._post(hold.account_id, "capture", cents, dedup_key, memo, hold.id):
                return self._settled_duplicate(hold, cents)
            self._settle(hold.id, "captured", cents)
            self._move(hold.account_id, balance=-cents, held=-hold.amount_cents)
            return SettlementResult(True, "captured", hold.account_id, from_cents(cents),
                                    from_cents(hold.amount_cents), "held")
        if self._posted(dedup_key, ("capture", "debit")):
            return self._settled_duplicate(hold, cents)
        account_id = hold.account_id if hold is not None else self.account_for_card(card_id)
        if account_id is None:
            return SettlementResult(False, "unknown_card", amount=from_cents(cents))
        hold_id = hold.id if hold is not None else None
        if not self._post(account_id, "debit", cents, dedup_key, memo, hold_id):
            return self._settled_duplicate(hold, cents)
        self._move(account_id, balance=-cents)
        return SettlementResult(True, "unmatched", account_id, from_cents(cents),
                                from_cents(hold.amount_cents) if hold is not None else None,
                                hold.status if hold is not None else None)

    def release_hold(self, card_id: str, operation_id: str, dedup_key: str,
                     memo: str | None = None) -> SettlementResult:
        """Give a hold's amount back to `available` (decline, reversal, failed clearing). Never raises
        for an unknown or already settled hold: that is reason "unmatched" and nothing is posted."""
        hold = self._find_hold(card_id, operation_id, lock=True)
        if hold is not None and hold.status == "held":
            if not self._post(hold.account_id, "release", hold.amount_cents, dedup_key, memo, hold.id):
                return self._settled_duplicate(hold, hold.amount_cents)
            self._settle(hold.id, "released", None)
            self._move(hold.account_id, held=-hold.amount_cents)
            amount = from_cents(hold.amount_cents)
            return SettlementResult(True, "released", hold.account_id, amount, amount, "held")
        if self._posted(dedup_key, ("release",)):
            return self._settled_duplicate(hold, hold.amount_cents if hold is not None else 0)
        return SettlementResult(
            False, "unmatched",
            hold.account_id if hold is not None else self.account_for_card(card_id),
            None,
            from_cents(hold.amount_cents) if hold is not None else None,
            hold.status if hold is not None else None)

    def _settled_duplicate(self, hold: Any, cents: int) -> SettlementResult:
        return SettlementResult(
            False, "duplicate", hold.account_id if hold is not None else None, from_cents(cents),
            from_cents(hold.amount_cents) if hold is not None else None,
            hold.status if hold is not None else None)

    def lock_card_account(self, card_id: str) -> None:
        """Take the row lock of the card's account before looking for its holds (Postgres; on SQLite the
        write lock is held already). A decision placing a hold takes that lock first too, so a follow-up
        that then finds no hold knows none is being placed: see `close_operation`."""
        if self._dialect.name == "postgresql":
            self._run(self._sql.lock_card_account, {"p_card_id": card_id})

    def close_operation(self, card_id: str, operation_id: str, event_type: str, dedup_key: str) -> bool:
        """The platform closed this operation (declined, reversal, settlement) and no hold exists under
        it: a late approval must never place one (both decision paths check). Call it after
        `lock_card_account` in the same transaction. False when it was closed already."""
        return closed.close(self, card_id, operation_id, event_type, dedup_key)

    def hold(self, card_id: str, operation_id: str) -> HoldRow | None:
        """The operation's hold (id, account, amount in cents, status), or None when it has none."""
        return self._find_hold(card_id, operation_id, lock=False)

    def hold_status(self, card_id: str, operation_id: str) -> str | None:
        """'held', 'captured', 'released', or None when the operation has no hold."""
        hold = self.hold(card_id, operation_id)
        return hold.status if hold is not None else None

    def recorded_answer(self, dedup_key: str) -> str | None:
        """The response code the receiver recorded for this authorization's first answer (None: none recorded)."""
        table = decisions.authorization_decisions
        return self.connection.execute(
            select(table.c.response_code).where(table.c.dedup_key == dedup_key)).scalar_one_or_none()

    # --- reading -----------------------------------------------------------------------------------
    def balance(self, account_id: str) -> Balance:
        """Balance, held and available from the account's running totals."""
        row = self._one(self._sql.balance, {"p_account_id": account_id})
        if row is None:
            raise UnknownAccount(account_id)
        return Balance(from_cents(row[0]), from_cents(row[1]), from_cents(row[0] - row[1]))

    def recomputed_balance(self, account_id: str) -> Balance:
        """Balance recomputed from postings and holds (an audit: must equal `balance`)."""
        if not self.account_exists(account_id):
            raise UnknownAccount(account_id)
        signed = case((postings.c.kind.in_(("credit", "refund")), postings.c.amount_cents),
                      (postings.c.kind.in_(("capture", "debit")), -postings.c.amount_cents),
                      else_=0)
        execute = self.connection.execute
        balance = execute(select(func.coalesce(func.sum(signed), 0))
                          .where(postings.c.account_id == account_id)).scalar_one()
        held = execute(select(func.coalesce(func.sum(holds.c.amount_cents), 0))
                       .where(holds.c.account_id == account_id, holds.c.status == "held")).scalar_one()
        return Balance(from_cents(balance), from_cents(held), from_cents(balance - held))

    def statement(self, account_id: str, limit: int | None = None) -> list[Posting]:
        """The account's postings, oldest first (with `limit`: the most recent `limit` of them)."""
        if not self.account_exists(account_id):
            raise UnknownAccount(account_id)
        query = select(postings).where(postings.c.account_id == account_id)
        if limit is not None:
            query = query.order_by(postings.c.id.desc()).limit(limit)
        rows = sorted(self.connection.execute(query), key=lambda r: r.id)
        return [Posting(id=r.id, account_id=r.account_id, kind=r.kind, amount=from_cents(r.amount_cents),
                        dedup_key=r.dedup_key, memo=r.memo, hold_id=r.hold_id, created_at=r.created_at)
                for r in rows]

    # --- internals ---------------------------------------------------------------------------------
    def _find_hold(self, card_id: str, operation_id: str, *, lock: bool) -> Any:
        statement = self._sql.find_hold_for_update if lock else self._sql.find_hold
        row = self._one(statement, {"p_card_id": card_id, "p_operation_id": operation_id})
        return HoldRow(*row) if row else None

    def _settle(self, hold_id: int, status: str, captured_cents: int | None) -> None:
        self._run(self._sql.settle_hold, {"p_hold_id": hold_id, "p_status": status,
                                          "p_captured": captured_cents, "p_now": self._now()})

    def _post(self, account_id: str, kind: str, cents: int, dedup_key: str, memo: str | None,
              hold_id: int | None = None) -> bool:
        """Insert a posting; False when (kind, dedup_key) is already posted."""
        return self._one(self._sql.post, {
            "account_id": account_id, "kind": kind, "amount_cents": cents, "dedup_key": dedup_key,
            "memo": memo, "hold_id": hold_id, "created_at": self._now(),
        }) is not None

    def _posted(self, dedup_key: str, kinds: tuple[str, ...]) -> bool:
        first, second = (kinds * 2)[:2]
        return self._one(self._sql.posted, {"p_dedup_key": dedup_key, "p_kind1": first,
                                            "p_kind2": second}) is not None

    def _move(self, account_id: str, *, balance: int = 0, held: int = 0) -> bool:
        """Atomically adjust the running totals; False when the account does not exist."""
        return self._run(self._sql.move, {"p_account_id": account_id, "p_balance": balance,
                                          "p_held": held, "p_now": self._now()}).rowcount == 1
