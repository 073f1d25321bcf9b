"""Field types shared by the event models: money as Decimal, codes as strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


def to_decimal(value: Any) -> Any:
    """JSON strings and numbers both become exact Decimals (floats through their shortest repr)."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("amount must be a number or numeric string, not a boolean")
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("not a decimal amount") from None
        if not result.is_finite():
            raise ValueError("amount must be finite")
        return result
    raise ValueError("amount must be a number or numeric string")


def to_code(value: Any) -> Any:
    """ISO numeric codes arrive as 840 or "840"; keep them as strings."""
    if isinstance(value, bool):
        raise ValueError("code must be a string or integer")
    if isinstance(value, int):
        return str(value)
    return value


Money = Annotated[Decimal, BeforeValidator(to_decimal), PlainSerializer(str, return_type=str, when_used="json")]
Code = Annotated[str, BeforeValidator(to_code)]
