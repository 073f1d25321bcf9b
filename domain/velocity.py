"""Velocity blocks: what a `card_blocked_by_velocity` event asks for (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hookstream.domain.effects import ApiCommand, unblock_card


@dataclass(frozen=True, slots=True)
class BlockDecision:
    """The card's state to record (`blocked`), the commands to send, the inbox outcome."""

    blocked: bool
    outcome: str
    commands: list[ApiCommand] = field(default_factory=list)


def on_velocity_block(card_id: str, linked: bool, auto_unblock: bool) -> BlockDecision:
    """A velocity block is recorded (the receiver then declines the card); with auto-unblock on, the
    card is unblocked at once on the platform (which also resets its velocity counter) and in the books.
    A card linked to no account is still unblocked on the platform: the block is there, not in our books.
    """
    if not auto_unblock:
        return BlockDecision(True, "blocked" if linked else "unmatched")
    return BlockDecision(False, "unblocked" if linked else "unmatched_unblocked", [unblock_card(card_id)])
