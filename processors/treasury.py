"""The treasury processor: records transfers and withdrawals with their status; alerts on the bad ones.

Every `transfer` (treasury), `withdraw` (virtual_wallets) and `warranty_withdraw` (cards) event is
one row in the ledger's `treasury_movements` table, so an operation's status history is queryable
(`hookstream.ledger.treasury.movements`). Statuses FAILED and MANUAL_CHECK (any casing; schemas
lower-case them) increment `hookstream_treasury_alerts_total{event_type,status}` and log a warning
with the operation id. No money is posted: these movements are not the card program's books.
It decides (`decide(event, view) -> Effects`): the row is a `Movement` intent the runtime records in the
batch's transaction, with the batch's other events.
"""

from __future__ import annotations

from hookstream.domain.effects import Effects, Movement
from hookstream.domain.treasury import is_alert
from hookstream.processors.base import Event, Processor
from hookstream.processors.view import LedgerView
from hookstream.schemas.events import WarrantyWithdraw, Withdraw
from hookstream.schemas.routing import TREASURY


class TreasuryProcessor(Processor):
    name = "treasury"
    topics = (TREASURY,)
    event_types = frozenset({"transfer", "withdraw", "warranty_withdraw"})

    def decide(self, event: Event, view: LedgerView) -> Effects:
        data = event.data
        assert isinstance(data, (Withdraw, WarrantyWithdraw))
        status = event.status
        alert = is_alert(status)
        fx = Effects().movement(Movement(
            product=event.product, event_type=event.event_type, operation_id=event.operation_id, status=status,
            reason=event.envelope.reason, wallet_id=data.wallet_id, card_id=getattr(data, "card_id", None),
            amount=data.amount, transaction_hash=data.transaction_hash, to_wallet_address=data.to_wallet_address,
            alert=alert, occurred_at=data.created_at))
        fields = dict(product=event.product, status=status, wallet_id=data.wallet_id,
                      amount=str(data.amount) if data.amount is not None else None,
                      transaction_hash=data.transaction_hash, reason=event.envelope.reason)
        if alert:
            return fx.recorded(f"alert:{status}").note("warning", "treasury.alert", **fields)
        return fx.note("info", "treasury.recorded", **fields)
