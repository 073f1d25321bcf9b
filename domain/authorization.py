"""The authorization decision as pure rules: which amounts may be decided, card checks, answer codes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

APPROVE = "00"
DO_NOT_HONOUR = "05"
INSUFFICIENT_FUNDS = "51"
APPROVED = frozenset({APPROVE, "SUCCESS"})  # platform: "00" or "SUCCESS" approve, anything else declines

# The largest bill a decision looks at: USD 1,000,000,000.00. Anything above is no card payment;
# bounding it here keeps absurd inputs (1e30, 1e999999) away from integer columns and big-number
# arithmetic, so one bad authorization cannot fail or stall the batch it shares with others.
MAX_BILL_CENTS = 100_000_000_000
_MAX_BILL = Decimal(MAX_BILL_CENTS).scaleb(-2)

# Reasons a decision can give, mapped to the code the platform is answered with.
_CODES = {"approved": APPROVE, "duplicate": APPROVE, "insufficient_funds": INSUFFICIENT_FUNDS}


@dataclass(frozen=True, slots=True)
class Card:
    """What the ledger knows of a card when it is authorized."""

    account_id: str
    frozen: bool
    blocked: bool


def bill_cents(amount: Decimal) -> int | None:
    """Exact integer cents of a bill the ledger may hold, or None (decline without touching the books).

    None for negative, non-finite, sub-cent or absurdly large amounts; the magnitude is checked
    before any arithmetic, so a huge exponent costs a comparison, not a giant integer.
    """
    if not amount.is_finite() or amount < 0 or amount > _MAX_BILL:
        return None
    cents = amount.scaleb(2)
    if cents != cents.to_integral_value():
        return None
    return int(cents)


def card_refusal(card: Card | None, account_hint: object) -> str | None:
    """Why the card cannot be authorized at all, or None. A card not linked yet may be linked to the
    account its authorization names (`metadata.account`)."""
    if card is None:
        return None if isinstance(account_hint, str) and account_hint else "card_not_linked"
    if card.frozen:
        return "card_frozen"
    if card.blocked:
        return "card_blocked"
    return None


def response_code(reason: str) -> str:
    """The code the platform is answered with for a decision's reason."""
    return _CODES.get(reason, DO_NOT_HONOUR)
