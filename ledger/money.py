"""Money at the ledger boundary: Decimal in and out, integer cents in the database."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from hookstream.ledger.errors import InvalidAmount

CENT = Decimal("0.01")


def to_cents(amount: Decimal | str | int) -> int:
    """Exact integer cents of a non-negative amount with at most two decimal places.

    Floats are refused (money is never a float); amounts needing rounding are refused rather than
    silently rounded (the platform sends USD amounts with 2-digit precision).
    """
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, str, int)):
        raise InvalidAmount(f"amount must be a Decimal, str or int, not {type(amount).__name__}")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise InvalidAmount(f"not a decimal amount: '{amount}'") from None
    if not value.is_finite():
        raise InvalidAmount(f"not a finite amount: '{amount}'")
    if value < 0:
        raise InvalidAmount(f"amount must not be negative: '{amount}'")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise InvalidAmount(f"amount has more than two decimal places: '{amount}'")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    """Decimal with exactly two places, e.g. 1050 → Decimal('10.50')."""
    return Decimal(int(cents)).scaleb(-2)
