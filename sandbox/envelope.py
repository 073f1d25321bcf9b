"""Webhook bodies and headers as the platform sends them, in either envelope generation."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from hookstream.sandbox.config import SandboxConfig

# data fields holding money: sent as JSON strings ("42.50", [NEW]) or numbers (45.23, [OBS]).
MONEY_FIELDS = frozenset({"bill_amount", "transaction_amount", "exchange_rate", "atm_fees", "fx_fees",
                          "amount", "net_amount", "source_amount"})
# data fields carrying platform enum values that follow the casing setting.
ENUM_FIELDS = frozenset({"blockchain"})

# Generation A never documented per-event names; [OBS]/[OLD-T] traffic shows these equivalents
# of the [NEW] card events (cryptomate.md §2.0).
GEN_A_EQUIVALENT: dict[tuple[str, str], tuple[str, str]] = {
    ("authorized", "success"): ("clearing", "pending"),
    ("cleared", "success"): ("clearing", "success"),
    ("declined", "success"): ("declined", "failed"),
}


def build_envelope(config: SandboxConfig, product: str, event_type: str, status: str, operation_id: str,
                   data: dict[str, Any], **top_level: Any) -> dict[str, Any]:
    """The JSON body of one webhook. Names are given in [NEW] lower-case form and translated here."""
    if config.generation == "A":
        event_type, status = GEN_A_EQUIVALENT.get((event_type, status), (event_type, status))
    product, event_type, status = (_case(config, v) for v in (product, event_type, status))
    if config.generation == "A":
        body: dict[str, Any] = {"operation": product, "sub_operation": event_type}
    else:
        body = {"product": product, "event_type": event_type}
    body.update({"operation_id": operation_id, "status": status})
    body.update({k: v for k, v in top_level.items() if v is not None})
    body["data"] = render(config, data)
    return body


def headers_for(config: SandboxConfig, webhook_key: str | None) -> dict[str, str]:
    """X-Webhook-Key (verbatim shared secret), Content-Type and, in generation B, X-Request-Timestamp."""
    headers = {"Content-Type": "application/json"}
    if webhook_key:
        headers["X-Webhook-Key"] = webhook_key
    if config.generation == "B":
        headers["X-Request-Timestamp"] = str(int(time.time() * 1000))
    return headers


def render(config: SandboxConfig, value: Any, key: str | None = None) -> Any:
    """Decimals → string or number per config; enum fields cased; everything else JSON-ready."""
    if isinstance(value, dict):
        return {k: render(config, v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [render(config, v) for v in value]
    if isinstance(value, Decimal):
        if key in MONEY_FIELDS:
            if config.amounts == "number":
                return float(value)
            # Strings carry at least cents, as in the documented "42.50".
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int) and exponent > -2:
                value = value.quantize(Decimal("0.01"))
        return format(value, "f")
    if key in ENUM_FIELDS and isinstance(value, str):
        return _case(config, value)
    return value


def _case(config: SandboxConfig, value: str) -> str:
    return value.upper() if config.casing == "upper" else value.lower()
