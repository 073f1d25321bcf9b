"""The cards processor: settles the receiver's authorization holds and credits refunds in the ledger.

Holds are identified by (card_id, operation_id) and placed by the receiver under the authorization's
operation_id. A follow-up finds its hold by identity only:

1. its own operation_id (cleared, declined, reversal reuse the authorization's id);
2. the documented alias of that id (`txn_X` → `life_evt_X`, platform reference §1.5).

Never by resemblance: another open hold of the same card and amount is another purchase (releasing
it would let the card spend money it already committed). Without a match the event is recorded for
an operator: a row in `unmatched_events`, inbox outcome "unmatched",
`hookstream_ledger_unmatched_total{event_type}` and a warning; a settlement without a hold is still
posted by the ledger as a debit on the card's account (the money did leave), a release without a
hold posts nothing. A `declined` without an open hold is normal (the receiver declined it
itself, so no hold was placed, or released a late approval's hold): it is recorded as
"nothing_held", not counted as unmatched.

A follow-up that finds no hold at all also closes the operation (`ledger.closed`): an authorization
decided after it (late, past the platform's deadline) is declined instead of holding money forever.
The account's row lock is taken before the hold is looked for, so a decision committing its hold at
the same moment is either seen (and settled here) or sees the closed operation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hookstream.ledger.unmatched import Unmatched, record_unmatched
from hookstream.processors.base import Context, Event, Processor
from hookstream.domain.card_events import EVENT_TYPES, action_for, operation_aliases
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
            # receiver's in-memory compensation. But a redelivery's record may say "05" while the
            # first delivery was approved (its record can reach Kafka later, and is then a duplicate
            # here): the recorded first answer decides, so an approved hold is never released this way.
            first = ctx.uow.recorded_answer(event.dedup_key)
            if first is not None and first.upper() in APPROVED:
                ctx.log.warning("cards.redelivery_decline_kept_hold", card_id=data.card_id, response_code=code,
                                first_response_code=first)
                _outcome(ctx, "redelivery_decline_kept_hold")
                return
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
        operation = self._find_hold(event, data, ctx)
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
        if result.hold_status is None:
            _close(event, data, ctx)
        _unmatched(event, ctx, data.card_id, result.reason, posted=result.applied, amount=str(amount),
                   account_id=result.account_id, hold_status=result.hold_status)

    def _release(self, event: Event, data: CardTransaction, ctx: Context) -> None:
        amount = data.bill_amount if data.bill_amount is not None else None
        operation = self._find_hold(event, data, ctx)
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
        if result.hold_status is None:
            _close(event, data, ctx)
        if event.event_type == "declined" and result.hold_status in (None, "released"):
            ctx.log.info("cards.declined_nothing_held", card_id=data.card_id)
            _outcome(ctx, "nothing_held")
            return
        _unmatched(event, ctx, data.card_id, "unmatched", posted=False,
                   amount=str(amount) if amount is not None else None, account_id=result.account_id,
                   hold_status=result.hold_status)

    def _find_hold(self, event: Event, data: CardTransaction, ctx: Context) -> str | None:
        """The operation_id of the hold this event settles, by identity (see the module docstring).

        Nothing found: the card's account is locked and the holds looked at again, so a decision
        committing this hold right now is waited for and seen (the account lock is the one a decision
        takes first); what is still not found then is closed by the caller."""
        for lock in (False, True):
            if lock:
                ctx.uow.lock_card_account(data.card_id)
            for operation in [event.operation_id, *operation_aliases(event.operation_id)]:
                status = ctx.uow.hold_status(data.card_id, operation)
                if status == "held" or (status is not None and operation == event.operation_id):
                    return operation  # settled already: the ledger tells duplicate from unmatched
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


def _close(event: Event, data: CardTransaction, ctx: Context) -> None:
    """No hold under the operation's identity: the platform closed it before any hold was placed (e.g. it
    declined at its deadline while the receiver's decision was still coming). Remember that, so a late
    approval never places a hold that nothing would release."""
    for operation in [event.operation_id, *operation_aliases(event.operation_id)]:
        if ctx.uow.close_operation(data.card_id, operation, event.event_type, event.dedup_key):
            ctx.log.info("cards.operation_closed", card_id=data.card_id, closed_operation_id=operation)


def _required_amount(data: CardTransaction, event: Event) -> Decimal:
    if data.bill_amount is None:
        # Money cannot be settled without the amount: dead-letter for an operator to look at.
        raise PermanentError(f"{event.event_type} without data.bill_amount")
    return data.bill_amount


def _outcome(ctx: Context, outcome: str) -> None:
    ctx.uow.set_outcome(ctx.processor, ctx.event.dedup_key, outcome)


def _unmatched(event: Event, ctx: Context, card_id: str, reason: str, **fields: Any) -> None:
    """Record the event for an operator: table, metric, log line, inbox outcome."""
    amount = fields.get("amount")
    record_unmatched(ctx.uow, Unmatched(
        ctx.processor, event.dedup_key, event.event_type, event.operation_id, card_id,
        Decimal(amount) if amount is not None else None, reason, bool(fields.get("posted"))))
    ctx.metrics.ledger_unmatched.labels(event.event_type).inc()
    ctx.log.warning("cards.unmatched", card_id=card_id, reason=reason, **fields)
    _outcome(ctx, "unmatched")
