"""The claim + apply step: an event's inbox claim, its handler's effects and its outbox commands, in one savepoint."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from hookstream import tracing
from hookstream.idempotency import idempotency_key
from hookstream.ledger.outbox import enqueue
from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.batch import Batch
from hookstream.settings import Settings


class Applier:
    """Runs `processor.handle` for an event inside the batch, after claiming its dedup key."""

    def __init__(self, processor: Processor, settings: Settings, *, can_send: bool) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.can_send = can_send  # a dispatcher runs: API commands have somewhere to go
        self.traced = tracing.tracer("hookstream.processor") is not None

    def past_deadline(self, event: Event) -> bool:
        deadline = self.processor.deadline(event)
        return deadline is not None and datetime.now(UTC) >= deadline

    def apply(self, batch: Batch, event: Event, log: Any, attempt: int) -> str:
        """The claim and the effect together; "duplicate" when the inbox already holds the event."""
        with batch.savepoint() as uow:
            claimed = uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                                outcome="ok")
            span = tracing.current_span() if self.traced else None
            if span is not None:
                span.add_event("claimed" if claimed else "duplicate", {"hookstream.dedup_key": event.dedup_key})
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

    def claim_expired(self, batch: Batch, event: Event) -> str:
        """Record a deadline-bound event that came too late: claimed as expired, never handled."""
        with batch.savepoint() as uow:
            if not uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                             outcome="expired"):
                return "duplicate"
        return "expired"

    def to_outbox(self, uow: Any, event: Event, ctx: Context) -> int:
        """The outbox step: the event's API commands in its savepoint, so they exist iff its effects commit."""
        if not self.can_send:
            raise RuntimeError("this runtime has no API client factory: it cannot send API commands")
        now = time.time()
        traceparent = tracing.current_traceparent()  # the dispatcher's API call continues this trace
        enqueue(uow, [{
            "processor": self.name, "idempotency_key": idempotency_key(self.name, event.dedup_key, c.purpose),
            "kind": c.kind, "payload": json.dumps(c.payload()), "order_key": c.order_key,
            "deadline": c.deadline.timestamp() if c.deadline is not None else None, "due_at": now,
            "origin_topic": event.topic, "origin_partition": event.partition, "origin_offset": event.offset,
            "dedup_key": event.dedup_key, "traceparent": traceparent,
        } for c in ctx.commands])
        return len(ctx.commands)
