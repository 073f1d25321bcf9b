"""Field types shared by the event models: money as bounded Decimal, codes as strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

# Bounds on an amount's representation, not its business value: any real amount (fiat or an
# 18-decimal token) fits, and every later step (×100, int(), quantize, comparisons) stays cheap.
# Without them "1E+100000000" parses instantly and then costs tens of seconds in int(amount * 100).
MONEY_MAX_ADJUSTED_EXPONENT = 36  # |amount| < 10**37
MONEY_MIN_EXPONENT = -36  # at most 36 decimal places
MONEY_MAX_TEXT = 100  # characters of a numeric string, checked before Decimal sees it


def bounded_decimal(value: Decimal) -> Decimal:
    """`value` if it is a finite amount within the representation bounds; ValueError otherwise."""
    if not value.is_finite():
        raise ValueError("amount must be finite")
    if value.adjusted() > MONEY_MAX_ADJUSTED_EXPONENT or value.as_tuple().exponent < MONEY_MIN_EXPONENT:
        raise ValueError(f"amount out of bounds (|amount| < 1e{MONEY_MAX_ADJUSTED_EXPONENT + 1}, "
                         f"at most {-MONEY_MIN_EXPONENT} decimal places)")
    return value


def to_decimal(value: Any) -> Any:
    """JSON strings and numbers both become exact, bounded Decimals (floats through their shortest repr)."""
    kind = type(value)  # exact types first: what JSON gives, in the order bodies carry them
    if kind is str:
        return _from_text(value)
    if kind is float:
        return bounded_decimal(Decimal(repr(value)))
    if value is None:
        return value
    if isinstance(value, bool):
        raise ValueError("amount must be a number or numeric string, not a boolean")
    if isinstance(value, Decimal):
        return bounded_decimal(value)
    if isinstance(value, int):
        if value.bit_length() > 128:  # before Decimal(): a huge int costs its digits' worth of work
            raise ValueError("amount out of bounds")
        return bounded_decimal(Decimal(value))
    if isinstance(value, float):
        return bounded_decimal(Decimal(repr(value)))
    if isinstance(value, str):
        return _from_text(value)
    raise ValueError("amount must be a number or numeric string")


def _from_text(value: str) -> Decimal:
    text = value.strip()
    if len(text) > MONEY_MAX_TEXT:
        raise ValueError("amount out of bounds")
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a decimal amount") from None
    return bounded_decimal(result)


def to_code(value: Any) -> Any:
    """ISO numeric codes arrive as 840 or "840"; keep them as strings."""
    if isinstance(value, bool):
        raise ValueError("code must be a string or integer")
    if isinstance(value, int):
        return str(value)
    return value


Money = Annotated[Decimal, BeforeValidator(to_decimal), PlainSerializer(str, return_type=str, when_used="json")]
Code = Annotated[str, BeforeValidator(to_code)]
