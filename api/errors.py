"""CryptoMate API failures as typed exceptions: transient ones are worth retrying, permanent ones are not."""

from __future__ import annotations

import json
import re
from typing import Any

# The platform's 429 message carries the wait too: "Rate limit exceeded. Retry after 4 seconds".
_RETRY_AFTER_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?) second", re.IGNORECASE)


class ApiError(Exception):
    """A CryptoMate API call that did not succeed.

    `status` is the HTTP status (None when no response arrived), `code`/`message` come from the
    platform's `{code, message}` or `{error_code, message}` body, `endpoint` is the path template.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 endpoint: str | None = None, trace_id: str | None = None) -> None:
        super().__init__(f"{status or '-'} {code or '-'} {message} ({endpoint or '?'})")
        self.status = status
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.trace_id = trace_id


class TransientApiError(ApiError):
    """Worth retrying later: 5xx, 408, 409, 429, timeouts, connection errors, pending results."""

    retry_after: float | None = None


class PermanentApiError(ApiError):
    """Retrying cannot help: 400, 401, 404, 412 and any other 4xx."""


class RateLimitedError(TransientApiError):
    """429: the platform asks to wait `retry_after` seconds (its penalty doubles on each violation)."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(TransientApiError):
    """5xx from the platform."""


class ApiConnectionError(TransientApiError):
    """No response: connection refused/reset, DNS failure, or a timeout."""


class ApiTimeoutError(ApiConnectionError):
    """Connect, read, write or pool timeout."""


class ConflictError(TransientApiError):
    """408 or 409: the platform may accept the same (idempotent) request later."""


class PendingApiError(TransientApiError):
    """302 WARNING on an endpoint whose method has no pending result: the outcome is not known yet."""


class BadRequestError(PermanentApiError):
    """400 (APP_ERROR, BAD_REQUEST, VALIDATION_ERROR, VELOCITY_RULES_*)."""


class UnauthorizedError(PermanentApiError):
    """401: the key is unknown, or its access level is too low for this operation."""


class NotFoundError(PermanentApiError):
    """404 NOT_FOUND."""


class ValidationFailedError(PermanentApiError):
    """412 VAL: the platform's internal validation refused the request."""


def parse_error_body(content: bytes) -> tuple[str | None, str, str | None]:
    """(code, message, trace_id) from `{code, message}` or `{error_code, message}`; tolerant of junk."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        text = content[:200].decode("utf-8", "replace").strip() if content else ""
        return None, text or "no error body", None
    code = body.get("code") or body.get("error_code")
    message = body.get("message") or body.get("error") or ""
    trace = body.get("trace_id")
    return (str(code) if code is not None else None), str(message), (str(trace) if trace else None)


def parse_retry_after(header: str | None, message: str = "") -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds), else from the 429 message text."""
    if header:
        try:
            value = float(header.strip())
        except ValueError:
            value = None
        if value is not None and value >= 0:
            return value
    found = _RETRY_AFTER_TEXT.search(message or "")
    return float(found.group(1)) if found else None


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: UnauthorizedError,
    404: NotFoundError,
    408: ConflictError,
    409: ConflictError,
    412: ValidationFailedError,
}


def error_from_response(status: int, content: bytes, headers: Any, endpoint: str) -> ApiError:
    """The typed exception for a non-success response."""
    code, message, trace = parse_error_body(content)
    trace = trace or (headers.get("x-trace-id") if headers is not None else None)
    common: dict[str, Any] = {"status": status, "code": code, "endpoint": endpoint, "trace_id": trace}
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None, message)
        return RateLimitedError(message, retry_after=retry_after, **common)
    if status >= 500:
        return ServerError(message, **common)
    if status == 302:
        return PendingApiError(message, **common) if code == "WARNING" else PermanentApiError(message, **common)
    return _BY_STATUS.get(status, PermanentApiError)(message, **common)
