"""Ledger exception types and the one rule deciding which database errors are transient."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc


class LedgerError(Exception):
    """A ledger operation failed; retrying the same input will not help (unless a subclass says so)."""


class LedgerTransientError(LedgerError):
    """The database was busy, locked, deadlocked or unreachable: retry the whole unit of work."""


class UnknownAccount(LedgerError):
    """The account id is not in the ledger."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"unknown account {account_id!r}")
        self.account_id = account_id


class InvalidAmount(LedgerError):
    """An amount is not a finite, non-negative Decimal with at most two decimal places."""


class SchemaNotReady(LedgerError):
    """The database schema is missing or older than this code: run `hookstream db upgrade`."""


# SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout, statement timeout,
# server shutting down / starting up, too many connections. Class 08 (connection) is added below.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300"})

# sqlite3 messages for SQLITE_BUSY / SQLITE_LOCKED (3.11 has no stable error-code attribute everywhere).
_SQLITE_TRANSIENT_TEXT = ("database is locked", "database is busy", "database table is locked")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, the DB-API error SQLAlchemy wraps, and explicit causes (not mere context)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([getattr(item, "orig", None), item.__cause__])
    return seen


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, LedgerTransientError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # connection pool exhausted for pool_timeout
        return True
    if isinstance(exc, sa_exc.PendingRollbackError):  # a connection left invalid by an earlier failure
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(t in text for t in _SQLITE_TRANSIENT_TEXT)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    # psycopg raises OperationalError without a SQLSTATE when the server cannot be reached at all.
    module = type(exc).__module__ or ""
    if module.startswith("psycopg") and type(exc).__name__ in {"OperationalError", "InterfaceError"}:
        return sqlstate is None
    return False


def is_transient_db_error(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) is a database condition a retry can clear.

    SQLite: "database is locked"/busy. Postgres: serialization_failure, deadlock_detected,
    lock_not_available, query_canceled (timeouts), admin/crash shutdown, connection exceptions.
    Constraint violations, syntax errors and the like are permanent.
    """
    return any(_is_transient_one(e) for e in _chain(exc))


def is_database_error(exc: BaseException) -> bool:
    """Whether `exc` came from the database (driver or SQLAlchemy), as opposed to the caller's own code."""
    return any(isinstance(e, (sa_exc.SQLAlchemyError, sqlite3.Error, LedgerTransientError))
               or (type(e).__module__ or "").startswith("psycopg") for e in _chain(exc))
