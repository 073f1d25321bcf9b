"""The consumer runtime: the poll loop that feeds the lanes, commits finished offsets and runs the lifecycle.

The steps, each in its own module: poll (here) → parse (`parse.py`) → claim + apply and outbox
(`apply.py`) in the lane's batch transaction (`batch.py`) → commit, then finish the offsets
(`offsets.py`) → dispatch (`dispatch.py`, after the commit: no HTTP call is made while a ledger
transaction is open). Retry, park and dead-letter are `parking.py`. Records are spread over lanes
by Kafka key (`lanes.py`): one key's records stay in order, different keys run concurrently, and a
failing key parks alone while its partition flows. Offsets are committed up to the lowest
unfinished offset of each partition, never past it.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.engine import make_url

from hookstream import heap, metrics, tracing
from hookstream.kafka import make_consumer, make_producer
from hookstream.logs import get_logger
from hookstream.processors.apply import Applier
from hookstream.processors.base import Processor
from hookstream.processors.dispatch import Dispatcher
from hookstream.processors.dlq import DeadLetters, ensure_dlq
from hookstream.processors.errors import classify_error
from hookstream.processors.health import STALL_AFTER_S, Health
from hookstream.processors.lanes import Lane, Shared, lane_for
from hookstream.processors.offsets import OffsetTracker
from hookstream.processors.parking import FailurePolicy, RetryBook
from hookstream.processors.retry import Backoff
from hookstream.settings import Settings

# Bigger polls mean fewer fetch round trips and fewer ledger commits (measured: ~2x events/s over
# 500). A short fetch wait: a poll loop waiting on idle partitions still commits finished offsets soon.
CONSUMER_DEFAULTS: dict[str, Any] = {"max_poll_records": 2000, "fetch_max_wait_ms": 100}
IDLE_POLL_S = 0.5  # longest poll wait: bounds how late SIGTERM and finished offsets are noticed
MAX_IN_FLIGHT = 10_000  # records fetched and not finished (parked keys' queues included): pause fetching
PARKED_STUCK_S = 60.0  # a parked key this far past its resume time makes /healthz report unhealthy
POSTGRES_LANES = 8  # default lanes on Postgres: docs/benchmarks.md (more lanes, more connections); SQLite: 1


def default_api_factory(settings: Settings) -> Any:
    """The CryptoMate client the dispatcher sends with (`await client.send(request)`), built on its first command.

    One attempt per call (the dispatcher owns retries) and no per-process pacing: the dispatchers
    sharing the API key pace themselves through the ledger.
    """
    return importlib.import_module("hookstream.api.aio").AsyncCryptoMateClient.from_settings(
        settings, max_connections=settings.dispatch_concurrency)


def group_id(processor: str, settings: Settings) -> str:
    """`hookstream.NAME`, under the topic prefix: prefixed deployments never share a consumer group."""
    return settings.topic(f"hookstream.{processor}")


def lane_count(processor: Processor, settings: Settings, database_url: str) -> int:
    """HOOKSTREAM_PROCESSOR_CONCURRENCY, else the processor class's `concurrency`, else per backend."""
    if settings.processor_concurrency is not None:
        return settings.processor_concurrency
    if getattr(processor, "concurrency", None):
        return int(processor.concurrency)  # type: ignore[attr-defined]
    return 1 if make_url(database_url).get_backend_name() == "sqlite" else POSTGRES_LANES


