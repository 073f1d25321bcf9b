"""Sender authentication: X-Webhook-Key in constant time, X-Request-Timestamp freshness."""

from __future__ import annotations

import hmac
import time

from pydantic import SecretStr

_MAX_TIMESTAMP_DIGITS = 20  # epoch milliseconds have 13 digits until the year 2286


class KeyRing:
    """The accepted webhook keys (several during a rotation), compared in constant time."""

    def __init__(self, keys: list[SecretStr]) -> None:
        self._keys = [k.get_secret_value().encode() for k in keys if k.get_secret_value()]
        if not self._keys:
            raise ValueError("no webhook key configured: set HOOKSTREAM_WEBHOOK_KEYS")

    def verify(self, presented: str | None) -> bool:
        if presented is None:
            return False
        candidate = presented.encode()
        ok = False
        for key in self._keys:  # no early exit: the time taken does not say which key matched
            ok |= hmac.compare_digest(candidate, key)
        return ok


def timestamp_fresh(header: str | None, window_s: float, now_s: float | None = None) -> bool:
    """True when X-Request-Timestamp (epoch ms) is absent, the check is off, or within the window."""
    if header is None or window_s <= 0:
        return True
    text = header.strip()
    if len(text) > _MAX_TIMESTAMP_DIGITS:  # not a time at all (and huge ints overflow the comparison)
        return False
    try:
        sent_ms = int(text)
    except ValueError:
        return False
    now_ms = (time.time() if now_s is None else now_s) * 1000
    return abs(now_ms - sent_ms) <= window_s * 1000
