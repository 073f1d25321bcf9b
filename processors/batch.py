"""The commit step's transaction: one ledger transaction shared by the records a lane handles together.

A handler's record (`Processor.handle`) has its claim and effects in its own savepoint, so a failing
handler undoes only its own writes. A deciding processor's record (`Processor.decide`) is claimed,
decided (pure), and its effects staged here; `commit()` applies every staged effect of the batch
set-based (`ledger.bulk`: one multi-row statement for the postings, one for the balances, one for the
outbox; hold settlements, closed operations and records for an operator, rarer, one event at a time in
decision order) and then commits, so the batch's claims and effects commit together or not at all. One commit
per batch instead of one per event (an fsync each on SQLite) is what makes thousands of events/s;
offsets are finished only after `commit()` returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from hookstream.domain.effects import POSTING_SIGNS, Effects
from hookstream.ledger import bulk
from hookstream.ledger.errors import LedgerTransientError
from hookstream.ledger.money import to_cents
from hookstream.ledger.outbox import enqueue
from hookstream.ledger.treasury import record_movement
from hookstream.ledger.unmatched import Unmatched, record_unmatched

Coords = tuple[str, int, int]  # topic, partition, offset: a record in the batch


class Staged(NamedTuple):
    """A decided event's effects, waiting for the batch's commit."""

    coords: Coords
    dedup_key: str
    effects: Effects
    postings: list[tuple[str, str, int, str, str | None]]  # account_id, kind, cents, dedup_key, memo
    outbox: list[dict[str, Any]]  # outbox rows, traceparent included
    claim: bool  # its inbox claim is still to be written (at commit, with the batch's others)


class ClaimedConcurrently(LedgerTransientError):
    """Another consumer claimed an event of this batch while it was being decided: the batch is retried."""


class HoldChanged(LedgerTransientError):
    """A hold settled differently from what its decision read (it changed in between): decided again."""


class BatchBroken(LedgerTransientError):
    """The batch's connection is gone: nothing in it can commit; its records are handled again."""


