"""What a decision asks the runtime to do, as values (no I/O): ledger intents, API commands, log notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from hookstream.schemas.records import Movement  # a treasury movement row: the ledger keeps it, a decision asks for it

# The commands the dispatcher knows how to send, by CryptoMate client method.
COMMAND_KINDS = frozenset({"respond_3ds", "override_card_virtual_balance", "unblock_card"})
SECRET_ARGS = frozenset({"code"})  # never in a log line or a dead letter (the 3DS challenge code)


@dataclass(frozen=True, slots=True)
class ApiCommand:
    """One mutating CryptoMate call, carried out after the event's transaction commits.

    `purpose` names the call among the event's calls (it derives the Idempotency-Key, so a
    redelivered event repeats the same key); `order_key` keeps the commands of one target (a card)
    in the order they were decided; `deadline` (aware) is when sending it stops making sense.
    """

    kind: str
    args: dict[str, Any]
    purpose: str
    order_key: str | None = None
    deadline: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in COMMAND_KINDS:
            raise ValueError(f"unknown API command {self.kind!r}")

    def payload(self) -> dict[str, Any]:
        """The arguments as JSON values (amounts as decimal strings)."""
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in self.args.items()}


def respond_3ds(card_id: str, code: str, approve: bool, deadline: datetime | None) -> ApiCommand:
    return ApiCommand("respond_3ds", {"card_id": card_id, "code": code, "approve": approve}, "3ds-respond",
                      deadline=deadline)


def override_virtual_balance(card_id: str, virtual_balance: Decimal) -> ApiCommand:
    return ApiCommand("override_card_virtual_balance", {"card_id": card_id, "virtual_balance": virtual_balance},
                      f"virtual-balance:{card_id}", order_key=f"card:{card_id}")


def unblock_card(card_id: str) -> ApiCommand:
    return ApiCommand("unblock_card", {"card_id": card_id}, "unblock", order_key=f"card:{card_id}")


# Ledger intents a decision may ask for: a posting moves an account's balance, once per event and kind.
POSTING_SIGNS = {"credit": 1, "refund": 1, "debit": -1}
LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})


@dataclass(frozen=True, slots=True)
class Post:
    """A ledger intent: post `amount` (> 0, whole cents) of `kind` on `account_id`.

    "credit" and "refund" add to the balance, "debit" takes from it (it may go negative: a debit records
    what already happened). The runtime posts it under the event's dedup key, so a redelivery posts nothing.
    """

    account_id: str
    kind: str
    amount: Decimal
    memo: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in POSTING_SIGNS:
            raise ValueError(f"unknown posting kind {self.kind!r}: use one of {sorted(POSTING_SIGNS)}")


@dataclass(frozen=True, slots=True)
class CardFlags:
    """A ledger intent: set a linked card's `frozen`/`blocked` flags (None leaves one as it is)."""

    card_id: str
    frozen: bool | None = None
    blocked: bool | None = None


@dataclass(frozen=True, slots=True)
class Settle:
    """A ledger intent: capture (`amount` leaves the balance) or release the hold of (card_id, operation_id).

    The hold is the one the decision found by identity; `expect` is the ledger's result the decision
    counted on ("captured", "released", or "unmatched": a capture without a held hold is posted as a
    debit on the card's account). Applied in the batch's transaction, after the account lock the
    decision's read took; should the ledger answer otherwise the batch is decided again, never applied
    on a stale read. Posted under the event's dedup key plus `key_suffix`.
    """

    action: str  # "capture" | "release"
    card_id: str
    operation_id: str
    expect: str
    amount: Decimal | None = None
    key_suffix: str = ""
    memo: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ("capture", "release"):
            raise ValueError(f"a hold is captured or released, not {self.action!r}")
        if self.action == "capture" and self.amount is None:
            raise ValueError("a capture needs its amount")


@dataclass(frozen=True, slots=True)
class Close:
    """A ledger intent: the platform closed these operations of the card with no hold placed under them,
    so a late approval must never place one (`ledger.closed`)."""

    card_id: str
    operation_ids: tuple[str, ...]
    event_type: str


@dataclass(frozen=True, slots=True)
class UnmatchedEvent:
    """A ledger intent: keep the event for an operator (table `unmatched_events`); it matched nothing."""

    event_type: str
    operation_id: str
    card_id: str | None
    amount: Decimal | None
    reason: str
    posted: bool = False  # the money was posted all the same (a settlement without a hold: a debit)


@dataclass(frozen=True, slots=True)
class Note:
    """A log line the decision asks for (written by the runtime with the event's identity bound)."""

    level: str
    event: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Effects:
    """What deciding one event asks for, as values: ledger intents, API commands, its outcome, log notes.

    The runtime carries them out: the intents and the commands (into the outbox) in the batch's ledger
    transaction, together with the event's inbox claim, so they exist if and only if the claim commits.
    """

    postings: list[Post] = field(default_factory=list)
    cards: list[CardFlags] = field(default_factory=list)
    commands: list[ApiCommand] = field(default_factory=list)
    outcome: str = "ok"  # the inbox outcome: "ok", "unmatched", "recorded_not_success", …
    notes: list[Note] = field(default_factory=list)
    settlements: list[Settle] = field(default_factory=list)
    closes: list[Close] = field(default_factory=list)
    unmatched: UnmatchedEvent | None = None
    movements: list[Movement] = field(default_factory=list)

    def credit(self, account_id: str, amount: Decimal, *, kind: str = "credit", memo: str | None = None) -> Effects:
        self.postings.append(Post(account_id, kind, amount, memo))
        return self

    def debit(self, account_id: str, amount: Decimal, *, memo: str | None = None) -> Effects:
        self.postings.append(Post(account_id, "debit", amount, memo))
        return self

    def card_flags(self, card_id: str, *, frozen: bool | None = None, blocked: bool | None = None) -> Effects:
        """Set a linked card's flags (the receiver's ledger policy declines a frozen or blocked card)."""
        self.cards.append(CardFlags(card_id, frozen, blocked))
        return self

    def settle(self, settlement: Settle) -> Effects:
        """Capture or release a hold (see `Settle`), in decision order."""
        self.settlements.append(settlement)
        return self

    def close(self, card_id: str, operation_ids: tuple[str, ...], event_type: str) -> Effects:
        self.closes.append(Close(card_id, operation_ids, event_type))
        return self

    def unmatched_event(self, item: UnmatchedEvent) -> Effects:
        """Matched nothing: recorded for an operator, inbox outcome "unmatched" (counted by the runtime)."""
        self.unmatched = item
        self.outcome = "unmatched"
        return self

    def movement(self, movement: Movement) -> Effects:
        self.movements.append(movement)
        return self

    def send(self, command: ApiCommand) -> Effects:
        self.commands.append(command)
        return self

    def note(self, level: str, event: str, **fields: Any) -> Effects:
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        self.notes.append(Note(level, event, fields))
        return self

    def recorded(self, outcome: str) -> Effects:
        """Nothing to apply: the event is recorded in the inbox with this outcome."""
        self.outcome = outcome
        return self

    def check(self) -> None:
        """One posting per kind (the dedup key is the event's): a second one could never be posted. The same
        for settlements, which post under the event's key (plus their suffix) too."""
        kinds = [p.kind for p in self.postings]
        if len(kinds) != len(set(kinds)):
            raise ValueError(f"one posting per kind per event, got {kinds}")
        settled = [(s.action, s.key_suffix) for s in self.settlements]
        if len(settled) != len(set(settled)):
            raise ValueError(f"one settlement per action per event, got {settled}")
