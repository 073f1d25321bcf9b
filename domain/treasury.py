"""Treasury alerts: which reported movement statuses need a person (no I/O)."""

from __future__ import annotations

ALERT_STATUSES = frozenset({"failed", "manual_check"})  # lower case: schemas normalise statuses


def is_alert(status: str | None) -> bool:
    """FAILED and MANUAL_CHECK (any casing) transfers and withdrawals are alerts."""
    return status is not None and status.lower() in ALERT_STATUSES
