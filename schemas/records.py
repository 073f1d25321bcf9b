"""Rows the books keep about events: contracts shared by the decisions that ask for them and the ledger that
stores them (the domain and the ledger may both import schemas, not each other). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Movement:
    """A treasury movement (transfer, withdrawal) with its reported status; `alert` for FAILED / MANUAL_CHECK."""

    product: str
    event_type: str
    operation_id: str
    status: str | None
    reason: str | None
    wallet_id: str | None
    card_id: str | None
    amount: Decimal | None
    transaction_hash: str | None
    to_wallet_address: str | None
    alert: bool
    occurred_at: datetime | None
