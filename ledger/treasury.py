"""Treasury movements (transfers, withdrawals) recorded with their reported status, inside a unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from hookstream.ledger.schema import treasury_movements, utcnow
from hookstream.schemas.records import Movement


@dataclass(frozen=True, slots=True)
class TreasuryMovement(Movement):
    """A recorded movement: what was reported (`schemas.records.Movement`), its event's dedup key, when recorded."""

    dedup_key: str = ""
    recorded_at: datetime | None = None


def record_movement(uow: Any, dedup_key: str, movement: Movement) -> bool:
    """Insert one reported movement; False when this event (dedup key) is already recorded."""
    table = treasury_movements
    if uow.connection.execute(select(table.c.id).where(table.c.dedup_key == dedup_key)).first():
        return False
    uow.connection.execute(insert(table).values(
        dedup_key=dedup_key, product=movement.product, event_type=movement.event_type,
        operation_id=movement.operation_id, status=movement.status, reason=movement.reason,
        wallet_id=movement.wallet_id, card_id=movement.card_id,
        amount=format(movement.amount, "f") if movement.amount is not None else None,
        transaction_hash=movement.transaction_hash, to_wallet_address=movement.to_wallet_address,
        alert=movement.alert, occurred_at=movement.occurred_at, recorded_at=utcnow()))
    return True


def movements(uow: Any, operation_id: str | None = None, *, alerts_only: bool = False) -> list[TreasuryMovement]:
    """Recorded movements, oldest first (one operation's status history with `operation_id`)."""
    table = treasury_movements
    query = select(table).order_by(table.c.id)
    if operation_id is not None:
        query = query.where(table.c.operation_id == operation_id)
    if alerts_only:
        query = query.where(table.c.alert.is_(True))
    out = []
    for row in uow.connection.execute(query):
        m = row._mapping
        out.append(TreasuryMovement(
            dedup_key=m["dedup_key"], product=m["product"], event_type=m["event_type"],
            operation_id=m["operation_id"], status=m["status"], reason=m["reason"],
            wallet_id=m["wallet_id"], card_id=m["card_id"],
            amount=Decimal(m["amount"]) if m["amount"] is not None else None,
            transaction_hash=m["transaction_hash"], to_wallet_address=m["to_wallet_address"],
            alert=bool(m["alert"]), occurred_at=m["occurred_at"], recorded_at=m["recorded_at"]))
    return out
