"""Key-ordered lanes: the records of one key are handled in order by one lane; different keys in parallel.

The poll loop hands each record to the lane its Kafka key hashes to. A lane is a thread with its own
ledger batch transaction: it handles its ready records in arrival order (parse → claim + apply →
outbox, `apply.py`), commits, then finishes their offsets (`offsets.py`) so the poll loop can commit
up to the lowest unfinished one. A failed record parks its key only (`parking.py`): the key's later
records wait behind it, in order, while the lane goes on with every other key.

Why threads: the work is ledger transactions; on Postgres a lane waits on the network and the server
(psycopg releases the GIL), so lanes overlap round trips and commits. On SQLite (one writer) lanes
take turns on the write lock, so one lane is the default there (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kafka import TopicPartition
from kafka.errors import KafkaError

from hookstream import metrics, tracing
from hookstream.processors.apply import Applier
from hookstream.processors.batch import Batch
from hookstream.processors.dlq import DeadLetters
from hookstream.processors.errors import Failure, classify_error
from hookstream.processors.offsets import OffsetTracker
from hookstream.processors.parking import DLQ_FAILED_PAUSE_S, FailurePolicy, ParkedKey
from hookstream.processors.parse import parse_record
from hookstream.schemas import headers as h

BATCH_MAX_S = 0.5  # longest a lane's batch transaction stays open before it is committed
BATCH_MAX_RECORDS = 2000  # … and most records in it
IDLE_WAIT_S = 0.5  # longest a lane sleeps: bounds how late a due parked key is noticed

Key = tuple[str, int, bytes | None]  # topic, partition, Kafka record key: the unit of order


def key_of(record: Any) -> Key:
    return (record.topic, record.partition, record.key)


def lane_for(record: Any, lanes: int) -> int:
    """Stable: every record of a key goes to the same lane. Keyless records keep their partition's order."""
    key = record.key if record.key is not None else b"\x00partition:%d" % record.partition
    return zlib.crc32(key) % lanes


class _Staged(NamedTuple):
    record: Any
    outcome: str
    log: Any
    seconds: float
    received_ms: str | None
    extra: dict[str, Any]
    span: Any = None  # the record's span while tracing: ended once its batch committed


_NO_IDS: dict[str, str] = {}


@dataclass
class Shared:
    """What every lane of a runtime uses: the steps, the offsets, and where finished work is reported."""

    name: str
    applier: Applier
    policy: FailurePolicy
    ledger: Any
    tracker: OffsetTracker
    dead_letters: DeadLetters
    log: Any
    event_types: frozenset[str] | None
    committed: Callable[[int], None] = lambda commands: None  # a batch committed (its outbox commands)
    clock: Callable[[], float] = time.monotonic
    group: str = ""
    tracer: Any = None  # an OpenTelemetry tracer while exporting, else None (no tracing work)
    outcome: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outcome = {o: metrics.processed.labels(self.name, o)
                        for o in ("ok", "duplicate", "expired", "retried", "dead_lettered", "ignored")}
        self.seconds = metrics.processing_seconds.labels(self.name)
        self.age = metrics.event_age_seconds.labels(self.name)


