"""A tiny processor for tests and docs: credits deposits, fails on request through the record's data.

Run it as `hookstream process processors.sample:SampleProcessor` with PYTHONPATH=tests.

`data.test` (an extra field the Deposit model keeps) picks a behaviour:
  "transient:N[:RETRY_AFTER]"  fail transiently on attempts 1..N (optionally asking for Retry-After)
  "permanent"                  fail permanently while the file $SAMPLE_BROKEN_FILE exists
  "stuck:RETRY_AFTER"          fail transiently (asking for Retry-After) while $SAMPLE_BROKEN_FILE exists
  "slow:S"                     take S seconds (a record in hand during shutdown)
`data.expires_at` (ISO 8601) declares a deadline.

Each attempt appends "operation_id attempt epoch_seconds pid" to $SAMPLE_ATTEMPTS_FILE when set.
The credit is written before any requested failure and its posting key is random, so only the
runtime (savepoint rollback of a failed attempt, inbox claim) keeps effects exactly once; the
posting memo is the event's dedup key.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime

from hookstream.processors import Context, Event, PermanentError, Processor, TransientError
from hookstream.schemas.routing import DEPOSITS


class SampleProcessor(Processor):
    name = "sample"
    topics = (DEPOSITS,)
    event_types = frozenset({"deposit"})

    def deadline(self, event: Event) -> datetime | None:
        raw = (event.data.model_extra or {}).get("expires_at")
        return datetime.fromisoformat(raw) if raw else None

    def handle(self, event: Event, ctx: Context) -> None:
        attempts_file = os.environ.get("SAMPLE_ATTEMPTS_FILE")
        if attempts_file:
            with open(attempts_file, "a") as out:
                out.write(f"{event.operation_id} {ctx.attempt} {time.time():.6f} {os.getpid()}\n")
        # The effect first, the failure after: a failed attempt's writes must vanish with it.
        account = event.data.wallet_id  # type: ignore[attr-defined]
        ctx.uow.ensure_account(account)
        ctx.uow.credit(account, event.data.amount, dedup_key=f"{event.dedup_key}#{uuid.uuid4().hex}",  # type: ignore[attr-defined]
                       memo=event.dedup_key)
        behaviour = str((event.data.model_extra or {}).get("test", ""))
        kind, _, arg = behaviour.partition(":")
        if kind == "transient":
            count, _, retry_after = arg.partition(":")
            if ctx.attempt <= int(count):
                raise TransientError("sample flaky dependency", float(retry_after) if retry_after else None)
        elif kind == "permanent":
            broken = os.environ.get("SAMPLE_BROKEN_FILE")
            if broken and os.path.exists(broken):
                raise PermanentError("sample refuses this event")
        elif kind == "stuck":
            broken = os.environ.get("SAMPLE_BROKEN_FILE")
            if broken and os.path.exists(broken):
                raise TransientError("sample dependency down", float(arg))
        elif kind == "slow":
            time.sleep(float(arg))
