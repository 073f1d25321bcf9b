"""The claim + apply step: an event's inbox claim, then its effects and outbox commands.

Two ways, by what the processor implements:
- `decide(event, view) -> Effects` (pure): claimed, decided, and its effects staged in the batch, which
  applies every staged effect set-based at commit (`batch.py`, `ledger/bulk.py`). A decision that raises
  has its claim taken back; nothing else was written.
- `handle(event, ctx)` (imperative): claimed and handled in one savepoint, its writes through `ctx.uow`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from hookstream import metrics, tracing
from hookstream.domain.effects import ApiCommand, Effects
from hookstream.idempotency import idempotency_key
from hookstream.ledger.errors import UnknownAccount, is_database_error
from hookstream.ledger.money import to_cents
from hookstream.ledger.outbox import enqueue
from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.batch import Batch, Staged
from hookstream.processors.view import LedgerView
from hookstream.schemas import headers as h
from hookstream.settings import Settings


class Applier:
    """Runs `processor.handle` for an event inside the batch, after claiming its dedup key."""

    def __init__(self, processor: Processor, settings: Settings, *, can_send: bool) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.can_send = can_send  # a dispatcher runs: API commands have somewhere to go
        self.traced = tracing.tracer("hookstream.processor") is not None
        self.decides = getattr(type(processor), "decide", Processor.decide) is not Processor.decide
        self.preloads = getattr(type(processor), "preload", Processor.preload) is not Processor.preload
        self.known_accounts: set[str] = set()  # shared by every lane's view: accounts are never deleted

    def past_deadline(self, event: Event) -> bool:
        deadline = self.processor.deadline(event)
        return deadline is not None and datetime.now(UTC) >= deadline

    def apply(self, batch: Batch, event: Event, log: Any, attempt: int) -> str:
        """The claim and the effect together; "duplicate" when the inbox already holds the event."""
        if self.decides:
            return self.decide(batch, event, log)
        with batch.savepoint() as uow:
            claimed = uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                                outcome="ok")
            span = self._claim_span(event, claimed)
            if not claimed:
                return "duplicate"
            ctx = Context(processor=self.name, event=event, uow=uow, log=log, settings=self.settings,
                          attempt=attempt)
            self.processor.handle(event, ctx)
            if ctx.commands:
                batch.commands += self.to_outbox(uow, event, ctx)
            if span is not None:
                span.add_event("applied", {"hookstream.commands": len(ctx.commands)})
        return "ok"

    def _claim_span(self, event: Event, claimed: bool) -> Any:
        """The current span while tracing (None otherwise), told whether the claim was new."""
        span = tracing.current_span() if self.traced else None
        if span is not None:
            span.add_event("claimed" if claimed else "duplicate", {"hookstream.dedup_key": event.dedup_key})
        return span

    def decide(self, batch: Batch, event: Event, log: Any) -> str:
        """Claim, decide (pure), stage the effects in the batch: they are applied when it commits."""
        deferred = event.dedup_key in batch.covered  # its inbox state was read with the batch's (prefetch)
        if deferred:
            claimed = event.dedup_key not in batch.claimed  # claimed at commit, with the batch's others
        else:
            claimed = batch.unit().claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                                         outcome="ok")
        span = self._claim_span(event, claimed)
        if not claimed:
            return "duplicate"
        view = self._view(batch)
        try:
            effects = self.processor.decide(event, view)
            staged = self._staged(view, event, effects, claim=deferred)
        except BaseException as exc:
            if is_database_error(exc):
                # A read of the view failed: on Postgres the transaction is aborted, and a lost connection
                # is gone on either ledger. The batch cannot commit; its records are retried.
                batch.broken = True
            elif not deferred:
                batch.unclaim(self.name, event.dedup_key)
            raise
        batch.stage(staged)
        if effects.outcome == "unmatched" or effects.outcome.startswith("unmatched_"):
            metrics.ledger_unmatched.labels(event.event_type).inc()
        for movement in effects.movements:
            if movement.alert and movement.status is not None:
                metrics.treasury_alerts.labels(movement.event_type, movement.status).inc()
        for note in effects.notes:
            getattr(log, note.level)(note.event, **note.fields)
        if span is not None:
            span.add_event("decided", {"hookstream.postings": len(effects.postings),
                                       "hookstream.commands": len(effects.commands)})
        return "ok"

    def _view(self, batch: Batch) -> LedgerView:
        if batch.view is None:
            batch.view = LedgerView(batch, self.known_accounts)
        return batch.view

    def prefetch(self, batch: Batch, records: list[Any]) -> None:
        """Before a deciding batch: read the inbox state of its coming records at once (by the dedup key the
        receiver put in their headers; a record without one is claimed on its own when decided), and let the
        processor read ahead what its decisions will ask the view (`Processor.preload`)."""
        keyed = [(r, v.decode("utf-8", "replace")) for r in records for k, v in (r.headers or [])
                 if k == h.DEDUP_KEY and v is not None]
        if keyed:
            batch.prefetch(self.name, [key for _, key in keyed])
            if self.preloads:
                self.processor.preload(self._view(batch), keyed)

    def _staged(self, view: LedgerView, event: Event, effects: Effects, *, claim: bool) -> Staged:
        """The effects checked (amounts in cents, accounts that exist) and laid out for the batch."""
        if not isinstance(effects, Effects):
            raise TypeError(f"{self.name}.decide returned {type(effects).__name__}, not Effects")
        effects.check()
        postings = []
        for post in effects.postings:
            cents = to_cents(post.amount)  # InvalidAmount for a non-cent or negative amount: permanent
            if not view.account_exists(post.account_id):
                raise UnknownAccount(post.account_id)
            postings.append((post.account_id, post.kind, cents, event.dedup_key, post.memo or event.dedup_key))
        outbox = self.outbox_rows(event, effects.commands) if effects.commands else []
        return Staged((event.topic, event.partition, event.offset), event.dedup_key, effects, postings, outbox,
                      claim)

    def claim_expired(self, batch: Batch, event: Event) -> str:
        """Record a deadline-bound event that came too late: claimed as expired, never handled."""
        with batch.savepoint() as uow:
            claimed = uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                                outcome="expired")
        batch.claimed.add(event.dedup_key)  # a redelivery later in the batch is a duplicate
        return "expired" if claimed else "duplicate"

    def to_outbox(self, uow: Any, event: Event, ctx: Context) -> int:
        """The outbox step: the event's API commands in its savepoint, so they exist iff its effects commit."""
        enqueue(uow, self.outbox_rows(event, ctx.commands))
        return len(ctx.commands)

    def outbox_rows(self, event: Event, commands: list[ApiCommand]) -> list[dict[str, Any]]:
        """The event's API commands as outbox rows (Idempotency-Key from the event and the command's purpose)."""
        if not self.can_send:
            raise RuntimeError("this runtime has no API client factory: it cannot send API commands")
        now = time.time()
        traceparent = tracing.current_traceparent()  # the dispatcher's API call continues this trace
        return [{
            "processor": self.name, "idempotency_key": idempotency_key(self.name, event.dedup_key, c.purpose),
            "kind": c.kind, "payload": json.dumps(c.payload()), "order_key": c.order_key,
            "deadline": c.deadline.timestamp() if c.deadline is not None else None, "due_at": now,
            "origin_topic": event.topic, "origin_partition": event.partition, "origin_offset": event.offset,
            "dedup_key": event.dedup_key, "traceparent": traceparent,
        } for c in commands]
