"""The 3DS verdict: approve or decline a challenge from plain values (card, funds, merchant rules)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hookstream.rules import MerchantRules, rule_violation

USD = frozenset({"USD", "840"})  # the challenge's currency arrives alpha ("USD") or numeric ("840")


ThreeDSRules = MerchantRules  # the same merchant rules as the authorization policy (HOOKSTREAM_AUTHORIZATION_*)


@dataclass(frozen=True, slots=True)
class ThreeDSFacts:
    """What the ledger and the challenge say, as plain values."""

    card_linked: bool
    card_active: bool
    available: Decimal | None  # the card account's available balance (USD); None if not linked
    amount: Decimal | None  # the challenge's transaction_amount
    currency: str | None  # the challenge's transaction_currency
    merchant_country: str | None
    mcc: str | None = None  # not in the documented payload; used when the platform adds it


@dataclass(frozen=True, slots=True)
class Verdict:
    approve: bool
    reason: str
    amount_checked: bool


def decide(facts: ThreeDSFacts, rules: ThreeDSRules) -> Verdict:
    """Approve only a linked, active card within the merchant rules whose funds cover the amount.

    The funds check needs a USD amount: a challenge in another currency cannot be compared with
    the USD ledger, so it is approved on the other checks and the USD `bill_amount` is checked by
    the authorization that follows (the receiver's policy). `amount_checked` says which happened.
    """
    usd = facts.amount is not None and (facts.currency or "USD").upper() in USD
    if not facts.card_linked:
        return Verdict(False, "card_not_linked", False)
    if not facts.card_active:
        return Verdict(False, "card_inactive", False)
    broken = rule_violation(rules, facts.amount if usd else None, facts.mcc, facts.merchant_country)
    if broken is not None:
        return Verdict(False, broken, broken == "over_transaction_maximum")
    if usd and facts.amount is not None:
        if facts.available is None or facts.amount > facts.available:
            return Verdict(False, "insufficient_funds", True)
        return Verdict(True, "approved", True)
    return Verdict(True, "approved", False)
