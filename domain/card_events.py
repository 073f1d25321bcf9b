"""Card transaction follow-ups as pure rules (no I/O): the action each event calls for, and what it does to
the authorization's hold.

Holds are identified by (card_id, operation_id) and placed by the receiver under the authorization's
operation_id. A follow-up finds its hold by identity only (`identities`): its own operation_id (cleared,
declined, reversal reuse the authorization's id), then the documented alias of that id (`txn_X` →
`life_evt_X`, platform reference §1.5). Never by resemblance: another open hold of the same card and
amount is another purchase (releasing it would let the card spend money it already committed).
Without a match the event is recorded for an operator (`UnmatchedEvent`, inbox outcome "unmatched");
a settlement without a hold is still posted as a debit on the card's account (the money did leave), a
release without a hold posts nothing. A `declined` without an open hold is normal (the receiver
declined it itself, so no hold was placed, or released a late approval's hold): outcome
"nothing_held", not unmatched. A follow-up that finds no hold at all also closes the operation
(`Close`): an authorization decided after it (late, past the platform's deadline) is declined instead
of holding money forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from hookstream.domain.authorization import APPROVED
from hookstream.domain.effects import Effects, Settle, UnmatchedEvent

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


def identities(operation_id: str) -> tuple[str, ...]:
    """The operation ids a follow-up's hold may be under, in the order they are looked at."""
    return (operation_id, *operation_aliases(operation_id))


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold as the ledger has it (status "held", "captured" or "released")."""

    operation_id: str
    status: str
    account_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A card transaction event and what the ledger knows of it when it is decided.

    `hold`: for a settlement (capture/release), the first of `identities(operation_id)` with a held
    hold, else the own id's settled one, read under the card account's lock; for an authorization's
    record, the own id's hold. `card_account`: the card's linked account, when `hold` is not a held one
    (a settlement without a hold debits it, a refund credits it). `first_answer`: the response code the
    receiver recorded for this authorization's first delivery, when this record says decline.
    """

    event_type: str
    status: str | None
    operation_id: str
    card_id: str
    amount: Decimal | None
    hold: Hold | None = None
    card_account: str | None = None
    response_code: str | None = None
    decision_reason: str | None = None
    first_answer: str | None = None


def needs(event_type: str, status: str | None, response_code: str | None) -> tuple[bool, bool, bool]:
    """Which reads `follow_up` needs for this event: (the hold, the card's account, the first answer)."""
    action, documented = action_for(event_type, status)
    if not documented:
        return False, False, False
    if action == "record":
        asked = event_type == "authorization" and response_code is not None
        return asked, False, asked and response_code.upper() not in APPROVED
    if action in ("capture", "release"):
        return True, True, False
    return False, True, False


def follow_up(e: FollowUp) -> Effects:
    """What a card transaction event does to the books. ValueError: it cannot be settled (no amount)."""
    fx = Effects()
    action, documented = action_for(e.event_type, e.status)
    if not documented:
        return fx.recorded("recorded_unknown_status").note(
            "warning", "cards.status_not_settled", status=e.status, card_id=e.card_id,
            note="undocumented status for this event type: recorded, no money moved")
    if action == "record":
        return _record(e, fx)
    if action == "capture":
        return _capture(e, fx)
    if action == "release":
        return _release(e, fx)
    return _credit(e, fx, kind="refund" if action == "refund" else "credit")


def _record(e: FollowUp, fx: Effects) -> Effects:
    code = e.response_code
    if e.event_type != "authorization" or code is None:
        return fx
    if code.upper() not in APPROVED:
        # The platform was told "declined" (e.g. the fallback code after the budget ran out), so no hold
        # may stay, even one a late decision placed: the durable backstop of the receiver's in-memory
        # compensation. But a redelivery's record may say "05" while the first delivery was approved (its
        # record can reach Kafka later, and is then a duplicate here): the recorded first answer decides,
        # so an approved hold is never released this way.
        if e.first_answer is not None and e.first_answer.upper() in APPROVED:
            return fx.recorded("redelivery_decline_kept_hold").note(
                "warning", "cards.redelivery_decline_kept_hold", card_id=e.card_id, response_code=code,
                first_response_code=e.first_answer)
        if e.hold is not None and e.hold.status == "held":
            return (fx.settle(Settle("release", e.card_id, e.hold.operation_id, "released",
                                     key_suffix=":answered-decline", memo="authorization answered with a decline"))
                    .recorded("declined_hold_released")
                    .note("warning", "cards.declined_hold_released", card_id=e.card_id, response_code=code,
                          decision_reason=e.decision_reason, released=str(e.hold.amount)))
        return fx
    if e.hold is None:  # e.g. answered by a policy that holds nothing, or spooled and decided elsewhere
        fx.recorded("approved_without_hold").note("warning", "cards.approved_without_hold", card_id=e.card_id,
                                                  response_code=code, decision_reason=e.decision_reason)
    return fx


