"""The one logger setup: structlog JSON lines with secrets redacted at the logger."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

REDACTED = "[REDACTED]"

# Keys whose values are secret wherever they appear in an event dict (lower-cased, '-' → '_').
SENSITIVE_KEYS = frozenset(
    {
        "webhook_key", "x_webhook_key", "api_key", "x_api_key", "key", "keys", "password",
        "secret", "authorization", "code", "three_ds_code", "otp", "pan", "card_number",
        "cvv", "cvc", "pin", "idempotency_key_secret", "database_url",
    }
)

_secret_values: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret strings so that they are masked even inside free text."""
    for value in values:
        if value and len(value) >= 4:
            _secret_values.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secret_values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if _is_sensitive(k) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    return value


def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask sensitive keys and any registered secret value."""
    return {k: (REDACTED if _is_sensitive(k) else _scrub(v)) for k, v in event_dict.items()}


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Set up structlog (and stdlib logging, for libraries) once per process."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library loggers (kafka, uvicorn) go through stdlib logging; keep them quiet and on stderr.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream or sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A bound structlog logger."""
    return structlog.get_logger(name, **bound)
