"""Database trouble is classified: busy/locked/unreachable is transient, the rest is not."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import psycopg.errors
import pytest
from sqlalchemy import exc as sa_exc

from hookstream.ledger.migrations import MIGRATIONS
from hookstream.ledger import Ledger, LedgerError, LedgerTransientError, SchemaNotReady
from hookstream.ledger.errors import is_transient_db_error


def test_a_write_blocked_past_the_lock_timeout_raises_ledger_transient_error(
        funded: Ledger, ledger_url: str) -> None:
    impatient = Ledger(ledger_url, busy_timeout_ms=200)
    try:
        with funded.unit_of_work() as holder:
            holder.credit("acct", Decimal("1.00"), "locks-the-account-row")
            with pytest.raises(LedgerTransientError) as caught, impatient.unit_of_work() as uow:
                uow.place_hold("acct", "card-1", "op-1", Decimal("5.00"), "auth-op-1")
        assert is_transient_db_error(caught.value.__cause__)
        with impatient.unit_of_work() as uow:  # once the lock is gone, the retry succeeds
            assert uow.place_hold("acct", "card-1", "op-1", Decimal("5.00"), "auth-op-1").placed
    finally:
        impatient.close()


def test_unreachable_postgres_raises_ledger_transient_error() -> None:
    books = Ledger("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", busy_timeout_ms=200)
    try:
        with pytest.raises(LedgerTransientError), books.unit_of_work():
            pass
    finally:
        books.close()


@pytest.mark.postgres
def test_postgres_refuses_work_until_db_upgrade_then_upgrade_is_idempotent(postgres_database_url: str) -> None:
    books = Ledger(postgres_database_url)
    try:
        with pytest.raises(SchemaNotReady, match="hookstream db upgrade"), books.unit_of_work():
            pass
        assert [m.version for m in books.upgrade()] == [m.version for m in MIGRATIONS]
        assert books.upgrade() == []
        with books.unit_of_work() as uow:
            assert uow.claim("p", "k")
    finally:
        books.close()


def test_constraint_violations_are_permanent_ledger_errors(funded: Ledger) -> None:
    with pytest.raises(LedgerError) as caught, funded.unit_of_work() as uow:
        uow.place_hold("acct", "card-1", "op-1", Decimal("1.00"), "same-key")
        uow.place_hold("acct", "card-1", "op-2", Decimal("1.00"), "same-key")  # key reused: a caller bug
    assert not isinstance(caught.value, LedgerTransientError)
    with funded.unit_of_work(read_only=True) as uow:
        assert uow.hold_status("card-1", "op-1") is None  # the whole unit of work rolled back


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("database table is locked"),
    psycopg.errors.SerializationFailure("could not serialize access"),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
    psycopg.errors.AdminShutdown("terminating connection"),
    psycopg.OperationalError("connection refused"),
    sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
])
def test_busy_locked_deadlocked_and_disconnected_are_transient(error: BaseException) -> None:
    assert is_transient_db_error(error)


@pytest.mark.parametrize("error", [
    sqlite3.OperationalError("no such table: accounts"),
    sqlite3.IntegrityError("UNIQUE constraint failed"),
    psycopg.errors.UniqueViolation("duplicate key"),
    psycopg.errors.UndefinedTable("relation does not exist"),
    sa_exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")),
    ValueError("not a database error"),
])
def test_constraint_and_programming_errors_are_not_transient(error: BaseException) -> None:
    assert not is_transient_db_error(error)


@pytest.mark.postgres
def test_connection_lost_mid_transaction_is_transient_and_the_ledger_recovers(
        postgres_database_url: str) -> None:
    books = Ledger(postgres_database_url, auto_upgrade=True)
    admin = Ledger(postgres_database_url)
    try:
        with pytest.raises(LedgerTransientError), books.unit_of_work() as uow:
            assert uow.claim("cards", "k1")
            pid = uow.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with admin.unit_of_work() as other:
                other.connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            uow.claim("cards", "k2")
        with books.unit_of_work() as uow:  # a fresh connection; the lost transaction left nothing
            assert uow.inbox_entry("cards", "k1") is None
            assert uow.claim("cards", "k1")
    finally:
        books.close()
        admin.close()


def test_a_current_schema_is_checked_without_the_write_lock_beside_a_busy_sqlite_writer(tmp_path) -> None:
    """A process starting while another holds SQLite's write lock must not fail its schema check."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    Ledger(url).upgrade()
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    try:
        books = Ledger(url, busy_timeout_ms=200)  # SQLite auto-upgrades: only when behind
        try:
            with books.unit_of_work(read_only=True) as uow:
                assert uow.account_exists("nobody") is False
            with pytest.raises(LedgerTransientError):  # a write still waits for the lock, and says so
                with books.unit_of_work() as uow:
                    uow.ensure_account("acct")
        finally:
            books.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