class _Rebalance(ConsumerRebalanceListener):
    """kafka-python 3 calls these on its IO thread, inside `poll()`: they must not block (no commit —
    it raises "Cannot block on net.run() from the IO thread" —, no waiting for the lanes)."""

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
        consumer_overrides: dict[str, Any] | None = None, settle_heap: bool = False,
    ) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.ledger = ledger
        self.health = health or Health()
        self.clock = clock
        self.backoff = Backoff(settings.retry_initial_s, settings.retry_max_s, settings.retry_max_attempts)
        self.topics = [settings.topic(t) for t in processor.topics]
        self.lanes_wanted = lane_count(processor, settings, settings.database_url)
        self.log = get_logger("hookstream.processor", processor=self.name)
        self._api_factory = api_factory
        self._dispatcher: Dispatcher | None = None
        self._consumer_overrides = consumer_overrides or {}
        self._settle_heap = settle_heap  # the CLI's process: freeze start-up's objects (hookstream.heap)
        self._stopping = False
        self._lanes_stop = threading.Event()
        self._ready = False
        self._consumer: KafkaConsumer | None = None
        self._lanes: list[Lane] = []
        self._tracker = OffsetTracker()
        self._throttled = False  # fetching paused: too many records in flight
        self._assigned: set[TopicPartition] = set()
        self._retries = RetryBook()  # failed records' attempts: they outlive a rebalance that gives the partition back
        self._resume_from: dict[TopicPartition, int] = {}  # revoked partitions' lowest unfinished offsets
        self._lag_labels: set[TopicPartition] = set()

    # --- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the lanes to finish the record in hand, commit, leave the group. Signal-safe."""
        self._stopping = True
        self._lanes_stop.set()

    @property
    def ready(self) -> bool:
        return self._ready

    def run(self) -> int:
        if self.ledger is None:
            from hookstream.ledger import Ledger

            # A connection per lane, one for the dispatcher and one spare (start-up checks).
            self.ledger = Ledger.from_settings(
                self.settings, pool_size=max(self.settings.database_pool_size, self.lanes_wanted + 2))
        started = self._start()
        if started is None:
            return 0  # asked to stop while waiting for the broker or the ledger
        consumer, producer = started
        if self._settle_heap:
            heap.settle()
        self.health.add_check(self._lanes_problem)
        if self._dispatcher is not None:
            self.health.add_check(lambda: None if self._dispatcher.alive() else "outbox dispatcher stopped")
        try:
            while not self._stopping:
                self.health.beat()
                batch = consumer.poll(timeout_ms=int(IDLE_POLL_S * 1000))
                for tp, records in batch.items():
                    self._tracker.started(tp, [r.offset for r in records])
                    self._hand_out(records)
                self._throttle()
                self._commit()
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
            dead_letters = DeadLetters(producer, dlq_topic, self.name)
            if self._api_factory is not None:
                factory = self._api_factory
                self._dispatcher = Dispatcher(self.name, self.settings, self.ledger,
                                              lambda: factory(self.settings), dead_letters).start()
                self._dispatcher.wake()  # commands a previous process committed but did not send
            self._start_lanes(dead_letters)
            self._consumer = consumer
            # Subscribe, then wait for the topics' metadata: that fetch also gives the coordinator its
            # metadata snapshot of the subscribed topics. The other way round, the first join (in poll)
            # may assign against an empty snapshot, and when the metadata arrives a moment later the
            # coordinator sees it "changed" and rebalances again, seconds after joining.
            consumer.subscribe(self.topics, listener=_Rebalance(self))
            self._await_topics(consumer)
            self.log.info("processor.joining", group=group_id(self.name, self.settings), topics=self.topics,
                          lanes=len(self._lanes))
            return consumer, producer
        return None

    def _start_lanes(self, dead_letters: DeadLetters) -> None:
        dispatcher = self._dispatcher
        shared = Shared(
            name=self.name, applier=Applier(self.processor, self.settings, can_send=dispatcher is not None),
            policy=FailurePolicy(self.processor, self.backoff, self._retries), ledger=self.ledger, tracker=self._tracker,
            dead_letters=dead_letters, log=self.log, event_types=self.processor.event_types,
            committed=(lambda _commands: dispatcher.wake()) if dispatcher is not None else (lambda _c: None),
            clock=self.clock, group=group_id(self.name, self.settings),
            tracer=tracing.tracer("hookstream.processor"),  # None: not exporting, no tracing work
        )
        self._lanes = [Lane(i, shared, self._lanes_stop) for i in range(self.lanes_wanted)]
        for lane in self._lanes:
            lane.start()

    def _sleep_unless_stopping(self, seconds: float) -> None:
        until = self.clock() + seconds
        while not self._stopping and self.clock() < until:
            self.health.beat()  # waiting for a dependency is not a stuck loop
            time.sleep(min(0.2, max(0.0, until - self.clock())))

    def _await_topics(self, consumer: KafkaConsumer, timeout_s: float = 30.0) -> None:
        # Joining before the topics' metadata is known yields an empty first assignment and an
        # immediate second rebalance; wait (bounded) so a process is ready with its partitions.
        # (A fresh consumer's metadata cache is empty, so the first call fetches from the broker.)
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
            self._lanes_stop.set()
            deadline = self.clock() + self.settings.processor_shutdown_timeout_s
            for lane in self._lanes:
                lane.join(timeout=max(0.0, deadline - self.clock()))
            self._commit()  # what the lanes finished; records still queued are redelivered
        finally:
            if self._dispatcher is not None:
                self._dispatcher.stop()
            # close() leaves the group, so partitions move to the other processes at once.
            consumer.close(autocommit=False, timeout_ms=5000)
            producer.close(timeout=5)
            self.log.info("processor.stopped", committed="all finished")

    # --- the poll loop --------------------------------------------------------------------------
    def _hand_out(self, records: list[Any]) -> None:
        """Each record to the lane of its key, in fetch order (so one key's records stay in order)."""
        n = len(self._lanes)
        if n == 1:
            self._lanes[0].submit(records)
            return
        shares: dict[int, list[Any]] = {}
        for record in records:
            shares.setdefault(lane_for(record, n), []).append(record)
        for index, share in shares.items():
            self._lanes[index].submit(share)

    def _throttle(self) -> None:
        """Back-pressure: stop fetching while too many records wait in the lanes (a parked key's too)."""
        assert self._consumer is not None
        in_flight = self._tracker.in_flight()
        if not self._throttled and in_flight > MAX_IN_FLIGHT:
            self._throttled = True
            self._consumer.pause(*self._assigned)
            self.log.info("processor.fetch_paused", in_flight=in_flight)
        elif self._throttled and in_flight < MAX_IN_FLIGHT // 2:
            self._throttled = False
            self._consumer.resume(*self._consumer.paused())
            self.log.info("processor.fetch_resumed", in_flight=in_flight)

    def _commit(self) -> None:
        points = self._tracker.commit_points()
        if not points or self._consumer is None:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in points.items()}
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # The group moved on (rebalance): the new owner redelivers from the last commit and the
            # inbox turns what we already applied into duplicates. Nothing is lost.
            self.log.warning("offsets.commit_failed", error=repr(exc), partitions=_names(list(offsets)))
            return
        self._retries.committed(points)

    def _lanes_problem(self) -> str | None:
        """Health: a dead lane, a lane stuck on one record, or a parked key long past its resume time."""
        now = self.clock()
        for lane in self._lanes:
            if lane.died is not None or not lane.is_alive() and not self._lanes_stop.is_set():
                return f"processing lane {lane.index} stopped: {lane.died}"
            in_hand = lane.in_hand
            if in_hand is not None and now - in_hand[1] > STALL_AFTER_S:
                record = in_hand[0]
                return (f"lane {lane.index} stuck for {now - in_hand[1]:.0f}s on "
                        f"{record.topic}:{record.partition}@{record.offset}")
            overdue = lane.overdue(now, PARKED_STUCK_S)
            if overdue:
                (topic, partition, _key), late = overdue[0]
                return f"{len(overdue)} parked key(s) past their resume time, e.g. on {topic}:{partition} by {late:.0f}s"
        return None

    # --- rebalance ------------------------------------------------------------------------------
    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        # On kafka-python's IO thread, inside poll(): nothing here blocks. The lanes are told to drop
        # these partitions' records between their batches (not waited for), the tracker forgets them,
        # and NO offset is committed here — a blocking commit cannot run on this thread, and committing
        # later from the poll loop could move a partition's offset back after its new owner committed
        # further. The poll loop commits after every poll, so what is finished but uncommitted is at
        # most one loop's work: the next owner (or this process, if the partition comes back) fetches
        # it again from the committed offset, and the inbox claim makes each record a duplicate. A
        # record a lane still has in hand finishes in its batch; the new owner's claim of it waits for
        # that transaction and then sees a duplicate. Failed records keep their attempts in `_retries`.
        gone = set(revoked)
        for lane in self._lanes:
            if lane.is_alive():
                lane.release(gone)
        # If the group hands a partition back, kafka-python keeps its fetch position, past the records
        # the lanes dropped (a parked key's, queued ones): fetching resumes from the lowest unfinished.
        self._resume_from.update(self._tracker.resume_points(revoked))
        self._tracker.forget(revoked)
        for tp in revoked:
            self._assigned.discard(tp)
            if tp in self._lag_labels:
                self._lag_labels.discard(tp)
                metrics.consumer_lag.remove(self.name, tp.topic, str(tp.partition))
        self.log.info("partitions.revoked", partitions=_names(revoked))

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        self._assigned = set(assigned)
        if self._consumer is not None:
            for tp in assigned:
                offset = self._resume_from.get(tp)
                if offset is not None:
                    self._consumer.seek(tp, offset)  # the local fetch position only: no I/O on this thread
        self._resume_from.clear()  # partitions that went elsewhere resume from the committed offset there
        self._retries.keep_only(assigned)
        self._throttled = False  # a new assignment starts fetching; the next loop re-applies the bound
        self.log.info("partitions.assigned", partitions=_names(assigned))
        if not self._ready:
            self._ready = True
            self.log.info("processor.ready", group=group_id(self.name, self.settings), partitions=_names(assigned))

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


def _names(tps: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in tps)
