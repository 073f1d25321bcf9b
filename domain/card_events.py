"""The ledger action each card transaction event calls for: a table over (event_type, status), no I/O."""

from __future__ import annotations

from typing import Literal

Action = Literal["record", "capture", "release", "refund", "credit"]

ANY = "*"

# (event_type, status) → action; status ANY matches every status not listed for that event type.
# Statuses are lower-case (schemas normalise them); None (no status sent) matches like "success".
# Platform reference §2.0/§2.2: [NEW] names and the [OBS]/[OLD-T] CLEARING/<status> equivalents.
ACTIONS: dict[tuple[str, str], Action] = {
    # The receiver already decided and (on approval) placed the hold: nothing moves here.
    ("authorization", ANY): "record",
    ("authorized", ANY): "record",
    ("clearing", "pending"): "record",  # authorized, clearing not evaluated yet
    # Settled: the hold leaves `held`, the final (possibly different) amount leaves `balance`.
    ("cleared", "success"): "capture",
    ("clearing", "success"): "capture",
    # Never settles: the hold goes back to `available`. A decline is one whatever its status
    # ([NEW] example: "success"; [OBS]: "failed").
    ("declined", ANY): "release",
    ("reversal", "success"): "release",
    ("clearing", "failed"): "release",
    # Money coming in to the card's account.
    ("refund", "success"): "refund",
    ("visa_direct_deposit", "success"): "credit",
}

EVENT_TYPES: frozenset[str] = frozenset(event_type for event_type, _ in ACTIONS)


def action_for(event_type: str, status: str | None) -> tuple[Action, bool]:
    """The action for an event and whether the (event_type, status) pair is a documented one.

    An undocumented status of a known event (e.g. a "failed" refund, a "canceled" clearing) moves no
    money: it is recorded and reported, never guessed into a posting.
    """
    key_status = status or "success"
    action = ACTIONS.get((event_type, key_status)) or ACTIONS.get((event_type, ANY))
    if action is None:
        return "record", False
    return action, True


def operation_aliases(operation_id: str) -> list[str]:
    """Other operation ids the same card transaction is known by, most likely first.

    The platform examples name one transaction `life_evt_abc123` (authorization, declined) and
    `txn_abc123` (authorized) (platform reference §1.5); holds are placed under the authorization's id.
    """
    if operation_id.startswith("txn_") and len(operation_id) > len("txn_"):
        return ["life_evt_" + operation_id.removeprefix("txn_")]
    return []