class Lane(threading.Thread):
    """One worker: its keys' records in order, one batch transaction at a time."""

    def __init__(self, index: int, shared: Shared, stopping: threading.Event) -> None:
        super().__init__(name=f"lane-{shared.name}-{index}", daemon=True)
        self.index = index
        self.shared = shared
        self._stopping = stopping
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.ready: deque[Any] = deque()  # records whose key is not parked, in arrival order
        self.parked: dict[Key, ParkedKey] = {}
        self.in_hand: tuple[Any, float] | None = None  # (record, since): for the stuck-lane health check
        self.died: str | None = None

    # --- the poll loop's side -------------------------------------------------------------------
    def submit(self, records: list[Any]) -> None:
        self._inbox.put(("records", records))

    def release(self, partitions: set[TopicPartition]) -> threading.Event:
        """Drop what this lane holds of `partitions` (revoked) after its open batch commits."""
        done = threading.Event()
        self._inbox.put(("release", (partitions, done)))
        return done

    def wake(self) -> None:
        self._inbox.put(("wake", None))

    def overdue(self, now: float, after_s: float) -> list[tuple[Key, float]]:
        """Parked keys this far past their resume time (a lane that should have retried them)."""
        snapshot = dict(self.parked)  # one C call under the GIL: safe against the lane's changes
        return [(k, now - p.resume_at) for k, p in snapshot.items()
                if p.retry is not None and now - p.resume_at > after_s]

    # --- the lane's thread ----------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._take(self._wait_s())
                if self._stopping.is_set():
                    break
                self._work()
        except BaseException as exc:  # noqa: BLE001 — reported by health, the process is restarted
            self.died = repr(exc)
            self.shared.log.error("lane.died", lane=self.index, error=repr(exc))
            raise

    def _wait_s(self) -> float:
        if self.ready:
            return 0.0
        now = self.shared.clock()
        due = [p.resume_at - now for p in self.parked.values() if p.records]
        return max(0.0, min([IDLE_WAIT_S, *due]))

    def _take(self, timeout: float) -> None:
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, payload = item
            if kind == "records":
                self.ready.extend(payload)
            elif kind == "release":
                self._release(*payload)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _release(self, partitions: set[TopicPartition], done: threading.Event) -> None:
        # Between batches: nothing is staged, so dropping here loses no finished work.
        def kept(record: Any) -> bool:
            return TopicPartition(record.topic, record.partition) not in partitions

        self.ready = deque(r for r in self.ready if kept(r))
        for key in [k for k in self.parked if TopicPartition(k[0], k[1]) in partitions]:
            del self.parked[key]
        done.set()

    def _work(self) -> None:
        """One batch: due parked keys first, then ready records; commit; finish their offsets."""
        shared = self.shared
        batch = Batch(shared.ledger, shared.clock)
        staged: list[_Staged] = []
        now = shared.clock()
        if shared.applier.decides:
            self._prefetch(batch, now)
        for key, parked in sorted(self.parked.items(), key=lambda kv: kv[1].resume_at):
            if parked.resume_at > now:
                continue
            while parked.records and not self._stopping.is_set() and not batch.broken:
                if not self._one(parked.records.popleft(), batch, staged, parked):
                    break  # parked again
            if not parked.records:
                del self.parked[key]
        while (self.ready and not self._stopping.is_set() and not batch.broken
               and batch.age() < BATCH_MAX_S and len(staged) < BATCH_MAX_RECORDS):
            record = self.ready.popleft()
            key = key_of(record)
            parked = self.parked.get(key)
            if parked is not None:
                parked.records.append(record)  # behind its key's failed record, in order
                continue
            resumed = shared.policy.resumed(record)
            if resumed is not None:  # failed before a rebalance gave its partition back: same attempts, same wait
                self.parked[key] = resumed
                continue
            self._one(record, batch, staged, None)
        self._commit(batch, staged)

    def _prefetch(self, batch: Batch, now: float) -> None:
        """The inbox state of the records this batch will likely take, in one statement (see Applier.prefetch)."""
        coming = [r for p in self.parked.values() if p.resume_at <= now for r in p.records]
        coming += itertools.islice(self.ready, BATCH_MAX_RECORDS)
        if coming:
            try:
                self.shared.applier.prefetch(batch, coming)
            except Exception as exc:  # noqa: BLE001 — each record then claims on its own (and backs off if that fails)
                self.shared.log.warning("ledger.prefetch_failed", lane=self.index, error=repr(exc))
                batch.reset()

    def _one(self, record: Any, batch: Batch, staged: list[_Staged], parked: ParkedKey | None) -> bool:
        """Handle one record; True when it is staged or finished, False when its key is parked."""
        headers = h.to_dict(record.headers)
        tracer = self.shared.tracer
        if tracer is None:
            return self._handle(record, headers, batch, staged, parked, _NO_IDS)
        # One CONSUMER span per attempt, continuing the receiver's (the record's `traceparent`), current while
        # the record is handled (so the outbox rows it writes carry it), ended once its batch committed.
        span = tracer.start_span(
            f"process {record.topic}", context=tracing.extract(headers), kind=tracing.kind("CONSUMER"),
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": record.topic,
                        "messaging.destination.partition.id": str(record.partition),
                        "messaging.kafka.offset": record.offset,
                        "messaging.consumer.group.name": self.shared.group})
        before = len(staged)
        with tracing.use(span):
            done = self._handle(record, headers, batch, staged, parked, tracing.ids(span))
        if done and len(staged) > before:
            staged[-1] = staged[-1]._replace(span=span)
            return done
        if done:
            span.set_attribute("hookstream.outcome", "dead_lettered")
        else:  # parked for a retry: read again later, under a new span
            tracing.fail(span, "retry scheduled")
        span.end()
        return done

    def _handle(self, record: Any, headers: dict[str, str], batch: Batch, staged: list[_Staged],
                parked: ParkedKey | None, trace_ids: dict[str, str]) -> bool:
        shared = self.shared
        started = shared.clock()
        self.in_hand = (record, started)
        attempt = parked.attempts + 1 if parked is not None else 1
        # trace ids bound, not only current: the event.processed line is written after the commit
        log = shared.log.bind(topic=record.topic, partition=record.partition, offset=record.offset,
                              attempt=attempt, **trace_ids)
        event = None
        try:
            event, log = parse_record(record, headers, shared.event_types, log)
            if event is None:
                outcome = "ignored"
            elif shared.applier.past_deadline(event):
                outcome = shared.applier.claim_expired(batch, event)
            else:
                outcome = shared.applier.apply(batch, event, log, attempt)
        except Exception as exc:  # noqa: BLE001 — every failure is classified, counted and logged
            return self._failed(record, classify_error(exc), attempt, parked, event, log, started, headers,
                                batch, staged)
        finally:
            self.in_hand = None
        if parked is not None:
            parked.retry = None  # the next record of the key starts at attempt 1
        staged.append(_Staged(record, outcome, log, shared.clock() - started, headers.get(h.RECEIVED_AT), {}))
        return True

    def _failed(self, record: Any, failure: Failure, attempt: int, parked: ParkedKey | None, event: Any,
                log: Any, started: float, headers: dict[str, str], batch: Batch, staged: list[_Staged]) -> bool:
        shared = self.shared
        now = shared.clock()
        first = parked.retry.first_failed_at if parked is not None and parked.retry is not None else now
        verdict, resume_at = shared.policy.after(failure, attempt, first, now, event)
        err = {"error_type": failure.error_type, "error": failure.message, "error_kind": failure.kind}
        if verdict == "retry" or batch.broken:
            if verdict != "retry":
                resume_at = now + shared.policy.backoff.delay(1)
            target = parked if parked is not None else self.parked.setdefault(key_of(record), ParkedKey())
            shared.policy.park(target, record, failure, attempt, first, resume_at)
            shared.outcome["retried"].inc()
            metrics.retries.labels(shared.name, failure.error_type).inc()
            log.warning("event.retry_scheduled", delay_s=round(resume_at - now, 3),
                        retry_after=failure.retry_after, **err)
            return False
        if parked is not None:
            parked.retry = None
        if verdict == "expired" and event is not None:
            try:
                outcome = shared.applier.claim_expired(batch, event)
            except Exception as exc:  # noqa: BLE001 — expiry stands even if it cannot be noted
                log.warning("event.expiry_not_recorded", record_error=repr(exc))
                outcome = "expired"
            staged.append(_Staged(record, outcome, log, now - started, headers.get(h.RECEIVED_AT), err))
            return True
        try:
            dlq_offset = shared.dead_letters.send(record, failure, attempt)
        except KafkaError as exc:
            # Not dead-lettered, so not finished: the key waits and tries the record again later.
            log.error("event.dead_letter_failed", dlq_error=repr(exc), **err)
            target = parked if parked is not None else self.parked.setdefault(key_of(record), ParkedKey())
            shared.policy.park(target, record, failure, attempt - 1, first, now + DLQ_FAILED_PAUSE_S)
            return False
        metrics.dead_lettered.labels(shared.name, failure.error_type).inc()
        # The dead letter is acked: finished now, whatever happens to the batch around it.
        self._finish(_Staged(record, "dead_lettered", log, now - started, headers.get(h.RECEIVED_AT),
                             {"dlq_offset": dlq_offset, **err}))
        return True

    def _commit(self, batch: Batch, staged: list[_Staged]) -> None:
        shared = self.shared
        try:
            batch.commit(shared.name)
        except Exception as exc:  # noqa: BLE001 — classified, logged; the records are handled again
            failure = classify_error(exc)
            now = shared.clock()
            by_key: dict[Key, list[Any]] = {}
            for item in staged:
                by_key.setdefault(key_of(item.record), []).append(item.record)
            for key, records in by_key.items():
                shared.policy.batch_lost(self.parked.setdefault(key, ParkedKey()), records, failure, now)
            metrics.retries.labels(shared.name, failure.error_type).inc()
            shared.log.error("ledger.batch_failed", lane=self.index, error_type=failure.error_type,
                             error=failure.message, records=len(staged), keys=len(by_key))
            _end_spans(staged, "ledger batch failed")
            return
        if batch.commands:
            shared.committed(batch.commands)
        for item in staged:
            if batch.changed:  # a decided event whose posting the commit found already there
                changed = batch.changed.get((item.record.topic, item.record.partition, item.record.offset))
                item = item._replace(outcome=changed) if changed is not None else item
            self._finish(item)
        _end_spans(staged)

    def _finish(self, item: _Staged) -> None:
        shared = self.shared
        shared.outcome[item.outcome].inc()
        shared.seconds.observe(item.seconds)
        if item.received_ms is not None and item.received_ms.isdigit():
            shared.age.observe(max(0.0, time.time() - int(item.received_ms) / 1000))
        item.log.info("event.processed", outcome=item.outcome, seconds=round(item.seconds, 6), **item.extra)
        shared.tracker.finish(TopicPartition(item.record.topic, item.record.partition), item.record.offset)


def _end_spans(staged: list[_Staged], failed: str | None = None) -> None:
    for item in staged:
        span = item.span
        if span is not None:
            span.set_attribute("hookstream.outcome", item.outcome)
            if failed is not None:
                tracing.fail(span, failed)
            else:
                span.add_event("committed")  # the ledger transaction; the offset follows from the poll loop
            span.end()
