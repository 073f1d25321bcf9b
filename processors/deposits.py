"""The deposits processor: credits the account linked to the deposit wallet, then refreshes TOP_UP cards.

`deposit` and `ramp_on` (cards, virtual_wallets, treasury) credit the account linked to
`data.wallet_id` with `net_amount` (after fees) when given, else `amount`, cut down to whole cents
(`domain.deposits.credit_for`, pure). A wallet linked to no account is recorded as unmatched (inbox outcome,
`hookstream_ledger_unmatched_total{event_type}`, a warning), never guessed. Then every TOP_UP card
linked to that account gets its platform virtual balance overridden to the account's available
balance: an `override_card_virtual_balance` command per card in the outbox
(`PATCH /cards/virtual-cards/{cardId}/virtual-balance`), one Idempotency-Key per card and event, sent
after commit in the order decided per card. A refusal by the platform is the dispatcher's to
dead-letter; the credit stands.
"""

from __future__ import annotations

from decimal import Decimal

from hookstream.domain.effects import override_virtual_balance
from hookstream.processors.base import Context, Event, Processor
from hookstream.domain.deposits import credit_for
from hookstream.processors.errors import PermanentError
from hookstream.schemas.events import Deposit, RampOn
from hookstream.schemas.routing import DEPOSITS

TOP_UP = "TOP_UP"
ZERO = Decimal("0.00")


class DepositsProcessor(Processor):
    name = "deposits"
    topics = (DEPOSITS,)
    event_types = frozenset({"deposit", "ramp_on"})

    def needs_api(self) -> bool:
        return True  # credited deposits override the card's virtual balance

    def handle(self, event: Event, ctx: Context) -> None:
        data = event.data
        assert isinstance(data, (Deposit, RampOn))
        if event.status not in (None, "success"):
            # Only a completed deposit is money in the wallet.
            ctx.log.warning("deposits.not_credited", status=event.status, wallet_id=data.wallet_id)
            ctx.uow.set_outcome(ctx.processor, event.dedup_key, "recorded_not_success")
            return
        try:
            # ramp_on documents no net amount (its `amount` is what was credited on chain).
            net = data.net_amount if isinstance(data, Deposit) else None
            credit = credit_for(event.product, data.amount, net)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        account = ctx.uow.account_for_wallet(data.wallet_id)
        if account is None:
            ctx.metrics.ledger_unmatched.labels(event.event_type).inc()
            ctx.log.warning("deposits.unmatched", wallet_id=data.wallet_id, amount=str(credit.received),
                            reason="wallet not linked to an account")
            ctx.uow.set_outcome(ctx.processor, event.dedup_key, "unmatched")
            return
        if credit.rounded:
            ctx.log.info("deposits.amount_rounded", received=str(credit.received), credited=str(credit.amount))
        if credit.below_minimum is not None:
            ctx.log.info("deposits.below_notification_minimum", product=event.product,
                         minimum=str(credit.below_minimum), amount=str(data.amount))
        result = ctx.uow.credit(account, credit.amount, event.dedup_key, kind="credit", memo=event.dedup_key)
        if not result.posted:
            ctx.uow.set_outcome(ctx.processor, event.dedup_key, "duplicate")
            return
        ctx.log.info("deposits.credited", wallet_id=data.wallet_id, account_id=account,
                     amount=str(credit.amount))
        self._refresh_top_up_cards(account, ctx)

    def _refresh_top_up_cards(self, account: str, ctx: Context) -> None:
        cards = [c for c in ctx.uow.cards_for_account(account)
                 if (c.approval_method or "").upper().replace("TOPUP", TOP_UP) == TOP_UP]
        if not cards:
            return
        # The platform refuses a negative virtual balance (412): an overdrawn account shows zero.
        available = max(ctx.uow.balance(account).available, ZERO)
        for card in cards:
            ctx.send(override_virtual_balance(card.card_id, available))
        ctx.log.info("deposits.virtual_balance_queued", cards=[c.card_id for c in cards], account_id=account,
                     virtual_balance=str(available))
