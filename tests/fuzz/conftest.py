"""Fuzz wiring: one receiver per test on the real broker, watched by probes while hostile input flows."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings
from test_ingest.conftest import KEY, Receiver, start_receiver  # noqa: F401  (fixture re-exported)
from test_ingest.payloads import card_txn, envelope

# CI size by default; HOOKSTREAM_FUZZ_CASES=10000 for the full size (docs/reliability.md).
CASES = int(os.environ.get("HOOKSTREAM_FUZZ_CASES", "300"))
PLATFORM_DEADLINE_S = 1.2  # authorizations (platform reference §1.1)
PROBE_DEADLINE_S = 1.0  # health probes, issue 15
RSS_GROWTH_BOUND = 128 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Watch:
    """Health probes and canary authorizations sent throughout, each with its slowest answer."""

    receiver: Receiver
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    probe_slowest: float = 0.0
    canaries: int = 0
    canary_failures: list[str] = field(default_factory=list)
    canary_slowest: float = 0.0
    canary_bodies: list[bytes] = field(default_factory=list)
    slow_windows: list[tuple[float, float]] = field(default_factory=list)  # monotonic (start, end)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _probe_loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.1):
                started = time.perf_counter()
                try:
                    status = client.get(f"{self.receiver.base}/healthz").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                seconds = time.perf_counter() - started
                self.probes += 1
                self.probe_slowest = max(self.probe_slowest, seconds)
                if status != 200 or seconds >= PROBE_DEADLINE_S:
                    self.probe_failures.append(f"/healthz {status} in {seconds:.3f}s")
                    self.slow_windows.append((time.monotonic() - seconds, time.monotonic()))

    def _canary_loop(self) -> None:
        headers = {"content-type": "application/json", "X-Webhook-Key": KEY}
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.25):
                body = envelope("cards", "authorization", "pending", f"canary-{self.canaries}",
                                card_txn("crd_canary", "1.00"))
                started = time.perf_counter()
                try:
                    response = client.post(self.receiver.url, content=body, headers=headers)
                    ok = response.status_code == 200 and bool(response.json().get("response_code"))
                    status = response.status_code
                except httpx.HTTPError as exc:
                    ok, status = False, type(exc).__name__
                seconds = time.perf_counter() - started
                self.canaries += 1
                self.canary_bodies.append(body)
                self.canary_slowest = max(self.canary_slowest, seconds)
                if not ok or seconds >= PLATFORM_DEADLINE_S:
                    self.canary_failures.append(f"authorization {status} in {seconds:.3f}s")
                    self.slow_windows.append((time.monotonic() - seconds, time.monotonic()))

    def __enter__(self) -> Watch:
        self._threads = [threading.Thread(target=t, daemon=True) for t in (self._probe_loop, self._canary_loop)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def assert_kept_promises(self) -> None:
        assert self.probes > 0 and self.canaries > 0
        assert self.probe_failures == [], f"{len(self.probe_failures)} slow/failed probes: {self.probe_failures[:5]}"
        assert self.canary_failures == [], (
            f"{len(self.canary_failures)} authorizations delayed: {self.canary_failures[:5]}")


def read_all_topics(settings: Settings, expect: int, timeout: float = 60.0) -> list[bytes]:
    """Every record value on this test's topics, read until `expect` are there (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=500, max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        tps = []
        for logical in TOPICS:
            topic = settings.topic(logical)
            parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        idle_polls = 0
        while time.monotonic() < deadline and (len(values) < expect or idle_polls < 2):
            batches = consumer.poll(timeout_ms=500)
            fresh = [m.value for batch in batches.values() for m in batch]
            idle_polls = 0 if fresh else idle_polls + 1
            values.extend(fresh)
        return values
    finally:
        consumer.close()


@pytest.fixture
def fuzz_receiver(settings, start_receiver) -> Iterator[Receiver]:
    yield start_receiver(settings, HOOKSTREAM_LOG_LEVEL="info")


@pytest.fixture
def all_records(settings) -> Callable[[int], list[bytes]]:
    return lambda expect: read_all_topics(settings, expect)
