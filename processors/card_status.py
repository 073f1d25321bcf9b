"""The card-status processor: records velocity blocks in the ledger; optionally unblocks through the API.

`card_blocked_by_velocity` marks the linked card blocked, so the receiver's ledger policy declines
it too. With HOOKSTREAM_AUTO_UNBLOCK=true (default off: a velocity block is a fraud signal an
operator should see first) the card is marked unblocked and an `unblock_card` command goes into the
outbox (`PATCH /cards/virtual-cards/{cardId}/unblock`, which also resets the platform's velocity
counter), sent after commit. A card linked to no
account is recorded as unmatched (inbox outcome, warning); the auto-unblock still applies to it,
because the block is on the platform, not in our books. It decides (`decide(event, view) -> Effects`): the
card's flag, the command, the outcome and the log lines are values the runtime applies with the batch.
"""

from __future__ import annotations

from hookstream.domain.effects import Effects
from hookstream.domain.velocity import on_velocity_block
from hookstream.processors.base import Event, Processor
from hookstream.processors.view import LedgerView
from hookstream.schemas.events import CardBlockedByVelocity
from hookstream.schemas.routing import CARDS_STATUS


class CardStatusProcessor(Processor):
    name = "card-status"
    topics = (CARDS_STATUS,)
    event_types = frozenset({"card_blocked_by_velocity"})

    def needs_api(self) -> bool:
        return self.settings.auto_unblock

    def decide(self, event: Event, view: LedgerView) -> Effects:
        data = event.data
        assert isinstance(data, CardBlockedByVelocity)
        rule = data.triggered_rule
        linked = view.card_state(data.card_id) is not None
        decision = on_velocity_block(data.card_id, linked=linked, auto_unblock=self.settings.auto_unblock)
        fx = (Effects().card_flags(data.card_id, blocked=decision.blocked).recorded(decision.outcome)
              .note("warning", "card_status.blocked_by_velocity", card_id=data.card_id,
                    blocked_at=data.blocked_at.isoformat(), linked=linked,
                    max_authorizations=rule.max_authorizations if rule else None,
                    time_window_seconds=rule.time_window_seconds if rule else None,
                    last_authorization_id=data.last_authorization_id))
        for command in decision.commands:
            fx.send(command)
        if not decision.blocked:
            fx.note("info", "card_status.unblocked", card_id=data.card_id, policy="auto_unblock")
        return fx
