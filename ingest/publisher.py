"""Durable publish from asyncio: kafka-python's producer bridged to awaitables, never blocking the loop."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from hookstream import metrics
from hookstream.kafka import make_producer
from hookstream.logs import get_logger
from hookstream.settings import Settings

log = get_logger(__name__)

Headers = list[tuple[str, bytes]]


class PublishError(Exception):
    """The broker did not acknowledge the record (in time)."""


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    partition: int
    offset: int


class Publisher:
    """Sends records with acks=all and resolves an asyncio future once the broker has them.

    The producer is created off the event loop (its constructor blocks until a broker answers),
    and `send()` runs on the loop only while the topic's metadata is cached — otherwise it can
    block for metadata, so it goes to a single sender thread.
    """

    def __init__(self, settings: Settings, factory: Callable[..., KafkaProducer] = make_producer) -> None:
        self._settings = settings
        self._factory = factory
        self._producer: KafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookstream-send")
        self._connector: threading.Thread | None = None
        self._closing = threading.Event()
        self._connected = threading.Event()
        # Completions from Kafka's I/O thread are handed to the loop in batches: one wakeup per batch.
        self._done: collections.deque[tuple[asyncio.Future[Published], Any, BaseException | None]] = (
            collections.deque()
        )
        self._drain_pending = False

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._connector = threading.Thread(target=self._connect, name="hookstream-connect", daemon=True)
        self._connector.start()

    def _connect(self) -> None:
        delay = 0.2
        while not self._closing.is_set() and self._producer is None:
            try:
                self._producer = self._factory(self._settings, role="ingest")
                self._connected.set()
                log.info("kafka.producer.connected", bootstrap=self._settings.kafka_bootstrap)
            except KafkaError as exc:
                log.warning("kafka.producer.unavailable", error=type(exc).__name__, retry_in_s=delay)
                self._closing.wait(delay)
                delay = min(delay * 2, 5.0)

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=timeout)
            except KafkaError as exc:
                log.error("kafka.producer.flush_failed", error=type(exc).__name__)
            producer.close(timeout=timeout)
        self._slow.shutdown(wait=False, cancel_futures=True)

    # --- publishing --------------------------------------------------------------------------
    async def publish(self, topic: str, value: bytes, key: bytes | None, headers: Headers,
                      timeout: float) -> Published:
        """Resolve when the broker acknowledged the record; PublishError otherwise (incl. timeout)."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Published] = loop.create_future()
        started = time.perf_counter()
        producer = self._producer
        if producer is not None and producer._metadata.partitions_for_topic(topic) is not None:
            self._send(producer, future, topic, value, key, headers)
        else:
            self._slow.submit(self._send_slow, future, topic, value, key, headers, started + timeout)
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise PublishError(f"no broker acknowledgement within {timeout:.3f}s") from None
        metrics.publish_seconds.labels(topic).observe(time.perf_counter() - started)
        return result

    def _send_slow(self, future: asyncio.Future[Published], topic: str, value: bytes,
                   key: bytes | None, headers: Headers, deadline: float) -> None:
        if future.done():  # the request already gave up: do not add a late duplicate
            return
        if self._producer is None:  # still bootstrapping: wait for it within this record's time
            self._connected.wait(max(deadline - time.perf_counter(), 0))
        producer = self._producer
        if producer is None:
            self._resolve(future, None, PublishError("not connected to Kafka"))
            return
        remaining_ms = int((deadline - time.perf_counter()) * 1000)
        if remaining_ms <= 0:
            return
        try:
            # bounded wait for this topic's metadata (send() would wait max_block_ms)
            producer._wait_on_metadata(topic, remaining_ms)
        except KafkaError as exc:
            self._resolve(future, None, PublishError(f"no metadata for {topic}: {type(exc).__name__}"))
            return
        self._send(producer, future, topic, value, key, headers)

    def _send(self, producer: KafkaProducer, future: asyncio.Future[Published], topic: str,
              value: bytes, key: bytes | None, headers: Headers) -> None:
        try:
            sent = producer.send(topic, value=value, key=key, headers=headers)
        except (KafkaError, ValueError, TypeError) as exc:
            self._resolve(future, None, PublishError(f"send failed: {type(exc).__name__}: {exc}"))
            return
        sent.add_callback(self._on_ack, future)
        sent.add_errback(self._on_error, future)

    def _on_ack(self, future: asyncio.Future[Published], metadata: Any) -> None:
        self._resolve(future, Published(metadata.topic, metadata.partition, metadata.offset), None)

    def _on_error(self, future: asyncio.Future[Published], exc: BaseException) -> None:
        self._resolve(future, None, PublishError(f"{type(exc).__name__}: {exc}"))

    def _resolve(self, future: asyncio.Future[Published], result: Any, exc: BaseException | None) -> None:
        self._done.append((future, result, exc))
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
        while done:
            future, result, exc = done.popleft()
            if future.done():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
