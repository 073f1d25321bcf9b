"""What a decision asks the runtime to do: API commands to send after commit (values, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

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


@dataclass(slots=True)
class Effects:
    """What handling one event asks for besides its ledger writes: commands for the outbox."""

    commands: list[ApiCommand] = field(default_factory=list)
