"""The one error-classification function: is a handler failure worth retrying, and after how long."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["transient", "permanent"]

MESSAGE_LIMIT = 500  # characters of an error message kept in logs and dead-letter headers

# HTTP statuses that are worth retrying: timeout, conflict (a concurrent request with the same
# Idempotency-Key is still in flight), rate limited; every 5xx too.
RETRYABLE_4XX = frozenset({408, 409, 429})


class TransientError(Exception):
    """Raised by a handler to ask for a retry; `retry_after` (seconds) sets the earliest retry."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the record goes to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified handler failure."""

    kind: Kind
    error_type: str  # exception class name: bounded, safe as a metric label
    message: str
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


def _optional(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of a module that may not be installed or written yet."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return ()
    return tuple(c for n in names if isinstance(c := getattr(mod, n, None), type))


def _status_kind(status: int) -> Kind:
    return "transient" if status >= 500 or status in RETRYABLE_4XX else "permanent"


def _retry_after(exc: BaseException) -> float | None:
    value: Any = getattr(exc, "retry_after", None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _kind(exc: BaseException) -> Kind:
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, PermanentError):
        return "permanent"

    api_transient = _optional("hookstream.api.errors", "TransientApiError")
    api_permanent = _optional("hookstream.api.errors", "PermanentApiError")
    if api_transient and isinstance(exc, api_transient):
        return "transient"
    if api_permanent and isinstance(exc, api_permanent):
        return "permanent"

    ledger_transient = _optional("hookstream.ledger.errors", "LedgerTransientError")
    if ledger_transient and isinstance(exc, ledger_transient):
        return "transient"
    try:
        from hookstream.ledger.errors import is_transient_db_error
    except ImportError:
        pass
    else:
        if is_transient_db_error(exc):
            return "transient"

    # Anything speaking HTTP (hookstream.api errors, httpx.HTTPStatusError) is judged by its status.
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return _status_kind(status)

    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    if isinstance(exc, _optional("httpx", "TransportError")):  # connect/read timeouts, resets
        return "transient"
    if isinstance(exc, _optional("kafka.errors", "KafkaTimeoutError", "NoBrokersAvailable")):
        return "transient"
    # Validation (ValueError, pydantic, EnvelopeError) and everything else: a code or data problem
    # that the same input will hit again, so retrying only delays the dead letter.
    return "permanent"


def classify_error(exc: BaseException) -> Failure:
    """Transient (retry with backoff, honouring Retry-After) or permanent (dead-letter now)."""
    kind = _kind(exc)
    message = str(exc) or type(exc).__name__
    return Failure(
        kind=kind,
        error_type=type(exc).__name__,
        message=message[:MESSAGE_LIMIT],
        retry_after=_retry_after(exc) if kind == "transient" else None,
    )
