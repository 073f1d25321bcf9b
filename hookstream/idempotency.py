"""Idempotency keys for outbound API calls, derived from an event's dedup key."""

from __future__ import annotations

import hashlib


def idempotency_key(processor: str, dedup_key: str, purpose: str = "") -> str:
    """A stable key per (processor, event, purpose): a redelivered event repeats the same call key.

    `purpose` distinguishes several mutating calls made for one event (e.g. "3ds-respond").
    """
    digest = hashlib.sha256(f"{processor}\x1f{dedup_key}\x1f{purpose}".encode()).hexdigest()
    return f"hs-{digest[:40]}"
