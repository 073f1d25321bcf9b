"""Merchant and amount rules shared by the authorization and 3DS policies: pure, plain values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hookstream.settings import Settings


@dataclass(frozen=True, slots=True)
class MerchantRules:
    mcc_deny: frozenset[str] = frozenset()
    country_allow: frozenset[str] = frozenset()  # empty: every country
    max_amount: Decimal | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MerchantRules:
        return cls(
            mcc_deny=frozenset(settings.authorization_mcc_deny),
            country_allow=frozenset(c.upper() for c in settings.authorization_country_allow),
            max_amount=settings.authorization_max_amount,
        )


def rule_violation(rules: MerchantRules, amount: Decimal | None, mcc: str | None,
                   country: str | None) -> str | None:
    """The name of the first rule the transaction breaks, or None.

    `amount` must be USD (or None to skip the maximum); countries are compared as the platform sends
    them ("USA" or "840"), so an allow list names both forms.
    """
    if mcc is not None and mcc in rules.mcc_deny:
        return "mcc_denied"
    if rules.country_allow and (country is None or country.upper() not in rules.country_allow):
        return "country_not_allowed"
    if rules.max_amount is not None and amount is not None and amount > rules.max_amount:
        return "over_transaction_maximum"
    return None
