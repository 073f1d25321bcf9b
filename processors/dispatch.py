"""The outbox dispatcher: sends committed API commands with their keys, bounded, paced, retried once over.

It runs beside the poll loop in the processor's process: a round thread (woken after each commit that
wrote commands) that talks to the ledger, and one sender thread whose asyncio loop has every claimed
request in flight (`hookstream.api.aio`, at most HOOKSTREAM_DISPATCH_CONCURRENCY on the wire) — not a
thread per request, each queueing for the GIL behind the processor after every socket call. A 3DS answer
leaves within milliseconds of its decision's commit, no extra deployment is needed, and any process of the
same processor picks up what another left behind (claims are leases in the ledger). No ledger transaction
is open while a request is on the wire, and the sender thread never touches the ledger or the broker: it
hands each outcome (sent, failed, given back) to the round thread.

One retry policy: failures are classified by `errors.classify_error` and timed by `retry.next_retry`
(the client makes one attempt). Transient failures are retried until the command's deadline, or for
HOOKSTREAM_DISPATCH_RETRY_BUDGET_S after the first failure when it has none (never a count of attempts:
a long API outage delays commands, it does not dead-letter them). Permanent failures and commands past
the budget are dead-lettered with their origin; commands whose deadline passed are expired and counted,
never sent late. Requests of every dispatcher sharing an API key are spaced through one ledger row.

A round is one transaction (`Outbox.exchange`): record the outcomes finished since the last round, then claim
the next commands with their send times on that shared schedule — up to CLAIM_WINDOW per sender, so a commit
(an fsync) is not paid per request. A claimed command that reaches a sender too late for its send time goes
back unsent (`late_bound_s`), so a slow platform never makes the next requests bunch over its limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from hookstream import metrics, tracing
from hookstream.api.client import command_request
from hookstream.ledger.outbox import RELEASED, Outbox, OutboxCommand
from hookstream.logs import get_logger
from hookstream.processors.errors import Failure, classify_error
from hookstream.processors.retry import Backoff, next_retry
from hookstream.settings import Settings

IDLE_S = 0.25  # longest wait between looks at the outbox (retries due, leases run out elsewhere)
CLAIM_WINDOW = 4  # commands claimed per sender: a round's commit (an fsync) is slower than a request
ROUND_GAP_S = 0.002  # pause after a busy round: what finishes meanwhile is settled and refilled together
RATE_MARGIN = 0.1  # stay this far under the platform's limit (network jitter bunches arrivals)
PURGE_EVERY_S = 300.0  # how often settled commands past their retention are deleted
PURGE_BATCH = 1000  # rows per delete: short transactions, never a long lock on the outbox
SETTLE_ATTEMPTS = 5  # tries to record a command's outcome before leaving it to its lease


def late_bound_s(limit_per_s: float) -> float:
    """How late after its send time a command may still be sent: a claimed command that reaches a sender later
    goes back unsent. Send times are 1 / (limit / (1 + RATE_MARGIN)) apart; sent up to L late, a 1-second window
    holds at most (1 + L) × limit / (1 + RATE_MARGIN) + 1 requests (the +1: both ends of the window), which
    stays within the limit for L ≤ (1 + RATE_MARGIN) × (limit − 1) / limit − 1 (15/s: 26 ms). At least 5 ms:
    a sender's wake-up is not exact."""
    return max(0.005, (1 + RATE_MARGIN) * (limit_per_s - 1) / limit_per_s - 1)


def rate_key(settings: Settings) -> str:
    """The identity the platform counts requests by (the API key), as a digest: never the key itself."""
    raw = f"{settings.api_base_url}\x1f{settings.api_key.get_secret_value()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (it comes with uvicorn[standard]), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover — uvloop is a dependency on every platform we ship
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Finished(NamedTuple):
    """A request's outcome, waiting for the loop's next round to be recorded."""

    command: OutboxCommand
    status: str  # "sent", "expired", FAILED (the round thread decides: retry, expire, dead-letter) or RELEASED
    error: str | None = None
    span: dict[str, str] = {}  # trace_id/span_id of the dispatch span, for its log lines (never mutated)
    failure: Failure | None = None  # FAILED: the classified error


FAILED = "failed"


