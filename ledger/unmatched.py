"""Events that matched nothing in the books, recorded for an operator inside the event's unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hookstream.ledger.schema import unmatched_events, utcnow


@dataclass(frozen=True, slots=True)
class Unmatched:
    processor: str
    dedup_key: str
    event_type: str
    operation_id: str
    card_id: str | None
    amount: Decimal | None
    reason: str
    posted: bool = False


def record_unmatched(uow: Any, item: Unmatched) -> None:
    """Keep the event for an operator (once per processor and event)."""
    conn = uow.connection
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(unmatched_events).values(
        processor=item.processor, dedup_key=item.dedup_key, event_type=item.event_type,
        operation_id=item.operation_id, card_id=item.card_id,
        amount=format(item.amount, "f") if item.amount is not None else None, reason=item.reason,
        posted=item.posted, recorded_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=[unmatched_events.c.processor, unmatched_events.c.dedup_key]))


def unmatched(uow: Any, processor: str | None = None) -> list[Unmatched]:
    """Recorded unmatched events, oldest first."""
    t = unmatched_events
    query = select(t).order_by(t.c.id)
    if processor is not None:
        query = query.where(t.c.processor == processor)
    return [Unmatched(r.processor, r.dedup_key, r.event_type, r.operation_id, r.card_id,
                      Decimal(r.amount) if r.amount is not None else None, r.reason, bool(r.posted))
            for r in uow.connection.execute(query)]
