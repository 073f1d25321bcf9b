"""The consumer runtime: poll → handle in a claimed ledger transaction → outbox → commit → dispatch.

One thread runs the poll loop. Records of one partition are handled in order; a transient failure
pauses only its partition (seek back, resume when the backoff is due) while others keep flowing.
The records of a poll share one ledger transaction, each claim+effect in its own savepoint; the
offsets are committed only after that transaction (or the dead letter) is. API commands a handler
asks for are written into the outbox inside the event's savepoint and sent by the dispatcher
(`dispatch.py`) after the commit: no HTTP call is made while a ledger transaction is open.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from hookstream import metrics, tracing
from hookstream.kafka import make_consumer, make_producer
from hookstream.logs import get_logger
from hookstream.idempotency import idempotency_key
from hookstream.ledger.outbox import enqueue
from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.dispatch import Dispatcher
from hookstream.processors.dlq import DeadLetters, ensure_dlq
from hookstream.processors.errors import Failure, classify_error
from hookstream.processors.health import Health
from hookstream.processors.retry import Backoff, RetryState, next_retry
from hookstream.ledger.errors import LedgerTransientError
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key, loggable_operation_id, parse_data, route_for
from hookstream.settings import Settings

# Bigger polls mean fewer fetch round trips and fewer ledger commits (measured: ~2x events/s over
# 500); POLL_BUDGET_S keeps slow handlers far inside max_poll_interval_ms (300 s) all the same.
# A short fetch wait: a partition resumed after its backoff is not stuck behind a long-poll fetch
# of idle partitions (measured: up to +0.5 s per retry with the default 500 ms).
CONSUMER_DEFAULTS: dict[str, Any] = {"max_poll_records": 2000, "fetch_max_wait_ms": 100}
POLL_BUDGET_S = 60.0
BATCH_MAX_S = 0.5  # longest a batch transaction stays open before it is committed
IDLE_POLL_S = 0.5  # longest poll wait: bounds how late SIGTERM and due retries are noticed
DLQ_FAILED_PAUSE_S = 5.0  # the dead-letter topic refused a record: retry the record this much later
PAUSE_OVERDUE_S = 5.0  # a paused partition this far past its resume time is resumed again
PAUSE_STUCK_S = 60.0  # … and this far past it, /healthz reports the process unhealthy


def default_api_factory(settings: Settings) -> Any:
    """The CryptoMate client the dispatcher sends with, built on its first command.

    One attempt per call (the dispatcher owns retries) and no per-process pacing: the dispatchers
    sharing the API key pace themselves through the ledger.
    """
    return importlib.import_module("hookstream.api").CryptoMateClient.from_settings(
        settings, rate_limit_per_s=1e9)


class _Staged(NamedTuple):
    tp: TopicPartition
    offset: int
    outcome: str
    log: Any
    seconds: float
    received_ms: str | None
    extra: dict[str, Any]
    span: Any = None  # the record's span while tracing: ended once its offset is committed


_NO_IDS: dict[str, str] = {}


def group_id(processor: str, settings: Settings) -> str:
    """`hookstream.NAME`, under the topic prefix: prefixed deployments never share a consumer group."""
    return settings.topic(f"hookstream.{processor}")


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.runtime._on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runtime._on_assigned(list(assigned))


class Runtime:
    """Runs one processor until `stop()`; `run()` returns the process exit code."""

    def __init__(
        self, processor: Processor, settings: Settings, *, ledger: Any = None,
        api_factory: Callable[[Settings], Any] | None = default_api_factory,
        health: Health | None = None, clock: Callable[[], float] = time.monotonic,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.ledger = ledger
        self.health = health or Health()
        self.clock = clock
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s, settings.retry_max_attempts)
        self.topics = [settings.topic(t) for t in processor.topics]
        self.event_types = processor.event_types
        self.log = get_logger("hookstream.processor", processor=self.name)
        self._api_factory = api_factory
        self._dispatcher: Dispatcher | None = None
        self._batch_commands = 0  # commands written by the open batch transaction
        self._consumer_overrides = consumer_overrides or {}
        self._stopping = False
        self._ready = False
        self._consumer: KafkaConsumer | None = None
        self._dead_letters: DeadLetters | None = None
        self._retry: dict[TopicPartition, RetryState] = {}  # paused partitions, by failing record
        self._pending: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._staged: list[_Staged] = []  # handled in the open batch transaction, not yet committed
        self._txn: tuple[Any, Any, float] | None = None  # (context manager, unit of work, opened at)
        self._polled_at = clock()
        self._broken = False  # the batch transaction lost its connection: stop, roll back, re-read
        self._assigned: set[TopicPartition] = set()
        self._lag_labels: set[TopicPartition] = set()
        self._outcome = {o: metrics.processed.labels(self.name, o)
                         for o in ("ok", "duplicate", "expired", "retried", "dead_lettered", "ignored")}
        self._seconds = metrics.processing_seconds.labels(self.name)
        self._age = metrics.event_age_seconds.labels(self.name)
        self._tracer = tracing.tracer("hookstream.processor")  # None: not exporting, no tracing work

    # --- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the record in hand, commit, leave the group. Signal-safe."""
        self._stopping = True

    @property
    def ready(self) -> bool:
        return self._ready

    def run(self) -> int:
        if self.ledger is None:
            from hookstream.ledger import Ledger

            self.ledger = Ledger.from_settings(self.settings)
        started = self._start()
        if started is None:
            return 0  # asked to stop while waiting for the broker or the ledger
        consumer, producer = started
        self.health.add_check(self._stuck_partitions)
        if self._dispatcher is not None:
            self.health.add_check(lambda: None if self._dispatcher.alive() else "outbox dispatcher stopped")
        try:
            while not self._stopping:
                self.health.beat()
                self._watch_paused()
                self._resume_due()
                batch = consumer.poll(timeout_ms=self._poll_timeout_ms())
                self._polled_at = self.clock()
                for tp, records in batch.items():
                    if self._stopping or self._broken:
                        consumer.seek(tp, records[0].offset)  # not handled: fetch them again
                        continue
                    self._handle_partition(tp, records)
                self._flush()
                self._observe_lag()
        finally:
            self.health.stopped = True
            self._shutdown(consumer, producer)
        return 0

    def _start(self) -> tuple[KafkaConsumer, Any] | None:
        """Connect to the ledger and the broker, waiting (with the retry backoff) while either is down.

        A process started before its broker or its database, or beside a busy SQLite ledger, waits
        and keeps trying rather than exiting, for HOOKSTREAM_PROCESSOR_START_TIMEOUT_S; only that bound
        or a permanent problem (a schema needing `hookstream db upgrade`, bad settings) ends it.
        """
        attempt, give_up_at = 0, self.clock() + self.settings.processor_start_timeout_s
        while not self._stopping:
            attempt += 1
            producer = None
            try:
                with self.ledger.unit_of_work(read_only=True):  # schema check: a read, no write lock
                    pass
                dlq_topic = ensure_dlq(self.settings, self.name)
                producer = make_producer(self.settings, role=f"dlq-{self.name}")
                consumer = make_consumer(self.settings, group_id(self.name, self.settings),
                                         role=f"process-{self.name}",
                                         **{**CONSUMER_DEFAULTS, **self._consumer_overrides})
            except Exception as exc:  # noqa: BLE001 — classified: transient waits, permanent ends the process
                if producer is not None:
                    producer.close(timeout=1)
                failure = classify_error(exc)
                if not failure.transient or self.clock() >= give_up_at:
                    raise  # HOOKSTREAM_PROCESSOR_START_TIMEOUT_S is up: the CLI makes it one line, exit 1
                delay = self.backoff.delay(min(attempt, 8))
                self.log.warning("processor.start_waiting", error_type=failure.error_type, error=failure.message,
                                 attempt=attempt, retry_in_s=round(delay, 3))
                self._sleep_unless_stopping(delay)
                continue
            self._dead_letters = DeadLetters(producer, dlq_topic, self.name)
            if self._api_factory is not None:
                factory = self._api_factory
                self._dispatcher = Dispatcher(self.name, self.settings, self.ledger,
                                              lambda: factory(self.settings), self._dead_letters).start()
                self._dispatcher.wake()  # commands a previous process committed but did not send
            self._consumer = consumer
            self._await_topics(consumer)
            consumer.subscribe(self.topics, listener=_Rebalance(self))
            self.log.info("processor.joining", group=group_id(self.name, self.settings), topics=self.topics)
            return consumer, producer
        return None

    def _sleep_unless_stopping(self, seconds: float) -> None:
        until = self.clock() + seconds
        while not self._stopping and self.clock() < until:
            self.health.beat()  # waiting for a dependency is not a stuck loop
            time.sleep(min(0.2, max(0.0, until - self.clock())))

    def _await_topics(self, consumer: KafkaConsumer, timeout_s: float = 30.0) -> None:
        # Joining before the topics' metadata is known yields an empty first assignment and an
        # immediate second rebalance; wait (bounded) so a process is ready with its partitions.
        deadline = self.clock() + timeout_s
        missing = list(self.topics)
        while missing and not self._stopping and self.clock() < deadline:
            missing = [t for t in missing if not consumer.partitions_for_topic(t)]
            if missing:
                time.sleep(0.2)
        if missing:
            self.log.warning("processor.topics_missing", topics=missing)

    def _shutdown(self, consumer: KafkaConsumer, producer: Any) -> None:
        try:
            self._flush()
        finally:
            if self._dispatcher is not None:
                self._dispatcher.stop()
            # close() leaves the group, so partitions move to the other processes at once.
            consumer.close(autocommit=False, timeout_ms=5000)
            producer.close(timeout=5)
            self.log.info("processor.stopped", committed="all handled")

    def _poll_timeout_ms(self) -> int:
        # Wake up for the next partition due to resume; ones already resumed just wait for records.
        now = self.clock()
        upcoming = [s.resume_at - now for s in self._retry.values() if s.resume_at > now]
        return int(min([IDLE_POLL_S, *upcoming]) * 1000)

    # --- rebalance ------------------------------------------------------------------------------
    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        # Rebalances run inside poll(), after the batch was flushed: this commits nothing new.
        self._flush()
        for tp in revoked:
            self._assigned.discard(tp)
            if tp in self._lag_labels:
                self._lag_labels.discard(tp)
                metrics.consumer_lag.remove(self.name, tp.topic, str(tp.partition))
        self.log.info("partitions.revoked", partitions=_names(revoked))

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self._consumer is not None
        self._assigned = set(assigned)
        # A retry in progress on a partition we got back: keep waiting; on one we lost: forget it
        # (its new owner starts at the committed offset and retries it afresh).
        for tp in list(self._retry):
            if tp not in self._assigned:
                del self._retry[tp]
        if self._retry:
            self._consumer.pause(*self._retry)
        self.log.info("partitions.assigned", partitions=_names(assigned))
        if not self._ready:
            self._ready = True
            self.log.info("processor.ready", group=group_id(self.name, self.settings), partitions=_names(assigned))

    # --- the loop -------------------------------------------------------------------------------
    def _watch_paused(self) -> None:
        """No partition stays paused for good: a pause nobody will lift (no retry pending for it) is
        lifted now, and a retry overdue past its resume time is resumed again (and reported)."""
        assert self._consumer is not None
        paused = set(self._consumer.paused())
        if not paused:
            return
        now = self.clock()
        for tp in paused:
            state = self._retry.get(tp)
            if state is None:
                self._consumer.resume(tp)
                self.log.warning("partition.orphan_pause_resumed", partition=f"{tp.topic}:{tp.partition}")
            elif now - state.resume_at > PAUSE_OVERDUE_S:
                self._consumer.resume(tp)
                self.log.warning("partition.overdue_resumed", partition=f"{tp.topic}:{tp.partition}",
                                 overdue_s=round(now - state.resume_at, 3))

    def _stuck_partitions(self) -> str | None:
        """Health: a partition whose retry is long past its resume time is reported unhealthy."""
        now = self.clock()
        stuck = [tp for tp, s in list(self._retry.items()) if now - s.resume_at > PAUSE_STUCK_S]
        if stuck:
            return f"partitions paused past their resume time: {', '.join(_names(stuck))}"
        return None

    def _resume_due(self) -> None:
        if not self._retry:
            return
        now = self.clock()
        due = [tp for tp, s in self._retry.items() if s.resume_at <= now]
        if due:
            assert self._consumer is not None
            self._consumer.resume(*due)

    def _handle_partition(self, tp: TopicPartition, records: list[Any]) -> None:
        for record in records:
            self.health.beat()  # a long batch is progress; a handler hanging past the stall is not
            if self.clock() - self._polled_at > POLL_BUDGET_S:
                # Slow handlers: poll again long before max.poll.interval.ms would evict us; the
                # rest of this fetch is read again from here.
                assert self._consumer is not None
                self._consumer.seek(tp, record.offset)
                return
            state = self._retry.get(tp)
            if state is not None:
                if state.resume_at > self.clock():
                    return  # paused: the rest of this fetch is re-read after the backoff
                if record.offset != state.offset:
                    del self._retry[tp]  # someone else moved this partition on while we waited
            if self._broken:
                self._consumer.seek(tp, record.offset)  # type: ignore[union-attr]  # re-read later
                return
            if not self._handle_record(tp, record):
                return  # paused and sought back to this record
            if self._txn is not None and self.clock() - self._txn[2] > BATCH_MAX_S:
                self._flush()  # slow handlers: do not hold the ledger transaction (and its locks) long
            if self._stopping:
                return  # finish the record in hand, not the fetch

    def _handle_record(self, tp: TopicPartition, record: Any) -> bool:
        """Handle one record; True when it is staged (done once the batch commits)."""
        headers = h.to_dict(record.headers)
        if self._tracer is None:
            return self._handle_one(tp, record, headers)
        return self._handle_traced(tp, record, headers)

    def _handle_traced(self, tp: TopicPartition, record: Any, headers: dict[str, str]) -> bool:
        """The record as one CONSUMER span continuing the receiver's (its `traceparent` header), current
        while it is handled (so the outbox rows it writes carry it), ended once its offset is committed."""
        assert self._tracer is not None
        span = self._tracer.start_span(
            f"process {record.topic}", context=tracing.extract(headers), kind=tracing.kind("CONSUMER"),
            attributes={"messaging.system": "kafka", "messaging.operation.type": "process",
                        "messaging.destination.name": record.topic,
                        "messaging.destination.partition.id": str(record.partition),
                        "messaging.kafka.offset": record.offset,
                        "messaging.consumer.group.name": group_id(self.name, self.settings)})
        with tracing.use(span):
            staged = self._handle_one(tp, record, headers, tracing.ids(span))
        if staged:
            self._staged[-1] = self._staged[-1]._replace(span=span)
        else:  # paused for a retry (or the dead letter failed): read again later, under a new span
            tracing.fail(span, "retry scheduled")
            span.end()
        return staged

    def _handle_one(self, tp: TopicPartition, record: Any, headers: dict[str, str],
                    trace_ids: dict[str, str] = _NO_IDS) -> bool:
        started = self.clock()
        state = self._retry.get(tp)
        attempt = state.attempts + 1 if state is not None else 1
        # trace ids bound, not only current: the event.processed line is written after the commit
        log = self.log.bind(topic=record.topic, partition=record.partition, offset=record.offset,
                            attempt=attempt, **trace_ids)
        event: Event | None = None
        try:
            envelope = parse_envelope(record.value)
            log = log.bind(operation_id=loggable_operation_id(envelope), event_type=envelope.event_type)
            if self.event_types is not None and envelope.event_type not in self.event_types:
                return self._stage(tp, record, "ignored", log, started, headers)
            route = route_for(envelope)
            event = Event(
                envelope=envelope, data=parse_data(envelope, route), dedup_key=dedup_key(envelope),
                topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                value=record.value, headers=headers, received_at=_received_at(headers),
            )
            log = log.bind(dedup_key=event.dedup_key)
            if self._past_deadline(event):
                outcome = self._claim_expired(event)
            else:
                outcome = self._apply(event, log, attempt)
        except Exception as exc:  # noqa: BLE001 — every failure is classified, counted and logged
            return self._failed(tp, record, classify_error(exc), attempt, state, event, log, started, headers)
        return self._stage(tp, record, outcome, log, started, headers)

    # --- the batch transaction ------------------------------------------------------------------
    # The records of one poll share one ledger transaction; each record's claim and effect sit in
    # their own savepoint, so a failing handler undoes only its own writes. One commit per batch
    # instead of one per event (an fsync each on SQLite) is what makes thousands of events/s.
    def _uow(self) -> Any:
        if self._txn is None:
            manager = self.ledger.unit_of_work()
            uow = manager.__enter__()
            self._txn = (manager, uow, self.clock())
        return self._txn[1]

    @contextmanager
    def _savepoint(self) -> Iterator[Any]:
        try:
            with self._uow().savepoint("hs_event") as uow:
                yield uow
        except LedgerTransientError as exc:
            if "savepoint lost" in str(exc):  # the connection is gone: the batch cannot commit
                self._broken = True
                self.log.warning("ledger.savepoint_lost", error=repr(exc))
            raise

    def _apply(self, event: Event, log: Any, attempt: int) -> str:
        """The claim and the effect, together, in the batch's ledger transaction."""
        with self._savepoint() as uow:
            claimed = uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                                outcome="ok")
            span = tracing.current_span() if self._tracer is not None else None
            if span is not None:
                span.add_event("claimed" if claimed else "duplicate", {"hookstream.dedup_key": event.dedup_key})
            if not claimed:
                return "duplicate"
            ctx = Context(processor=self.name, event=event, uow=uow, log=log, settings=self.settings,
                          attempt=attempt)
            self.processor.handle(event, ctx)
            if ctx.commands:
                self._to_outbox(uow, event, ctx)
            if span is not None:
                span.add_event("applied", {"hookstream.commands": len(ctx.commands)})
        return "ok"

    def _to_outbox(self, uow: Any, event: Event, ctx: Context) -> None:
        """The event's API commands, in its savepoint: they exist if and only if its effects commit."""
        if self._dispatcher is None:
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
        self._batch_commands += len(ctx.commands)

    def _claim_expired(self, event: Event) -> str:
        """Record a deadline-bound event that came too late: claimed as expired, never handled."""
        with self._savepoint() as uow:
            if not uow.claim(self.name, event.dedup_key, event.topic, event.partition, event.offset,
                             outcome="expired"):
                return "duplicate"
        return "expired"

    def _past_deadline(self, event: Event) -> bool:
        deadline = self.processor.deadline(event)
        return deadline is not None and datetime.now(UTC) >= deadline

    def _stage(self, tp: TopicPartition, record: Any, outcome: str, log: Any, started: float,
               headers: dict[str, str], **extra: Any) -> bool:
        self._retry.pop(tp, None)
        self._staged.append(_Staged(tp, record.offset, outcome, log, self.clock() - started,
                                    headers.get(h.RECEIVED_AT), extra))
        return True

    def _flush(self) -> None:
        """Commit the batch's ledger transaction, then count, log and commit the offsets it covers."""
        staged, self._staged = self._staged, []
        if self._txn is not None:
            manager, _uow, _started = self._txn
            self._txn = None
            try:
                if self._broken:
                    raise RuntimeError("ledger connection lost inside the batch")
                manager.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 — classified, logged, retried below
                self._batch_commands = 0
                self._batch_failed(manager, staged, exc)
                _end_spans(staged, "ledger batch failed")
                return
            if self._batch_commands and self._dispatcher is not None:
                self._dispatcher.wake()  # committed: the commands may leave now
            self._batch_commands = 0
        for item in staged:
            self._finish(item)
        self._commit()
        _end_spans(staged)

    def _batch_failed(self, manager: Any, staged: list[_Staged], exc: Exception) -> None:
        """The batch did not commit: none of its effects exist, so re-read its records later."""
        self._broken = False
        try:
            manager.__exit__(type(exc), exc, exc.__traceback__)  # roll back whatever is left
        except Exception:  # noqa: BLE001, S110 — already failed; the rollback is best effort
            pass
        failure = classify_error(exc)
        first: dict[TopicPartition, int] = {}
        for item in staged:
            first[item.tp] = min(item.offset, first.get(item.tp, item.offset))
        now = self.clock()
        for tp, offset in first.items():
            if tp in self._assigned:
                self._pause(tp, RetryState(offset, 1, now, now + self.backoff.delay(1), failure))
        metrics.retries.labels(self.name, failure.error_type).inc()
        self.log.error("ledger.batch_failed", error_type=failure.error_type, error=failure.message,
                       records=len(staged), partitions=_names(list(first)))

    def _finish(self, item: _Staged) -> None:
        self._pending[item.tp] = item.offset + 1
        self._outcome[item.outcome].inc()
        self._seconds.observe(item.seconds)
        if item.received_ms is not None and item.received_ms.isdigit():
            self._age.observe(max(0.0, time.time() - int(item.received_ms) / 1000))
        item.log.info("event.processed", outcome=item.outcome, seconds=round(item.seconds, 6), **item.extra)

    def _failed(self, tp: TopicPartition, record: Any, failure: Failure, attempt: int,
                state: RetryState | None, event: Event | None, log: Any, started: float,
                headers: dict[str, str]) -> bool:
        now = self.clock()
        first = state.first_failed_at if state is not None else now
        deadline_in = None
        if event is not None:
            deadline = self.processor.deadline(event)
            if deadline is not None:
                deadline_in = deadline.timestamp() - datetime.now(UTC).timestamp()
        verdict, resume_at = next_retry(self.backoff, failure, attempt, first, now,
                                        budget_s=self.processor.retry_budget_s, deadline_in_s=deadline_in)
        err = {"error_type": failure.error_type, "error": failure.message, "error_kind": failure.kind}
        if verdict == "retry" or self._broken:
            self._pause(tp, RetryState(record.offset, attempt, first, resume_at, failure))
            self._outcome["retried"].inc()
            metrics.retries.labels(self.name, failure.error_type).inc()
            log.warning("event.retry_scheduled", delay_s=round(resume_at - now, 3),
                        retry_after=failure.retry_after, **err)
            return False
        if verdict == "expired" and event is not None:
            try:
                outcome = self._claim_expired(event)
            except Exception as exc:  # noqa: BLE001 — expiry stands even if it cannot be noted
                log.warning("event.expiry_not_recorded", record_error=repr(exc))
                outcome = "expired"
            return self._stage(tp, record, outcome, log, started, headers, **err)
        assert self._dead_letters is not None
        try:
            dlq_offset = self._dead_letters.send(record, failure, attempt)
        except KafkaError as exc:
            # Not dead-lettered, so not committed: try the record again a little later.
            log.error("event.dead_letter_failed", dlq_error=repr(exc), **err)
            self._pause(tp, RetryState(record.offset, attempt - 1, first, now + DLQ_FAILED_PAUSE_S, failure))
            return False
        metrics.dead_lettered.labels(self.name, failure.error_type).inc()
        return self._stage(tp, record, "dead_lettered", log, started, headers, dlq_offset=dlq_offset, **err)

    def _pause(self, tp: TopicPartition, state: RetryState) -> None:
        assert self._consumer is not None
        self._retry[tp] = state
        self._consumer.pause(tp)
        self._consumer.seek(tp, state.offset)

    def _commit(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._pending.items()}
        self._pending = {}
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # The group moved on (rebalance): the new owner redelivers from the last commit and the
            # inbox turns what we already applied into duplicates. Nothing is lost.
            self.log.warning("offsets.commit_failed", error=repr(exc), partitions=_names(list(offsets)))

    def _observe_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._assigned:
            try:
                # Both are local state after a fetch (timeout 0: never a network wait here).
                position = self._consumer.position(tp, timeout_ms=0)
                high = self._consumer.highwater(tp)
            except KafkaError:
                continue
            if position is None or high is None:
                continue
            metrics.consumer_lag.labels(self.name, tp.topic, str(tp.partition)).set(max(0, high - position))
            self._lag_labels.add(tp)


def _end_spans(staged: list[_Staged], failed: str | None = None) -> None:
    for item in staged:
        span = item.span
        if span is not None:
            span.set_attribute("hookstream.outcome", item.outcome)
            if failed is not None:
                tracing.fail(span, failed)
            else:
                span.add_event("committed")  # the ledger transaction, then the offset
            span.end()


def _names(tps: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in tps)


def _received_at(headers: dict[str, str]) -> datetime | None:
    value = headers.get(h.RECEIVED_AT)
    if value is None or not value.isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)
