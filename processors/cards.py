"""The cards processor: settles the receiver's authorization holds and credits refunds in the ledger.

It decides (`decide(event, view) -> Effects`): the rules are `domain.card_events.follow_up` (pure: which
hold an event settles, by identity only, and what it does to it; see that module), fed what the view
reads of the event's hold, the card's account and the receiver's first answer. The capture or release,
the closed operation, the record for an operator (`unmatched_events`, inbox outcome "unmatched",
`hookstream_ledger_unmatched_total{event_type}`, a warning) and a refund's credit are intents the runtime
applies in the batch's transaction. The view takes the card account's row lock before it concludes that
an operation has no hold, so a decision committing that hold at the same moment is either seen (and
settled here) or sees the operation closed; a hold that changes between the read and the apply has its
batch decided again, never applied on a stale read.
"""

from __future__ import annotations

from typing import Any

from hookstream.domain.card_events import EVENT_TYPES, FollowUp, follow_up, identities, needs
from hookstream.domain.effects import Effects
from hookstream.processors.base import Event, Processor
from hookstream.processors.errors import PermanentError
from hookstream.processors.view import LedgerView
from hookstream.schemas import headers as h
from hookstream.schemas.events import CardTransaction
from hookstream.schemas.routing import CARDS_TRANSACTIONS


class CardsProcessor(Processor):
    name = "cards"
    topics = (CARDS_TRANSACTIONS,)
    event_types = EVENT_TYPES

    def preload(self, view: LedgerView, records: list[tuple[Any, str]]) -> None:
        """The holds the batch's events will look for, in one statement: the card is the record's key, the
        operation the last part of the dedup key the receiver wrote (`schemas.routing.dedup_key`)."""
        pairs = []
        for record, key in records:
            parts = key.split(":", 3)
            if record.key is not None and len(parts) == 4 and parts[0] == "cards":
                card = record.key.decode("utf-8", "replace")
                pairs += [(card, operation) for operation in identities(parts[3])]
        view.preload_holds(pairs)

    def decide(self, event: Event, view: LedgerView) -> Effects:
        data = event.data
        assert isinstance(data, CardTransaction)
        code = event.headers.get(h.RESPONSE_CODE)
        wants_hold, wants_account, wants_answer = needs(event.event_type, event.status, code)
        hold = None
        if wants_hold:
            settles = event.event_type != "authorization"  # an authorization's record looks at its own hold only
            ops = identities(event.operation_id) if settles else (event.operation_id,)
            hold = view.find_hold(data.card_id, ops, lock_on_miss=settles)
        account = None
        if wants_account and (hold is None or hold.status != "held"):
            account = view.account_for_card(data.card_id)
        first = view.recorded_answer(event.dedup_key) if wants_answer else None
        try:
            return follow_up(FollowUp(
                event.event_type, event.status, event.operation_id, data.card_id, data.bill_amount, hold, account,
                response_code=code, decision_reason=event.headers.get(h.DECISION_REASON), first_answer=first))
        except ValueError as exc:
            raise PermanentError(str(exc)) from None  # no amount to settle: dead-lettered for an operator
