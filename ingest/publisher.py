"""Durable publish from asyncio: kafka-python's producer bridged to awaitables, never blocking the loop."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from hookstream import metrics
from hookstream.kafka import KafkaUnavailable, check_connection, make_producer, wedged
from hookstream.logs import get_logger
from hookstream.settings import Settings

log = get_logger(__name__)

Headers = list[tuple[str, bytes]]

_METADATA_RETRY_S = 0.05  # how often records parked for topic metadata are looked at again
CONNECT_CHECK_S = 10.0  # bound on the start-up connection check (TCP, TLS, SASL)


class PublishError(Exception):
    """The broker did not acknowledge the record (in time)."""


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    partition: int
    offset: int


class _Record:
    __slots__ = ("topic", "value", "key", "headers", "future", "late")

    def __init__(self, topic: str, value: bytes, key: bytes | None, headers: Headers,
                 future: asyncio.Future[Published], late: Callable[[], None] | None) -> None:
        self.topic, self.value, self.key, self.headers, self.future = topic, value, key, headers, future
        self.late = late


class Publisher:
    """Sends records with acks=all and resolves an asyncio future once the broker has them.

    Requests hand their records to a queue; once per loop iteration every queued record goes to
    `KafkaProducer.send()` (appends to in-memory batches, no I/O) and kafka-python's sender thread is
    woken once. `send()` would block for a topic's metadata, so a record whose topic is not known
    yet waits on the loop (metadata is requested, never awaited by a thread) until its deadline.
    The producer is built by a short-lived thread (its constructor waits for a broker) that ends once
    it is connected: in steady state the only other thread is kafka-python's sender.
    """

    def __init__(self, settings: Settings, factory: Callable[..., KafkaProducer] = make_producer) -> None:
        self._settings = settings
        self._factory = factory
        self._producer: KafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connector: threading.Thread | None = None
        self._closing = threading.Event()
        self._topics: tuple[str, ...] = ()
        self._topics_added_ms = float("inf")
        self._queue: list[_Record] = []
        self._parked: list[_Record] = []  # waiting for their topic's metadata
        self._flush_scheduled = False
        self._batching = False
        self._publish_seconds: dict[str, Any] = {}
        # Completions from Kafka's I/O thread are handed to the loop in batches: one wakeup per batch.
        self._done: collections.deque[tuple[_Record, Any, BaseException | None]] = (
            collections.deque()
        )
        self._drain_pending = False
        self.in_flight = 0  # records handed to the producer and not yet acknowledged or failed
        self._unacked_since: float | None = None  # first send after the last broker ack
        self._wedged_since: float | None = None
        self._connected_since: float | None = None
        self.unavailable: str | None = None  # why the producer cannot connect (one line), while it cannot

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, topics: Iterable[str] = ()) -> None:
        """Connect in the background; `topics` are the routed ones (metadata fetched up front)."""
        self._loop = loop
        self._topics = tuple(topics)
        self._connector = threading.Thread(target=self._connect, name="hookstream-connect", daemon=True)
        self._connector.start()

    def _connect(self) -> None:
        delay = 0.2
        while not self._closing.is_set() and self._producer is None:
            try:
                # kafka-python retries a refused login or certificate for its whole bootstrap timeout and then
                # says only "NoBrokersAvailable": the check names the failed step (TCP, TLS, SASL) in one line
                check_connection(self._settings, timeout=CONNECT_CHECK_S)
                producer = self._factory(self._settings, role="ingest")
            except (KafkaUnavailable, KafkaError) as exc:
                reason = str(exc) if isinstance(exc, KafkaUnavailable) else type(exc).__name__
                if reason != self.unavailable:  # one line per cause, not one per retry
                    log.error("kafka.producer.unavailable", reason=reason, retry_in_s=delay)
                self.unavailable = reason
                self._closing.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._coalesce_wakeups(producer)
            for topic in self._topics:
                producer._metadata.add_topic(topic)
            self._topics_added_ms = time.monotonic() * 1000  # kafka-python's clock for refreshes
            producer._sender.wakeup()
            self._producer = producer
            self.unavailable = None
            log.info("kafka.producer.connected", bootstrap=self._settings.kafka_bootstrap)

    def _coalesce_wakeups(self, producer: KafkaProducer) -> None:
        """send() wakes the sender (a syscall) for each new batch; a loop iteration's sends wake it once."""
        sender = producer._sender
        wake = sender.wakeup

        def wakeup() -> None:
            if not self._batching:
                wake()

        sender.wakeup = wakeup

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def close(self, timeout: float = 5.0) -> None:
        """Flush and close within about 2 × `timeout` (kafka-python: flush, then join its sender)."""
        self._closing.set()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except KafkaError as exc:  # flush timed out (broker down): kafka-python skips its force close
                log.warning("kafka.producer.close_incomplete", error=type(exc).__name__)
                producer._sender.force_close()

    # --- state for the probes ----------------------------------------------------------------
    def missing_topics(self) -> list[str]:
        """Routed topics the broker's metadata does not have (once a refresh asked for them)."""
        producer = self._producer
        if producer is None or producer._metadata._last_successful_refresh_ms <= self._topics_added_ms:
            return []
        return [t for t in self._topics if producer._metadata.partitions_for_topic(t) is None]

    def broker_connected(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        return any(conn.connected for conn in list(producer._sender._client._manager._conns.values()))

    def wedged(self) -> bool:
        producer = self._producer
        return producer is not None and wedged(producer)

    def stalled(self, after_s: float) -> str | None:
        """Why no progress is possible while work waits (a restart is the cure), else None.

        Either kafka-python's own dead end (idempotent, READY, no producer id) held for `after_s`,
        or records waiting `after_s` for an ack although a broker connection is up.
        """
        producer = self._producer
        if producer is None:
            return None
        now = time.monotonic()
        if wedged(producer):
            self._wedged_since = self._wedged_since or now
            if now - self._wedged_since > after_s:
                return "kafka producer cannot send again by itself (fatal error, or no producer id and none requested)"
        else:
            self._wedged_since = None
        if not self.broker_connected():
            self._connected_since = None
            return None
        self._connected_since = self._connected_since or now
        since = self._unacked_since
        if self.in_flight and since is not None:
            waited = now - max(since, self._connected_since)  # an outage is not a stall: count from reconnect
            if waited > after_s:
                return f"no broker acknowledgement for {waited:.0f}s while records wait and the broker is connected"
        return None

    def has_producer_id(self) -> bool:
        producer = self._producer
        manager = producer._transaction_manager if producer is not None else None
        return manager is None or manager.has_producer_id()

    # --- publishing --------------------------------------------------------------------------
    async def publish(self, topic: str, value: bytes, key: bytes | None, headers: Headers,
                      timeout: float, late_ack: Callable[[], None] | None = None) -> Published:
        """Resolve when the broker acknowledged the record; PublishError otherwise (incl. timeout).

        A record that timed out may still be acknowledged afterwards; `late_ack` is then called on the
        loop (the caller that kept the record elsewhere can drop that copy).
        """
        loop = self._loop
        assert loop is not None, "Publisher.start() first"
        future: asyncio.Future[Published] = loop.create_future()
        started = time.perf_counter()
        self._queue.append(_Record(topic, value, key, headers, future, late_ack))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        timer = loop.call_later(timeout, _expire, future, timeout)
        try:
            result = await future
        finally:
            timer.cancel()
        observe = self._publish_seconds.get(topic)
        if observe is None:
            observe = self._publish_seconds[topic] = metrics.publish_seconds.labels(topic).observe
        observe(time.perf_counter() - started)
        return result

    def _flush(self) -> None:
        """Hand every queued (and parked) record to the producer; wake its sender once."""
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        if self._parked:
            batch, self._parked = self._parked + batch, []
        producer = self._producer
        if producer is None:  # still connecting: wait within each record's own deadline
            self._park([r for r in batch if not r.future.done()])
            return
        known = producer._metadata.partitions_for_topic
        parked: list[_Record] = []
        sent = 0
        self._batching = True
        try:
            for record in batch:
                if record.future.done():  # the request already gave up: do not add a late duplicate
                    continue
                if known(record.topic) is None:
                    parked.append(record)
                    continue
                self._send(producer, record)
                sent += 1
        finally:
            self._batching = False
        if parked:
            for topic in {r.topic for r in parked}:
                producer._metadata.add_topic(topic)
            producer._metadata.request_update()
            self._park(parked)
            sent += 1  # wake the sender for the metadata request
        if sent:
            producer._sender.wakeup()

    def _park(self, records: list[_Record]) -> None:
        if not records:
            return
        first = not self._parked
        self._parked.extend(records)
        if first:
            assert self._loop is not None
            self._loop.call_later(_METADATA_RETRY_S, self._retry_parked)

    def _retry_parked(self) -> None:
        if self._parked and not self._flush_scheduled:
            self._flush_scheduled = True
            self._flush()

    def _send(self, producer: KafkaProducer, record: _Record) -> None:
        try:
            sent = producer.send(record.topic, value=record.value, key=record.key, headers=record.headers)
        except (KafkaError, ValueError, TypeError) as exc:
            record.future.set_exception(PublishError(f"send failed: {type(exc).__name__}: {exc}"))
            return
        self.in_flight += 1
        if self._unacked_since is None:
            self._unacked_since = time.monotonic()
        sent.add_callback(self._on_ack, record)
        sent.add_errback(self._on_error, record)

    def _on_ack(self, record: _Record, metadata: Any) -> None:
        self._resolve(record, Published(metadata.topic, metadata.partition, metadata.offset), None)

    def _on_error(self, record: _Record, exc: BaseException) -> None:
        self._resolve(record, None, PublishError(f"{type(exc).__name__}: {exc}"))

    def _resolve(self, record: _Record, result: Any, exc: BaseException | None) -> None:
        self._done.append((record, result, exc))
        if not self._drain_pending:
            self._drain_pending = True
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _drain(self) -> None:
        self._drain_pending = False
        done = self._done
        acked = False
        while done:
            record, result, exc = done.popleft()
            future = record.future
            self.in_flight -= 1
            if exc is None:
                acked = True
            if future.done():
                if exc is None and record.late is not None:
                    record.late()
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        if self.in_flight == 0:
            self._unacked_since = None
        elif acked:
            self._unacked_since = time.monotonic()


def _expire(future: asyncio.Future[Published], timeout: float) -> None:
    if not future.done():
        future.set_exception(PublishError(f"no broker acknowledgement within {timeout:.3f}s"))
