"""Plain values the ledger returns: balances, operation results, postings, card states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

HoldReason = Literal["ok", "insufficient_funds", "duplicate", "unknown_account"]
SettlementReason = Literal["captured", "released", "unmatched", "duplicate", "unknown_card"]
PostingReason = Literal["ok", "duplicate"]


@dataclass(frozen=True, slots=True)
class Balance:
    """balance = credits + refunds - captures - debits; held = active holds; available = balance - held."""

    balance: Decimal
    held: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True)
class HoldResult:
    """Outcome of `place_hold`.

    `placed` is True when the operation has a hold (approve). On reason "duplicate" it repeats the
    earlier decision for the same operation or dedup key; nothing new is written.
    """

    placed: bool
    reason: HoldReason
    hold_id: int | None = None
    account_id: str | None = None
    available: Decimal | None = None  # after this call; None when the account is unknown

    @property
    def duplicate(self) -> bool:
        return self.reason == "duplicate"


@dataclass(frozen=True, slots=True)
class SettlementResult:
    """Outcome of `capture_hold` / `release_hold`.

    reason: "captured"/"released" (matched a held hold), "unmatched" (no active hold: a capture is
    still posted as a debit, a release posts nothing), "duplicate" (this dedup key was already
    applied), "unknown_card" (no hold and the card is not linked: nothing posted).
    `applied` is True when this call wrote a posting.
    """

    applied: bool
    reason: SettlementReason
    account_id: str | None = None
    amount: Decimal | None = None  # what this call posted (capture/debit/release amount)
    hold_amount: Decimal | None = None  # the matched hold's amount, when there was one
    hold_status: str | None = None  # the hold's status before this call, when there was one


@dataclass(frozen=True, slots=True)
class PostingResult:
    """Outcome of `credit` / `debit`: `posted` is False when the dedup key was already posted."""

    posted: bool
    reason: PostingReason
    account_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an account statement. `amount` is positive; `kind` says its direction."""

    id: int
    account_id: str
    kind: str
    amount: Decimal
    dedup_key: str
    memo: str | None
    hold_id: int | None
    created_at: datetime

    @property
    def balance_effect(self) -> Decimal:
        """What this posting did to `balance` (holds and releases only move `held`)."""
        if self.kind in ("credit", "refund"):
            return self.amount
        if self.kind in ("capture", "debit"):
            return -self.amount
        return Decimal("0.00")


@dataclass(frozen=True, slots=True)
class CardState:
    """A linked card: its account and whether the authorization policy may use it."""

    card_id: str
    account_id: str
    approval_method: str | None
    frozen: bool
    blocked: bool

    @property
    def active(self) -> bool:
        return not (self.frozen or self.blocked)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A claimed event."""

    processor: str
    dedup_key: str
    topic: str | None
    partition: int | None
    offset: int | None
    outcome: str | None
    processed_at: datetime
