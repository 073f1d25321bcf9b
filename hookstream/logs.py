"""The one logger setup: structlog JSON lines with secrets redacted at the logger."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import structlog

REDACTED = "[REDACTED]"

# Keys whose values are secret wherever they appear in an event dict (lower-cased, '-' → '_').
# Not `code`: that name also means exit codes and error codes; 3DS codes are masked by value.
SENSITIVE_KEYS = frozenset(
    {
        "webhook_key", "x_webhook_key", "api_key", "x_api_key", "key", "keys", "password",
        "secret", "authorization", "three_ds_code", "otp", "pan", "card_number",
        "cvv", "cvc", "pin", "idempotency_key_secret", "database_url",
    }
)
MAX_CODES = 4096  # recent 3DS codes remembered for masking; a challenge expires in minutes

_secret_values: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None
_codes: OrderedDict[str, None] = OrderedDict()


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret strings so that they are masked even inside free text."""
    global _secret_pattern
    for value in values:
        if value and len(value) >= 4:
            _secret_values.add(value)
            _secret_values.add(json.dumps(value)[1:-1])  # as it appears inside a rendered JSON line
    if _secret_values:
        # longest first, so a secret that contains another is masked whole
        ordered = sorted(_secret_values, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def remember_code(value: str) -> None:
    """Mask this 3DS code wherever it appears as a value (any key, any depth) from now on."""
    if value:
        _codes[value] = None
        _codes.move_to_end(value)
        while len(_codes) > MAX_CODES:
            _codes.popitem(last=False)


@lru_cache(maxsize=1024)
def _is_sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def _mask_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if _is_sensitive(k) else _mask_keys(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_keys(v) for v in value)
    if isinstance(value, str) and value in _codes:
        return REDACTED
    return value


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask sensitive keys' values and remembered 3DS codes, at any depth (in place)."""
    codes = _codes
    for key, value in event_dict.items():
        if _is_sensitive(key):
            event_dict[key] = REDACTED
        elif type(value) is str:
            if value in codes:
                event_dict[key] = REDACTED
        elif isinstance(value, (dict, list, tuple, str)):  # a str subclass, or a container to look into
            event_dict[key] = _mask_keys(value)
    return event_dict


def mask_secrets(_logger: Any, _method: str, line: str) -> str:
    """structlog processor after rendering: mask registered secrets anywhere in the line.

    One regex pass over the finished line costs less than inspecting every value.
    """
    if _secret_pattern is not None and _secret_pattern.search(line):
        return _secret_pattern.sub(REDACTED, line)
    return line


# Set by hookstream.tracing while it exports spans: the current span's (trace_id, span_id), or None.
span_ids: Callable[[], tuple[str, str] | None] | None = None


def add_trace_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: `trace_id`/`span_id` of the current span; nothing at all while not tracing."""
    if span_ids is not None and "trace_id" not in event_dict:
        found = span_ids()
        if found is not None:
            event_dict["trace_id"], event_dict["span_id"] = found
    return event_dict


class _UtcStamp:
    """structlog processor: `timestamp`, ISO 8601 in UTC with microseconds ("2026-12-02T12:41:51.455947Z"), as
    structlog's TimeStamper(fmt="iso", utc=True) writes it (except that an exact second keeps its ".000000"), at
    a quarter of its cost: the date and time of day are formatted once per second (one line per processed event
    makes this a per-event cost)."""

    def __init__(self) -> None:
        self._cached = (-1, "")  # (second, its formatted prefix): replaced whole, so threads never see a mix

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        second, micro = divmod(round(time.time() * 1e6), 1_000_000)  # rounded as datetime.fromtimestamp does
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
        event_dict["timestamp"] = f"{cached[1]}{micro:06d}Z"
        return event_dict


LIBRARY_LOGGERS = ("kafka", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Set up structlog, and route stdlib logging (kafka-python, uvicorn, …) through the same
    renderer and redaction: one stream of lines in one format."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamp = _UtcStamp()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redact,
            renderer,
            mask_secrets,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # one write per line (print() writes the newline separately): workers sharing stderr never splice lines
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            stamp,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
            mask_secrets,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries log below WARNING at a volume only a debugging session wants.
    root.setLevel(max(numeric, logging.WARNING))
    # Whatever configured them before (uvicorn's default dictConfig gives its loggers their own handlers and
    # propagate=False), library loggers hand their lines to the one handler above.
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    # kafka-python warns on every failed reconnect; its errors are enough for the stream.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.captureWarnings(True)


# uvicorn's `log_config`: its loggers keep their levels but hand their lines to the root handler above.
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        name: {"handlers": [], "propagate": True}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    },
}


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A bound structlog logger."""
    return structlog.get_logger(name, **bound)
