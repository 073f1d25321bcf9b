"""The cards processor: settles the receiver's authorization holds and credits refunds in the ledger.

Holds are keyed by (card_id, operation_id) and placed by the receiver under the authorization's
operation_id. A follow-up finds its hold by, in order:

1. its own operation_id (cleared, declined, reversal reuse the authorization's id);
2. the documented alias (`txn_X` → `life_evt_X`, platform reference §1.5);
3. the card's only open hold of exactly the event's amount (logged as `cards.hold_matched_by_amount`):
   same card, same money, so the books are right even if the platform renamed the operation.

Nothing else is guessed. Without a match the event is recorded as unmatched (inbox outcome
"unmatched", `hookstream_ledger_unmatched_total{event_type}`, a warning); a settlement without a
hold is still posted by the ledger as a debit on the card's account (the money did leave), a release
without a hold posts nothing. A `declined` without an open hold is normal (the receiver declined it
itself, so no hold was placed, or released a late approval's hold): it is recorded as
"nothing_held", not counted as unmatched.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from hookstream.ledger.money import to_cents
from hookstream.ledger.schema import holds
from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.card_events import EVENT_TYPES, action_for, operation_aliases
from hookstream.processors.errors import PermanentError
from hookstream.schemas import headers as h
from hookstream.schemas.events import CardTransaction
from hookstream.schemas.routing import CARDS_TRANSACTIONS

APPROVED = frozenset({"00", "SUCCESS"})  # platform: "00" or "SUCCESS" approve


class CardsProcessor(Processor):
    name = "cards"
    topics = (CARDS_TRANSACTIONS,)
    event_types = EVENT_TYPES

    def handle(self, event: Event, ctx: Context) -> None:
        data = event.data
        assert isinstance(data, CardTransaction)
        action, documented = action_for(event.event_type, event.status)
        if not documented:
            ctx.log.warning("cards.status_not_settled", status=event.status, card_id=data.card_id,
                            note="undocumented status for this event type: recorded, no money moved")
            _outcome(ctx, "recorded_unknown_status")
            return
        if action == "record":
            self._record(event, data, ctx)
        elif action == "capture":
            self._capture(event, data, ctx)
        elif action == "release":
            self._release(event, data, ctx)
        else:
            self._credit(event, data, ctx, kind="refund" if action == "refund" else "credit")

    # --- no money ------------------------------------------------------------------------------
    def _record(self, event: Event, data: CardTransaction, ctx: Context) -> None:
        if event.event_type != "authorization":
            return
        code = event.headers.get(h.RESPONSE_CODE)
        if code is not None and code.upper() not in APPROVED:
            # The platform was told "declined" (e.g. the fallback code after the budget ran out), so
            # no hold may stay, even one a late decision placed: the durable backstop of the
            # receiver's in-memory compensation.
            if ctx.uow.hold_status(data.card_id, event.operation_id) == "held":
                result = ctx.uow.release_hold(data.card_id, event.operation_id, f"{event.dedup_key}:answered-decline",
                                              memo="authorization answered with a decline")
                ctx.log.warning("cards.declined_hold_released", card_id=data.card_id, response_code=code,
                                decision_reason=event.headers.get(h.DECISION_REASON), released=result.applied)
                _outcome(ctx, "declined_hold_released")
            return
        if code is not None and code.upper() in APPROVED:
            if ctx.uow.hold_status(data.card_id, event.operation_id) is None:
                # e.g. answered by a policy that holds nothing, or spooled and decided elsewhere.
                ctx.log.warning("cards.approved_without_hold", card_id=data.card_id, response_code=code,
                                decision_reason=event.headers.get(h.DECISION_REASON))
                _outcome(ctx, "approved_without_hold")

    # --- settlement ----------------------------------------------------------------------------
    def _capture(self, event: Event, data: CardTransaction, ctx: Context) -> None:
        amount = _required_amount(data, event)
        operation = self._find_hold(event, data, ctx, amount)
        result = ctx.uow.capture_hold(data.card_id, operation or event.operation_id, amount,
                                      event.dedup_key, memo=event.dedup_key)
        if result.reason == "captured":
            ctx.log.info("cards.captured", card_id=data.card_id, account_id=result.account_id,
                         amount=str(result.amount), hold_amount=str(result.hold_amount),
                         hold_operation_id=operation)
            return
        if result.reason == "duplicate":
            _outcome(ctx, "duplicate")
            return
        # "unmatched" (posted as a plain debit on the card's account) or "unknown_card" (nothing).
        _unmatched(event, ctx, data.card_id, result.reason, posted=result.applied, amount=str(amount),
                   account_id=result.account_id, hold_status=result.hold_status)

    def _release(self, event: Event, data: CardTransaction, ctx: Context) -> None:
        amount = data.bill_amount if data.bill_amount is not None else None
        operation = self._find_hold(event, data, ctx, amount)
        result = ctx.uow.release_hold(data.card_id, operation or event.operation_id, event.dedup_key,
                                      memo=event.dedup_key)
        if result.reason == "released":
            if amount is not None and amount != result.amount:
                # A partial reversal still frees the whole hold: the ledger has no partial release.
                ctx.log.warning("cards.release_amount_differs", card_id=data.card_id,
                                event_amount=str(amount), released=str(result.amount))
            ctx.log.info("cards.released", card_id=data.card_id, account_id=result.account_id,
                         amount=str(result.amount), hold_operation_id=operation)
            return
        if result.reason == "duplicate":
            _outcome(ctx, "duplicate")
            return
        if event.event_type == "declined" and result.hold_status in (None, "released"):
            ctx.log.info("cards.declined_nothing_held", card_id=data.card_id)
            _outcome(ctx, "nothing_held")
            return
        _unmatched(event, ctx, data.card_id, "unmatched", posted=False,
                   amount=str(amount) if amount is not None else None, account_id=result.account_id,
                   hold_status=result.hold_status)

    def _find_hold(self, event: Event, data: CardTransaction, ctx: Context,
                   amount: Decimal | None) -> str | None:
        """The operation_id of the open hold this event settles, or None (see the module docstring)."""
        uow = ctx.uow
        for operation in [event.operation_id, *operation_aliases(event.operation_id)]:
            status = uow.hold_status(data.card_id, operation)
            if status == "held" or (status is not None and operation == event.operation_id):
                return operation  # settled already: the ledger tells duplicate from unmatched
        if amount is None:
            return None
        same = _open_holds(uow, data.card_id, to_cents(amount))
        if len(same) == 1:
            ctx.log.warning("cards.hold_matched_by_amount", card_id=data.card_id,
                            hold_operation_id=same[0], amount=str(amount))
            return same[0]
        if same:
            ctx.log.warning("cards.hold_ambiguous", card_id=data.card_id, candidates=len(same),
                            amount=str(amount))
        return None

    # --- money in ------------------------------------------------------------------------------
    def _credit(self, event: Event, data: CardTransaction, ctx: Context, *, kind: str) -> None:
        amount = _required_amount(data, event)
        account = ctx.uow.account_for_card(data.card_id)
        if account is None:
            _unmatched(event, ctx, data.card_id, "unknown_card", posted=False, amount=str(amount))
            return
        result = ctx.uow.credit(account, amount, event.dedup_key, kind=kind, memo=event.dedup_key)
        if not result.posted:
            _outcome(ctx, "duplicate")
            return
        ctx.log.info("cards.credited", kind=kind, card_id=data.card_id, account_id=account, amount=str(amount))


def _required_amount(data: CardTransaction, event: Event) -> Decimal:
    if data.bill_amount is None:
        # Money cannot be settled without the amount: dead-letter for an operator to look at.
        raise PermanentError(f"{event.event_type} without data.bill_amount")
    return data.bill_amount


def _open_holds(uow: Any, card_id: str, cents: int) -> list[str]:
    """Operation ids of the card's open holds of exactly `cents`."""
    rows = uow.connection.execute(
        select(holds.c.operation_id).where(holds.c.card_id == card_id, holds.c.status == "held",
                                           holds.c.amount_cents == cents).limit(3))
    return [row[0] for row in rows]


def _outcome(ctx: Context, outcome: str) -> None:
    ctx.uow.set_outcome(ctx.processor, ctx.event.dedup_key, outcome)


def _unmatched(event: Event, ctx: Context, card_id: str, reason: str, **fields: Any) -> None:
    ctx.metrics.ledger_unmatched.labels(event.event_type).inc()
    ctx.log.warning("cards.unmatched", card_id=card_id, reason=reason, **fields)
    _outcome(ctx, "unmatched")
