"""The three-ds processor: answers forwarded 3DS challenges through the respond endpoint, within the TTL.

It decides (`decide(event, view) -> Effects`): the verdict comes from `domain.three_ds.decide` (pure) fed
the view's card and balance (a balance including the batch's earlier decisions); the answer is a
`respond_3ds` command in the outbox (`POST /cards/virtual-cards/{cardId}/3ds-authorization
{code, approve}`), sent after commit with an Idempotency-Key derived from the event, so a
redelivered or retried challenge repeats the same call. A challenge older than
HOOKSTREAM_THREE_DS_TTL_S (from `data.transaction_timestamp`, else from when the receiver took it)
is recorded as expired by the runtime and never answered; an answer still unsent at that deadline
(an API outage) is expired by the dispatcher, never sent late.

The challenge `code` is a secret (platform reference §4.2): it goes to the API only, never into a
log line, metric or inbox outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hookstream.domain.effects import Effects, respond_3ds
from hookstream.domain.three_ds import ThreeDSFacts, ThreeDSRules, decide
from hookstream.logs import remember_code
from hookstream.processors.base import Event, Processor
from hookstream.processors.view import LedgerView
from hookstream.schemas.events import ThreeDSChallenge
from hookstream.schemas.routing import CARDS_3DS
from hookstream.settings import Settings


class ThreeDSProcessor(Processor):
    name = "three-ds"
    topics = (CARDS_3DS,)
    event_types = frozenset({"notification_3ds_authorization"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.ttl = timedelta(seconds=settings.three_ds_ttl_s)
        self.rules = ThreeDSRules.from_settings(settings)

    def needs_api(self) -> bool:
        return True  # every challenge is answered through the API

    def deadline(self, event: Event) -> datetime | None:
        data = event.data
        assert isinstance(data, ThreeDSChallenge)
        started = data.transaction_timestamp or event.received_at
        if started is None:
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)  # the platform sends UTC ("…Z")
        return started + self.ttl

    def decide(self, event: Event, view: LedgerView) -> Effects:
        data = event.data
        assert isinstance(data, ThreeDSChallenge)
        remember_code(data.code)  # masked in every later log line, whatever key carries it (process-local)
        card = view.card_state(data.card_id)
        available = view.balance(card.account_id).available if card is not None else None
        extra = data.model_extra or {}
        mcc = extra.get("mcc_code") or extra.get("merchant_mcc")
        verdict = decide(
            ThreeDSFacts(
                card_linked=card is not None,
                card_active=card is not None and card.active,
                available=available,
                amount=data.transaction_amount,
                currency=data.transaction_currency,
                merchant_country=data.merchant_country_code,
                mcc=str(mcc) if mcc is not None else None,
            ),
            self.rules,
        )
        # operation_id equals the code for challenges: the runtime's log binds its digest, as the receiver does.
        return (Effects()
                .send(respond_3ds(data.card_id, data.code, verdict.approve, self.deadline(event)))
                .recorded("approved" if verdict.approve else "declined")
                .note("info", "three_ds.decided", card_id=data.card_id, approve=verdict.approve,
                      reason=verdict.reason, amount_checked=verdict.amount_checked,
                      amount=str(data.transaction_amount) if data.transaction_amount is not None else None,
                      currency=data.transaction_currency))
