"""Both CryptoMate envelope generations, normalised into one Envelope."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator


# Enum-like envelope fields: the longest documented value is 30 characters.
MAX_NAME_CHARS = 128
_SEPARATORS = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=1024)  # a handful of spellings in practice; inputs are ≤ MAX_NAME_CHARS
def canonical_name(value: str) -> str:
    """The one spelling of a product/event type/status: lower case, separators folded to "_".

    "NOTIFICATION_3DS_AUTHORIZATION", "notification-3ds-authorization" and "Notification 3DS
    Authorization" are one event type, so they route (and are redacted) alike.
    """
    return _SEPARATORS.sub("_", value.lower()).strip("_")


class EnvelopeError(ValueError):
    """The body is not a CryptoMate envelope. `errors` lists what is wrong (no input values)."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Envelope(BaseModel):
    """A webhook envelope of either generation, with enum values lower-cased.

    Generation A: `operation` / `sub_operation`; generation B: `product` / `event_type`.
    The platform adds fields over time, so unknown ones are kept, never refused.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    generation: Literal["A", "B"]
    product: str
    event_type: str
    operation_id: str
    status: str | None = None
    reason: str | None = None
    company_id: str | None = None
    client_id: str | None = None
    data: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _generations(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError("envelope must be a JSON object")
        body = dict(raw)
        if "product" in body or "event_type" in body:
            body["generation"] = "B"
        elif "operation" in body or "sub_operation" in body:
            body["generation"] = "A"
            body["product"] = body.pop("operation", None)
            body["event_type"] = body.pop("sub_operation", None)
        else:
            raise ValueError("neither product/event_type nor operation/sub_operation present")
        if body.get("data") is None:
            body["data"] = {}
        return body

    @field_validator("product", "event_type", "status", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # The platform has sent both "CARDS"/"AUTHORIZATION" and "cards"/"authorization".
        if isinstance(value, str):
            if len(value) > MAX_NAME_CHARS:
                raise ValueError(f"longer than {MAX_NAME_CHARS} characters")
            value = canonical_name(value)
            if not value:
                raise ValueError("must not be empty")
        return value

    @field_validator("operation_id", mode="before")
    @classmethod
    def _operation_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value


def safe_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Validation errors without the offending input (it may carry secrets such as 3DS codes)."""
    return [
        {"loc": ".".join(str(p) for p in err["loc"]), "type": err["type"], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def parse_envelope(body: bytes | str | dict[str, Any]) -> Envelope:
    """Parse and normalise a webhook body; raise EnvelopeError on anything else."""
    try:
        if isinstance(body, dict):
            return Envelope.model_validate(body)
        return Envelope.model_validate_json(body)
    except ValidationError as exc:
        errors = safe_errors(exc)
        kinds = {e["type"] for e in errors}
        message = "body is not JSON" if "json_invalid" in kinds else "invalid envelope"
        raise EnvelopeError(message, errors) from None