class Batch:
    """Opened on the first record that needs the ledger; `commit()` or `rollback()` ends it."""

    def __init__(self, ledger: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger = ledger
        self._clock = clock
        self._manager: Any = None
        self._uow: Any = None
        self.opened_at: float | None = None
        self.broken = False
        self.commands = 0  # outbox commands written: the dispatcher is woken after the commit
        self.staged: list[Staged] = []  # decided events' effects, applied set-based by commit()
        self.deltas: dict[str, int] = {}  # balance cents per account the staged postings will move
        self.flags: dict[str, tuple[bool | None, bool | None]] = {}  # card → (frozen, blocked) staged
        self.holds: dict[tuple[str, str], str] = {}  # (card, operation) → hold status the staged settlements leave
        self.view: Any = None  # the deciding processor's read-only ledger view for this batch
        self.changed: dict[Coords, str] = {}  # outcomes the commit found different (a posting already there)
        self.covered: set[str] = set()  # dedup keys whose inbox state `prefetch` read in this transaction
        self.claimed: set[str] = set()  # … of which the inbox holds these (and the batch's own claims)

    def age(self) -> float:
        return 0.0 if self.opened_at is None else self._clock() - self.opened_at

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """A unit of work for one record; its writes vanish if the block raises."""
        try:
            with self.unit().savepoint("hs_event") as uow:
                yield uow
        except LedgerTransientError as exc:
            if "savepoint lost" in str(exc):  # the connection is gone: the batch cannot commit
                self.broken = True
            raise

    def unit(self) -> Any:
        """The batch's unit of work, opened on first use."""
        if self.broken:
            raise BatchBroken("ledger connection lost inside the batch")
        if self._uow is None:
            manager = self._ledger.unit_of_work()
            self._uow = manager.__enter__()
            self._manager = manager
            self.opened_at = self._clock()
        return self._uow

    def reset(self) -> None:
        """Roll back and forget the transaction (nothing staged yet): the next use opens a fresh one."""
        manager, self._manager, self._uow = self._manager, None, None
        self.covered.clear()
        self.claimed.clear()
        if manager is not None:
            try:
                manager.__exit__(BatchBroken, BatchBroken("reset"), None)
            except Exception:  # noqa: BLE001, S110 — the connection is gone already; nothing to undo
                pass

    def prefetch(self, processor: str, keys: list[str]) -> None:
        """Read in one statement which of the batch's coming events are claimed already, so their claims can
        wait for the commit (one multi-row INSERT) instead of one statement per event."""
        fresh = [k for k in dict.fromkeys(keys) if k not in self.covered]
        if fresh:
            self.claimed |= bulk.claimed_among(self.unit(), processor, fresh)
            self.covered.update(fresh)

    def stage(self, staged: Staged) -> None:
        """Keep a decided event's effects for the commit; the view sees its balance moves from now on."""
        self.staged.append(staged)
        self.claimed.add(staged.dedup_key)
        for f in staged.effects.cards:
            frozen, blocked = self.flags.get(f.card_id, (None, None))
            self.flags[f.card_id] = (frozen if f.frozen is None else f.frozen,
                                     blocked if f.blocked is None else f.blocked)
        for account, kind, cents, _, _ in staged.postings:
            self.deltas[account] = self.deltas.get(account, 0) + POSTING_SIGNS[kind] * cents
        for settle in staged.effects.settlements:
            if settle.expect in ("captured", "released"):
                self.holds[(settle.card_id, settle.operation_id)] = settle.expect

    def unclaim(self, processor: str, dedup_key: str) -> None:
        """Take back a claim whose decision failed; the batch cannot commit if even that fails."""
        try:
            bulk.unclaim(self.unit(), processor, dedup_key)
        except Exception:
            self.broken = True
            raise

    def _apply_staged(self, uow: Any, processor: str) -> None:
        """Every staged effect in a few statements; an event whose posting was already there is a duplicate."""
        deferred = [(s.dedup_key, *s.coords, s.effects.outcome) for s in self.staged if s.claim]
        if len(bulk.claim_many(uow, processor, deferred)) != len(deferred):
            raise ClaimedConcurrently(f"{processor}: events of this batch were claimed by another consumer "
                                      "while it was decided (a rebalance); the batch is retried")
        inserted = bulk.post_many(uow, [p for s in self.staged for p in s.postings])
        deltas: dict[str, int] = {}
        held: dict[str, int] = {}
        settled = self._settle_at_once(uow, deltas, held)
        outcomes: list[tuple[str, str]] = []
        rows: list[dict[str, Any]] = []
        for s in self.staged:
            posted = [p for p in s.postings if (p[1], p[3]) in inserted]
            for account, kind, cents, _, _ in posted:
                deltas[account] = deltas.get(account, 0) + POSTING_SIGNS[kind] * cents
            fx = s.effects
            if len(posted) < len(s.postings) or (fx.settlements and s.coords not in settled and not _settle(uow, s)):
                # Posted before (another delivery or processor): no commands, nothing else of it.
                self.changed[s.coords] = "duplicate"
                outcomes.append((s.dedup_key, "duplicate"))
                continue
            if fx.cards or fx.closes or fx.unmatched is not None or fx.movements:
                _record(uow, processor, s)
            rows += s.outbox
            if fx.outcome != "ok" and not s.claim:  # a deferred claim was written with its outcome
                outcomes.append((s.dedup_key, fx.outcome))
        bulk.move_balances(uow, deltas, held)
        enqueue(uow, rows)
        bulk.set_outcomes(uow, processor, outcomes)
        self.commands += len(rows)

    def _settle_at_once(self, uow: Any, deltas: dict[str, int], held: dict[str, int]) -> set[Coords]:
        """The batch's captures and releases of held holds in a few statements (`bulk.settle_many`); the events
        settled so. A hold settled by more than one event of the batch, a capture without a held hold, or a set
        the ledger refuses as a whole (one hold changed, one posting there already) is settled one event at a
        time in decision order instead (`_settle`)."""
        settling = [s for s in self.staged if s.effects.settlements]
        if not settling:
            return set()
        seen: dict[tuple[str, str], int] = {}
        for s in settling:
            for st in s.effects.settlements:
                seen[(st.card_id, st.operation_id)] = seen.get((st.card_id, st.operation_id), 0) + 1
        eligible = [s for s in settling if all(st.expect != "unmatched" and seen[(st.card_id, st.operation_id)] == 1
                                               for st in s.effects.settlements)]
        items = [bulk.Settlement(st.card_id, st.operation_id, st.action,
                                 to_cents(st.amount) if st.amount is not None else None,
                                 s.dedup_key + st.key_suffix, st.memo or s.dedup_key)
                 for s in eligible for st in s.effects.settlements]
        if not items or not bulk.settle_many(uow, items, deltas, held):
            return set()
        return {s.coords for s in eligible}

    def commit(self, processor: str = "") -> None:
        """Commit (a no-op when nothing was opened). Raises, rolled back, when the commit fails."""
        manager, uow, self._manager, self._uow = self._manager, self._uow, None, None
        if manager is None:
            return
        try:
            if self.broken:
                raise BatchBroken("ledger connection lost inside the batch")
            if self.staged:
                self._apply_staged(uow, processor)
            manager.__exit__(None, None, None)
        except Exception as exc:
            try:
                manager.__exit__(type(exc), exc, exc.__traceback__)  # roll back whatever is left
            except Exception:  # noqa: BLE001, S110 — already failed; the rollback is best effort
                pass
            raise


def _settle(uow: Any, s: Staged) -> bool:
    """Capture or release the event's holds as decided; False when the ledger has them settled by this event
    already (a duplicate). HoldChanged when a hold is not where the decision read it."""
    for settle in s.effects.settlements:
        key, memo = s.dedup_key + settle.key_suffix, settle.memo or s.dedup_key
        if settle.action == "capture":
            result = uow.capture_hold(settle.card_id, settle.operation_id, settle.amount, key, memo=memo)
        else:
            result = uow.release_hold(settle.card_id, settle.operation_id, key, memo=memo)
        if result.reason == "duplicate":
            return False
        if result.reason != settle.expect:
            raise HoldChanged(f"hold of card {settle.card_id} operation {settle.operation_id}: decided on "
                              f"{settle.expect!r}, the ledger now says {result.reason!r}; decided again")
    return True


def _record(uow: Any, processor: str, s: Staged) -> None:
    """The rarer intents, one statement each, in decision order: card flags (velocity blocks), closed
    operations, events kept for an operator, treasury movements."""
    fx = s.effects
    for flags in fx.cards:
        uow.set_card_state(flags.card_id, frozen=flags.frozen, blocked=flags.blocked)
    for close in fx.closes:
        for operation in close.operation_ids:
            uow.close_operation(close.card_id, operation, close.event_type, s.dedup_key)
    if fx.unmatched is not None:
        u = fx.unmatched
        record_unmatched(uow, Unmatched(processor, s.dedup_key, u.event_type, u.operation_id, u.card_id, u.amount,
                                        u.reason, u.posted))
    for movement in fx.movements:
        record_movement(uow, s.dedup_key, movement)
