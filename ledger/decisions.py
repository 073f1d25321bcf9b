"""The record of authorization answers: one row per dedup key, read back when the event is redelivered.

A row is written in the transaction that places (or refuses) the hold, so the answer and the hold
commit or vanish together; `attempt` names the delivery that got the answer, so a fallback answer
overrides only its own delivery's decision, never an earlier delivery's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Column, Connection, ForeignKey, Table, Text

from hookstream.ledger.schema import Id, UtcDateTime, metadata, utcnow

if TYPE_CHECKING:  # store imports migrations, which import this module
    from hookstream.ledger.store import UnitOfWork

authorization_decisions = Table(
    "authorization_decisions",
    metadata,
    Column("dedup_key", Text, primary_key=True),
    Column("card_id", Text, nullable=False),
    Column("operation_id", Text, nullable=False),
    Column("response_code", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("hold_id", Id, ForeignKey("holds.id"), nullable=True),  # set if and only if approved
    Column("attempt", Text, nullable=False),
    Column("decided_at", UtcDateTime(), nullable=False, default=utcnow),
)


class Recorded(NamedTuple):
    response_code: str
    reason: str
    hold_id: int | None
    attempt: str


def create(conn: Connection) -> None:
    authorization_decisions.create(conn)


_SELECT = ("SELECT response_code, reason, hold_id, attempt FROM authorization_decisions "
           "WHERE dedup_key = ?")
# One statement for what a decision must know first: the answer on record (a redelivery) and whether
# the platform closed the operation already (`closed`); at most two rows, the closed one flagged 1.
_PRIOR = ("SELECT response_code, reason, hold_id, attempt, 0 FROM authorization_decisions WHERE dedup_key = ? "
          "UNION ALL SELECT NULL, NULL, NULL, NULL, 1 FROM closed_operations "
          "WHERE card_id = ? AND operation_id = ?")
# The receiver's read of the answer on record when its decision did not come in time (Postgres, psycopg).
RECORDED_PG = "SELECT response_code, reason, hold_id FROM authorization_decisions WHERE dedup_key = %s"
_INSERT = ("INSERT INTO authorization_decisions (dedup_key, card_id, operation_id, response_code, reason, "
           "hold_id, attempt, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_UPDATE = ("UPDATE authorization_decisions SET response_code = ?, reason = ?, hold_id = ?, decided_at = ? "
           "WHERE dedup_key = ?")


def recorded(uow: UnitOfWork, dedup_key: str) -> Recorded | None:
    """The answer recorded for this dedup key (SQLite path; Postgres decides in `decide_pg`)."""
    row = _cursor(uow).execute(_SELECT, (dedup_key,)).fetchone()
    return Recorded(*row) if row else None


def prior(uow: UnitOfWork, dedup_key: str, card_id: str, operation_id: str) -> tuple[Recorded | None, bool]:
    """The answer recorded for this dedup key, and whether the operation is closed (SQLite path)."""
    found, closed = None, False
    for *row, is_closed in _cursor(uow).execute(_PRIOR, (dedup_key, card_id, operation_id)).fetchall():
        if is_closed:
            closed = True
        else:
            found = Recorded(*row)
    return found, closed


def record(uow: UnitOfWork, dedup_key: str, card_id: str, operation_id: str, response_code: str,
           reason: str, hold_id: int | None, attempt: str) -> None:
    _cursor(uow).execute(_INSERT, (dedup_key, card_id, operation_id, response_code, reason, hold_id,
                                   attempt, uow._now()))  # noqa: SLF001 - the transaction's time


def overwrite(uow: UnitOfWork, dedup_key: str, response_code: str, reason: str) -> None:
    """The delivery was answered with `response_code` after all (its decision came too late)."""
    _cursor(uow).execute(_UPDATE, (response_code, reason, None, uow._now(), dedup_key))  # noqa: SLF001


def _cursor(uow: UnitOfWork):  # noqa: ANN202 - the DB-API cursor of the unit of work's connection
    return uow.connection.connection.cursor()