class Dispatcher:
    """Sends one processor's outbox commands until `stop()`."""

    def __init__(self, processor: str, settings: Settings, ledger: Any, client_factory: Callable[[], Any],
                 dead_letters: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.processor = processor
        self.settings = settings
        self.outbox = Outbox(ledger)
        self.concurrency = settings.dispatch_concurrency
        self.lease_s = settings.dispatch_lease_s
        self.rate = settings.api_rate_limit_per_s / (1 + RATE_MARGIN)
        self.late_s = late_bound_s(settings.api_rate_limit_per_s)
        self.rate_key = rate_key(settings)
        # No attempt count: a command is retried until its deadline, or for the retry budget when it has
        # none — an API outage of minutes must not dead-letter a virtual-balance override or an unblock.
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s, max_attempts=sys.maxsize)
        self.retry_budget_s = settings.dispatch_retry_budget_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.log = get_logger("hookstream.dispatch", processor=processor)
        self._client_factory = client_factory
        self._client: Any = None
        self._dead_letters = dead_letters
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # Claimed and not yet finished: up to CLAIM_WINDOW × the requests in flight, so that one round (one
        # transaction, one commit) claims enough to keep every sender busy until the next round.
        self.window = self.concurrency * CLAIM_WINDOW
        self._slots = threading.Semaphore(self.window)
        # (command, "sent" | "expired", why) from the senders, settled by the loop a round at a time.
        self._finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._unsettled: list[_Finished] = []
        # The sender's loop (its own thread): claimed commands wait there for their send time, then for one
        # of `concurrency` places on the wire; those still waiting on stop are given back at once.
        self._loop = new_event_loop()
        self._sender = threading.Thread(target=self._loop.run_forever, name=f"dispatch-send-{processor}",
                                        daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[int, asyncio.Task[None]] = {}  # not on the wire yet (cancelled → given back)
        self._wire: asyncio.Semaphore | None = None  # made on the loop
        self._thread = threading.Thread(target=self._run, name=f"dispatch-{processor}", daemon=True)
        self._tracer = tracing.tracer("hookstream.dispatch")  # None: not exporting
        self.failed: BaseException | None = None  # the loop died: the process is unhealthy
        self.retention_s = settings.outbox_retention_s
        self._purge_due = time.monotonic() + PURGE_EVERY_S

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        self._sender.start()
        self._thread.start()
        return self

    def wake(self) -> None:
        """Commands were committed: look now rather than at the next idle tick."""
        self._wake.set()

    def alive(self) -> bool:
        return self._thread.is_alive() or self._stopping.is_set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming; let requests in flight finish (bounded) and record them; give back what no sender took.
        What is still unrecorded when the bound runs out keeps its lease (sent again after it, same key)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)

    # --- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        self.log.info("dispatch.started", concurrency=self.concurrency, rate_per_s=round(self.rate, 3))
        while not self._stopping.is_set():
            try:
                busy = self._round()
            except Exception as exc:  # noqa: BLE001 — a database hiccup: look again after a pause
                self.log.warning("dispatch.round_failed", error=repr(exc)[:300])
                busy = False
            if time.monotonic() >= self._purge_due:
                self.purge()
            if busy:
                # Let more requests finish before the next round: they are settled, and their slots refilled,
                # a round (one transaction) at a time, not one round per request.
                self._stopping.wait(ROUND_GAP_S)
            else:
                self._wake.wait(IDLE_S)
                self._wake.clear()
        # Stopping: no new claims; the requests in flight finish (the caller bounds the wait) and are settled,
        # and the claimed commands not on the wire yet are given back at once (not left to their lease).
        try:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._settle_finished()

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # sends handed over just before: let each task start (its `finally` gives it back)
        for task in list(self._waiting.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def purge(self) -> int:
        """Delete this processor's commands settled longer than the retention ago (a few batches per call)."""
        self._purge_due = time.monotonic() + PURGE_EVERY_S
        cutoff = datetime.fromtimestamp(self._clock() - self.retention_s, UTC)
        deleted = 0
        try:
            for _ in range(10):
                n = self.outbox.purge(self.processor, cutoff, PURGE_BATCH)
                deleted += n
                if n < PURGE_BATCH:
                    break
        except Exception as exc:  # noqa: BLE001 — a database hiccup: the next purge catches up
            self.log.warning("dispatch.purge_failed", error=repr(exc)[:300])
        if deleted:
            self.log.info("dispatch.purged", commands=deleted, retention_s=self.retention_s)
        return deleted

    def _round(self) -> bool:
        """Settle what finished, claim what fits in the free request slots and start sending it, in one
        transaction; True if it did any of that (more may be due)."""
        self._collect_finished()
        free = 0
        while free < self.window and self._slots.acquire(blocking=False):
            free += 1
        if free == 0 and not self._unsettled:
            self._wake.wait(IDLE_S)  # all slots busy: a finishing request wakes us
            self._wake.clear()
            return True
        batch, self._unsettled = self._unsettled, []
        try:
            try:
                done, claimed = self.outbox.exchange([(f.command.id, f.status, f.error) for f in batch],
                                                     self.owner, self.processor, free, self.lease_s, self._clock(),
                                                     self.rate_key, self.rate)
            except Exception:
                self._unsettled = batch + self._unsettled  # settled with the next round (within their lease)
                raise
            self._report(batch, done)
            sends = []
            for command, at in claimed:
                if at is None:
                    self._finished.put(_Finished(command, "expired", "deadline passed before sending"))
                else:
                    sends.append((command, at))
            if sends:
                free -= len(sends)
                self._loop.call_soon_threadsafe(self._start_sends, sends)  # one wake-up of the loop per round
            return len(claimed) > 0 or len(batch) > 0
        finally:
            for _ in range(free):
                self._slots.release()

    def _collect_finished(self) -> None:
        """Take the outcomes the sender handed over; a failure is decided here (retry, expire, dead-letter):
        that writes to the ledger or the broker, which the sender's loop never waits for."""
        while True:
            try:
                finished = self._finished.get_nowait()
            except queue.Empty:
                return
            if finished.failure is not None:
                self._failed(finished.command, finished.failure, finished.span)
            else:
                self._unsettled.append(finished)

    def _settle_finished(self) -> None:
        """Record the outcomes of the requests finished since the last round, in one transaction (on stop).

        If the ledger refuses, past their lease the commands are sent again with the same Idempotency-Key
        (the platform answers a replay as the first request)."""
        self._collect_finished()
        if not self._unsettled:
            return
        batch, self._unsettled = self._unsettled, []
        try:
            done = self.outbox.finish_many([(f.command.id, f.status, f.error) for f in batch], self.owner)
        except Exception as exc:  # noqa: BLE001 — left to their leases
            self.log.warning("dispatch.settle_failed", error=repr(exc)[:300], commands=len(batch))
            return
        self._report(batch, done)

    def _report(self, batch: list[_Finished], done: set[int]) -> None:
        for command, status, error, span, _ in batch:
            if command.id not in done:
                self.log.warning("dispatch.lease_lost", **span, **self._fields(command))
            elif status == RELEASED:
                self.log.info("dispatch.send_time_missed", **span, **self._fields(command))
            elif status == "sent":
                metrics.outbox_commands.labels(self.processor, command.kind, "sent").inc()
                self.log.info("dispatch.sent", **span, **self._fields(command))
            elif status == "expired":
                metrics.outbox_commands.labels(self.processor, command.kind, "expired").inc()
                self.log.warning("dispatch.expired", reason=error, **span, **self._fields(command))

    def _finish_later(self, command: OutboxCommand, status: str, error: str | None = None,
                      failure: Failure | None = None) -> None:
        """Hand an outcome to the round thread, which settles a round's outcomes in one transaction; its log
        line carries the dispatch span this happened in (it is written after the span ended)."""
        current = tracing.current_ids() if self._tracer is not None else None
        span = {"trace_id": current[0], "span_id": current[1]} if current is not None else {}
        self._finished.put(_Finished(command, status, error, span, failure))

    # --- the sender's loop ----------------------------------------------------------------------
    def _start_sends(self, sends: list[tuple[OutboxCommand, float]]) -> None:
        if self._wire is None:
            self._wire = asyncio.Semaphore(self.concurrency)
        for command, at in sends:
            task = self._loop.create_task(self._send(command, at))
            self._tasks.add(task)
            self._waiting[command.id] = task
            task.add_done_callback(self._tasks.discard)

    async def _send(self, command: OutboxCommand, at: float) -> None:
        assert self._wire is not None
        try:
            wait = at - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            ready = at if wait <= 0 else self._clock()  # due since: its send time, or when its sleep ended
            async with self._wire:
                self._waiting.pop(command.id, None)
                if self._clock() - ready > self.late_s:
                    # Its send time passed while it waited for a place on the wire (requests slower than usual):
                    # sent now it would bunch with the next ones over the platform's limit. Given back, it gets a
                    # new time.
                    self._finish_later(command, RELEASED)
                    return
                if command.deadline is not None and self._clock() >= command.deadline:
                    self._finish_later(command, "expired", "deadline passed before sending")
                    return
                if self._tracer is None:
                    await self._send_one(command)
                    return
                # A child of the processor span that wrote the command (its traceparent is in the row); the
                # client's request span, and the traceparent header the API receives, are children of this one.
                parent = tracing.extract({tracing.TRACEPARENT: command.traceparent}) if command.traceparent else None
                with self._tracer.start_as_current_span(f"dispatch {command.kind}", context=parent, attributes={
                    "hookstream.processor": self.processor, "hookstream.command": command.kind,
                    "hookstream.attempt": command.attempts, "hookstream.idempotency_key": command.idempotency_key,
                }):
                    await self._send_one(command)
        except asyncio.CancelledError:
            self._finish_later(command, RELEASED)  # stopping before it was on the wire: given back unsent
        except Exception as exc:  # noqa: BLE001 — never lose the slot; the lease brings the command back
            self.log.error("dispatch.send_crashed", error=repr(exc)[:300], **self._fields(command))
        finally:
            self._waiting.pop(command.id, None)
            self._slots.release()
            self._wake.set()

    async def _send_one(self, command: OutboxCommand) -> None:
        try:
            if self._client is None:
                self._client = self._client_factory()
            await self._client.send(command_request(command.kind, command.args, command.idempotency_key))
        except Exception as exc:  # noqa: BLE001 — every failure is classified
            self._finish_later(command, FAILED, failure=classify_error(exc))
            return
        self._finish_later(command, "sent")

    # --- failures (the round thread) -------------------------------------------------------------
    def _failed(self, command: OutboxCommand, failure: Failure, span: dict[str, str]) -> None:
        now = self._clock()
        first = command.first_failed_at if command.first_failed_at is not None else now
        deadline_in = command.deadline - now if command.deadline is not None else None
        verdict, due = next_retry(self.backoff, failure, command.attempts, first, now,
                                  budget_s=self.retry_budget_s if deadline_in is None else None,
                                  deadline_in_s=deadline_in)
        err = {"error_type": failure.error_type, "error": failure.message, "error_kind": failure.kind}
        if verdict == "retry":
            self._settle_retry(command, due, first, failure)
            metrics.outbox_commands.labels(self.processor, command.kind, "retried").inc()
            metrics.retries.labels(self.processor, failure.error_type).inc()
            self.log.warning("dispatch.retry_scheduled", delay_s=round(due - now, 3),
                             retry_after=failure.retry_after, **span, **err, **self._fields(command))
            return
        if verdict == "expired":
            self._unsettled.append(_Finished(command, "expired", failure.message, span))
            return
        try:
            dlq_offset = self._dead_letters.send_command(command, failure)
        except Exception as exc:  # noqa: BLE001 — not dead-lettered: try the command again later
            self.log.error("dispatch.dead_letter_failed", dlq_error=repr(exc)[:300], **span, **err,
                           **self._fields(command))
            self._settle_retry(command, now + self.backoff.delay(1), first, failure)
            return
        self._settle(command, "dead", failure.message)
        metrics.outbox_commands.labels(self.processor, command.kind, "dead_lettered").inc()
        metrics.dead_lettered.labels(self.processor, failure.error_type).inc()
        self.log.error("dispatch.dead_lettered", dlq_offset=dlq_offset, **span, **err, **self._fields(command))

    # --- recording outcomes ---------------------------------------------------------------------
    def _settle(self, command: OutboxCommand, status: str, error: str | None = None) -> None:
        self._retrying(lambda: self.outbox.finish(command.id, self.owner, status, error), command)

    def _settle_retry(self, command: OutboxCommand, due: float, first: float, failure: Failure) -> None:
        message = f"{failure.error_type}: {failure.message}"
        self._retrying(lambda: self.outbox.retry_at(command.id, self.owner, due, first, message), command)

    def _retrying(self, write: Callable[[], bool], command: OutboxCommand) -> None:
        # A short ledger transaction after the call; if the ledger stays busy, the lease runs out
        # and the command is sent again with the same Idempotency-Key (the platform replays it).
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                if not write():
                    self.log.warning("dispatch.lease_lost", **self._fields(command))
                return
            except Exception as exc:  # noqa: BLE001
                if attempt == SETTLE_ATTEMPTS - 1:
                    self.log.error("dispatch.settle_failed", error=repr(exc)[:300], **self._fields(command))
                    return
                time.sleep(0.05 * 2 ** attempt)

    @staticmethod
    def _fields(command: OutboxCommand) -> dict[str, Any]:
        # Never the arguments themselves: a 3DS answer carries the challenge code (a secret).
        return {"command": command.kind, "card_id": command.args.get("card_id"),
                "idempotency_key": command.idempotency_key, "attempt": command.attempts,
                "dedup_key": command.dedup_key}
