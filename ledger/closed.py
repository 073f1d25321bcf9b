"""Operations the platform closed (declined, reversed, settled) before any hold was placed under them.

A late approval must never hold money for them: the platform has moved on (its deadline passed and it
declined, or the transaction settled), so nothing would ever release that hold. The cards processor
writes a row when such an event finds no hold; both decision paths (`decide_pg`, `ingest.policy`'s
SQLite path) refuse to place a hold for a closed operation and answer with a decline, recorded. The
two sides meet on the account's row lock on Postgres (the decision function takes it first, the
processor takes it before looking for the hold), on the write lock on SQLite, so whichever commits
first, the other sees it: the decision finds the row, or the processor finds the hold and releases it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, Table, Text

from hookstream.ledger.schema import UtcDateTime, metadata, utcnow

if TYPE_CHECKING:  # store imports migrations, which import this module
    from hookstream.ledger.store import UnitOfWork

REASON = "operation_closed"  # the decision's reason for a closed operation (answered "05")

closed_operations = Table(
    "closed_operations",
    metadata,
    Column("card_id", Text, primary_key=True),
    Column("operation_id", Text, primary_key=True),
    Column("event_type", Text, nullable=False),  # the event that closed it: declined, reversal, …
    Column("dedup_key", Text, nullable=False),
    Column("closed_at", UtcDateTime(), nullable=False, default=utcnow),
)


def create(conn: Connection) -> None:
    closed_operations.create(conn)


_INSERT = {
    "sqlite": ("INSERT INTO closed_operations (card_id, operation_id, event_type, dedup_key, closed_at) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (card_id, operation_id) DO NOTHING"),
    "postgresql": ("INSERT INTO closed_operations (card_id, operation_id, event_type, dedup_key, closed_at) "
                   "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (card_id, operation_id) DO NOTHING"),
}


def close(uow: UnitOfWork, card_id: str, operation_id: str, event_type: str, dedup_key: str) -> bool:
    """Remember that the operation is closed; False when it already was."""
    cursor = uow.connection.connection.cursor()
    try:
        cursor.execute(_INSERT[uow.connection.dialect.name],
                       (card_id, operation_id, event_type, dedup_key, uow._now()))  # noqa: SLF001
        return cursor.rowcount == 1
    finally:
        cursor.close()