def _capture(e: FollowUp, fx: Effects) -> Effects:
    amount = _required_amount(e)
    hold = e.hold
    if hold is not None and hold.status == "held":
        return fx.settle(Settle("capture", e.card_id, hold.operation_id, "captured", amount)).note(
            "info", "cards.captured", card_id=e.card_id, account_id=hold.account_id, amount=str(amount),
            hold_amount=str(hold.amount), hold_operation_id=hold.operation_id)
    if hold is None:
        _close(e, fx)
    account = hold.account_id if hold is not None else e.card_account
    if account is None:
        return _unmatched(e, fx, "unknown_card", amount, posted=False)
    # The money left all the same: a debit on the card's account, kept for an operator to match.
    fx.settle(Settle("capture", e.card_id, hold.operation_id if hold is not None else e.operation_id, "unmatched",
                     amount))
    return _unmatched(e, fx, "unmatched", amount, posted=True, account_id=account)


def _release(e: FollowUp, fx: Effects) -> Effects:
    hold = e.hold
    if hold is not None and hold.status == "held":
        if e.amount is not None and e.amount != hold.amount:
            # A partial reversal still frees the whole hold: the ledger has no partial release.
            fx.note("warning", "cards.release_amount_differs", card_id=e.card_id, event_amount=str(e.amount),
                    released=str(hold.amount))
        return fx.settle(Settle("release", e.card_id, hold.operation_id, "released")).note(
            "info", "cards.released", card_id=e.card_id, account_id=hold.account_id, amount=str(hold.amount),
            hold_operation_id=hold.operation_id)
    if hold is None:
        _close(e, fx)
    if e.event_type == "declined" and (hold is None or hold.status == "released"):
        return fx.recorded("nothing_held").note("info", "cards.declined_nothing_held", card_id=e.card_id)
    return _unmatched(e, fx, "unmatched", e.amount, posted=False,
                      account_id=hold.account_id if hold is not None else e.card_account)


def _credit(e: FollowUp, fx: Effects, *, kind: str) -> Effects:
    amount = _required_amount(e)
    if e.card_account is None:
        return _unmatched(e, fx, "unknown_card", amount, posted=False)
    return fx.credit(e.card_account, amount, kind=kind).note(
        "info", "cards.credited", kind=kind, card_id=e.card_id, account_id=e.card_account, amount=str(amount))


def _close(e: FollowUp, fx: Effects) -> None:
    """No hold under the operation's identity: the platform closed it before any hold was placed (e.g. it
    declined at its deadline while the receiver's decision was still coming). Remember that, so a late
    approval never places a hold that nothing would release."""
    fx.close(e.card_id, identities(e.operation_id), e.event_type)
    fx.note("info", "cards.operation_closed", card_id=e.card_id, closed_operation_id=e.operation_id)


def _required_amount(e: FollowUp) -> Decimal:
    if e.amount is None:
        # Money cannot be settled without the amount: dead-letter for an operator to look at.
        raise ValueError(f"{e.event_type} without data.bill_amount")
    return e.amount


def _unmatched(e: FollowUp, fx: Effects, reason: str, amount: Decimal | None, *, posted: bool,
               account_id: str | None = None) -> Effects:
    """Record the event for an operator: table, metric, log line, inbox outcome."""
    hold_status = e.hold.status if e.hold is not None else None
    return fx.unmatched_event(UnmatchedEvent(e.event_type, e.operation_id, e.card_id, amount, reason, posted)).note(
        "warning", "cards.unmatched", card_id=e.card_id, reason=reason, posted=posted,
        amount=str(amount) if amount is not None else None, account_id=account_id, hold_status=hold_status)
