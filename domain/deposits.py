"""What a deposit credits: the net amount in whole cents, never more than arrived (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

CENT = Decimal("0.01")

# The platform notifies deposits only above these (platform reference §2.3); one below is still
# money that arrived, so it is credited all the same, and reported.
NOTIFICATION_MINIMUM: dict[str, Decimal] = {
    "cards": Decimal("10"), "virtual_wallets": Decimal("1"), "treasury": Decimal("1"),
}


@dataclass(frozen=True, slots=True)
class Credit:
    amount: Decimal  # what the ledger is credited: whole cents
    received: Decimal  # net_amount when given, else amount, as sent
    rounded: bool  # sub-cent digits were dropped (tokens carry up to 6 decimals)
    below_minimum: Decimal | None  # the product's notification minimum, when the deposit is below it


def credit_for(product: str, amount: Decimal, net_amount: Decimal | None) -> Credit:
    """Net of fees where given; cut down to cents (ROUND_DOWN) because the ledger holds cents and
    must never show more than the wallet received; a negative amount is refused (ValueError)."""
    received = net_amount if net_amount is not None else amount
    if received < 0:
        raise ValueError("a deposit amount cannot be negative")
    credited = received.quantize(CENT, rounding=ROUND_DOWN)
    minimum = NOTIFICATION_MINIMUM.get(product)
    below = minimum if minimum is not None and amount < minimum else None
    return Credit(credited, received, credited != received, below)
