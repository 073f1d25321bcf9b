"""The deposits processor: credits the account linked to the deposit wallet, then refreshes TOP_UP cards.

`deposit` and `ramp_on` (cards, virtual_wallets, treasury) credit the account linked to
`data.wallet_id` with `net_amount` (after fees) when given, else `amount`, cut down to whole cents
(`domain.deposits.credit_for`, pure). A wallet linked to no account is recorded as unmatched (inbox outcome,
`hookstream_ledger_unmatched_total{event_type}`, a warning), never guessed.
It decides (`decide(event, view) -> Effects`): the credit, the commands and the log lines are values the
runtime applies in the batch's transaction, together with the claims of the batch's other deposits. Then every TOP_UP card
linked to that account gets its platform virtual balance overridden to the account's available
balance: an `override_card_virtual_balance` command per card in the outbox
(`PATCH /cards/virtual-cards/{cardId}/virtual-balance`), one Idempotency-Key per card and event, sent
after commit in the order decided per card. A refusal by the platform is the dispatcher's to
dead-letter; the credit stands.
"""

from __future__ import annotations

from decimal import Decimal

from hookstream.domain.deposits import credit_for
from hookstream.domain.effects import Effects, override_virtual_balance
from hookstream.processors.base import Event, Processor
from hookstream.processors.errors import PermanentError
from hookstream.processors.view import LedgerView
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

    def decide(self, event: Event, view: LedgerView) -> Effects:
        data = event.data
        assert isinstance(data, (Deposit, RampOn))
        fx = Effects()
        if event.status not in (None, "success"):
            # Only a completed deposit is money in the wallet.
            return fx.recorded("recorded_not_success").note(
                "warning", "deposits.not_credited", status=event.status, wallet_id=data.wallet_id)
        try:
            # ramp_on documents no net amount (its `amount` is what was credited on chain).
            net = data.net_amount if isinstance(data, Deposit) else None
            credit = credit_for(event.product, data.amount, net)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        account = view.account_for_wallet(data.wallet_id)
        if account is None:
            return fx.recorded("unmatched").note("warning", "deposits.unmatched", wallet_id=data.wallet_id,
                                                 amount=str(credit.received), reason="wallet not linked to an account")
        if credit.rounded:
            fx.note("info", "deposits.amount_rounded", received=str(credit.received), credited=str(credit.amount))
        if credit.below_minimum is not None:
            fx.note("info", "deposits.below_notification_minimum", product=event.product,
                    minimum=str(credit.below_minimum), amount=str(data.amount))
        fx.credit(account, credit.amount, memo=event.dedup_key)
        fx.note("info", "deposits.credited", wallet_id=data.wallet_id, account_id=account, amount=str(credit.amount))
        cards = [c for c in view.cards_for_account(account)
                 if (c.approval_method or "").upper().replace("TOPUP", TOP_UP) == TOP_UP]
        if cards:
            # The platform refuses a negative virtual balance (412): an overdrawn account shows zero.
            available = max(view.balance(account).available + credit.amount, ZERO)
            for card in cards:
                fx.send(override_virtual_balance(card.card_id, available))
            fx.note("info", "deposits.virtual_balance_queued", cards=[c.card_id for c in cards], account_id=account,
                    virtual_balance=str(available))
        return fx
