"""Broker restarts under steady load: the receiver recovers by itself and loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import Counter, defaultdict

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from fixtures.http_load import PacedResult, post_paced
from fixtures.waiting import wait_until
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import NEVER_RETRIED, TOPICS
from hookstream.settings import Settings
from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, envelope

# requests/s, every event kind in turn; 100 is what a shared 2-core machine sustains beside a restarting broker
RATE = int(os.environ.get("HOOKSTREAM_TEST_RESTART_RATE", "100"))
OUTAGE_S = 8.0  # longer than delivery timeout + 1 s: the outage that wedged kafka-python 3.0's producer
DELIVERY_TIMEOUT_S = 2.0
BUDGET_S = 0.8
PLATFORM_DEADLINE_S = 1.2
# the receiver's loop thread (or the load generator's) waited for a CPU this share of a late answer's window
STARVED_SHARE = 0.25


def _bodies(count: int) -> list[tuple[str, str, str, bytes]]:
    """(event_type, topic, operation_id, body) cycling through every kind in the catalogue."""
    out = []
    for i in range(count):
        product, event_type, status, _, data, topic, _ = CATALOG[i % len(CATALOG)]
        op = f"rs-{i:06d}"
        out.append((event_type, topic, op, envelope(product, event_type, status, op, data)))
    return out


@pytest.mark.timeout(1200)  # three broker start-ups, each up to a minute on a busy 2-core machine
def test_three_broker_restarts_under_load_recover_by_themselves_and_lose_nothing_acknowledged(
    own_broker, tmp_path, start_receiver
):
    settings = Settings(kafka_bootstrap=own_broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                        topic_partitions=3, spool_dir=tmp_path / "spool", webhook_keys=KEY,
                        database_url=f"sqlite:///{tmp_path / 'ledger.db'}", delivery_timeout_s=DELIVERY_TIMEOUT_S)
    ensure_topics(settings, list(TOPICS))
    receiver = start_receiver(settings, HOOKSTREAM_AUTHORIZATION_BUDGET_MS=str(int(BUDGET_S * 1000)))
    port = int(receiver.url.split(":")[2].split("/")[0])

    warmup_s, settle_s = 5.0, 12.0
    duration = warmup_s + 3 * (OUTAGE_S + settle_s + 90.0)  # + broker start-up time, generously
    items = _bodies(int(RATE * duration))
    outcome: dict[str, PacedResult] = {}
    stop_sending = threading.Event()

    load_thread: list[int] = []

    def load() -> None:
        # open loop at RATE; the harness below stops early once three cycles are done
        load_thread.append(threading.get_native_id())
        bodies = [body for _, _, _, body in items]
        outcome["result"] = asyncio.run(post_paced(
            "127.0.0.1", port, "/webhooks/cryptomate", bodies,
            {"X-Webhook-Key": KEY, "Content-Type": "application/json"},
            rate=RATE, connections=32, timeout=30.0, stop=stop_sending))

    sender = threading.Thread(target=load, name="load")
    sender.start()
    wait_until(lambda: bool(load_thread), "the load generator to start", timeout=10, every=0.01)
    starvation = Starvation(receiver.proc.pid)  # the receiver's event loop
    generator = Starvation(os.getpid(), load_thread[0])  # the load generator, which reads the answers
    starvation.start()
    generator.start()
    returns: list[float] = []
    health: list[int] = []
    ready_reasons: set[str] = set()
    try:
        time.sleep(warmup_s)
        for _ in range(3):
            own_broker.stop()
            down_until = time.monotonic() + OUTAGE_S
            while time.monotonic() < down_until:
                health.append(_probe(receiver.base, "healthz").status_code)
                ready = _probe(receiver.base, "readyz")
                if ready.status_code == 503:
                    ready_reasons.add(ready.json().get("reason", ""))
                time.sleep(1.0)
            own_broker.start()
            returns.append(time.time())
            last: list[httpx.Response] = []
            try:
                wait_until(lambda: last.append(_probe(receiver.base, "readyz")) or last[-1].status_code == 200,
                           "the receiver to be ready again", timeout=120, every=1.0)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: last /readyz {last[-1].status_code} {last[-1].text}") from None
            settled = time.monotonic() + settle_s
            while time.monotonic() < settled:
                health.append(_probe(receiver.base, "healthz").status_code)
                time.sleep(1.0)
    finally:
        stop_sending.set()
        sender.join(timeout=120)
        starvation.stop.set()
        generator.stop.set()
    result = outcome["result"]
    sent = result.sent
    items = items[:sent]

    # liveness never failed (an outage is not a stall; 0 = the probe queued behind the load, timed out)
    assert health and 503 not in health and health.count(200) > len(health) // 2
    assert "no connection to a kafka broker" in ready_reasons

    # every request got an answer; 503 only for events the platform retries
    statuses = result.statuses[:sent]
    # 0 = no answer within 30 s or a connection error: the load generator's backlog on a starved machine
    unanswered = Counter(event_type for (event_type, *_), status in zip(items, statuses) if status == 0)
    assert sum(unanswered.values()) < 0.01 * sent, (Counter(statuses), unanswered)
    for (event_type, _, _, _), status in zip(items, statuses):
        assert status in (0, 200, 503), status
        if event_type in NEVER_RETRIED:
            assert status == 200, (event_type, Counter(statuses), unanswered)
    # every authorization answered inside the platform's deadline, with a response code
    auth = [i for i, (event_type, *_) in enumerate(items) if event_type == "authorization"]
    assert len(auth) > 100
    # Answered in time, as the platform sees it: measured by this load generator from each request's scheduled
    # time. On a shared 2-core machine an answer can be late because no CPU ran the receiver's event loop (or the
    # load generator); the receiver's own phases are logged when it runs over its budget (authorization.over_budget).
    # The promise checked: a late answer happens only while the receiver's loop thread or the load generator's
    # thread was starved of CPU (waiting on a run queue, /proc/PID/task/TID/schedstat), or because the load
    # generator wrote the request late: the receiver is charged from the moment the request was written.
    late = [i for i in auth if result.latencies[i] >= PLATFORM_DEADLINE_S]
    over_budget = {e["operation_id"]: e for e in _log_events(receiver.proc.output(), "authorization.over_budget")}
    unexplained = []
    for i in late:
        window = (result.sent_at[i], result.sent_at[i] + result.latencies[i])
        starved = max(starvation.share(*window), generator.share(*window))
        if starved < STARVED_SHARE and result.latencies[i] - result.send_lag[i] >= PLATFORM_DEADLINE_S:
            unexplained.append((items[i][2], round(result.latencies[i], 2), round(result.send_lag[i], 2),
                                round(starved, 2), over_budget.get(items[i][2])))
    print(f"authorizations: {len(auth)}, answered after {PLATFORM_DEADLINE_S}s as seen by the client: {len(late)} "
          f"(slowest {max(result.latencies[i] for i in auth):.2f}s; sent late by the load generator: "
          f"{sum(result.send_lag[i] >= PLATFORM_DEADLINE_S - BUDGET_S for i in late)}; over budget inside the "
          f"receiver: {sum(items[i][2] in over_budget for i in late)}); receiver loop thread waiting for a CPU "
          f"{starvation.share(starvation.first, starvation.last):.0%} of the run, the load generator's "
          f"{generator.share(generator.first, generator.last):.0%}; machine: {starvation.machine()}")
    assert not unexplained, ("late answers (op, latency, send lag, starved share, over_budget) while both had "
                             f"the CPU: {unexplained[:10]}")
    assert all(b'"response_code"' in result.answers[i] for i in auth)

    # 200 again within seconds of each return, for events the platform retries
    for returned in returns:
        answered = [result.sent_at[i] for i, ((event_type, *_), status) in enumerate(zip(items, statuses))
                    if status == 200 and event_type not in NEVER_RETRIED and result.sent_at[i] > returned]
        assert answered and min(answered) - returned < 10.0

    # the spool drains to 0 without a restart
    wait_until(lambda: not list(settings.spool_dir.glob("*.seg")), "the spool to drain", timeout=60)
    assert _metric(receiver.base, "hookstream_spool_depth") == 0.0
    assert _metric(receiver.base, "hookstream_spool_written_total") > 0  # the outages did spool

    # every acknowledged record is on Kafka
    acknowledged: dict[str, set[str]] = defaultdict(set)
    for (_, topic, op, _), status in zip(items, statuses):
        if status == 200:
            acknowledged[topic].add(op)
    for topic, ops in acknowledged.items():
        missing = _missing_from(settings, topic, ops, timeout=90)
        assert missing == set(), f"{len(missing)} acknowledged records missing from {topic}"
    assert receiver.proc.alive()


def _missing_from(settings: Settings, logical: str, ops: set[str], timeout: float) -> set[str]:
    """Read the topic from the start until every op is seen (duplicates are expected: at least once)."""
    topic = settings.topic(logical)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        missing = set(ops)
        while missing and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                missing.difference_update(json.loads(m.value)["operation_id"] for m in batch)
        return missing
    finally:
        consumer.close()


def _probe(base: str, path: str) -> httpx.Response:
    """A probe as the orchestrator sends it; a timeout (the loop busy with the backlog) is status 0."""
    try:
        return httpx.get(f"{base}/{path}", timeout=10)
    except httpx.TimeoutException:
        return httpx.Response(0, json={})


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


class Starvation(threading.Thread):
    """Samples how long one thread (by default a process's main thread: the receiver's event loop) waited on
    a CPU run queue (/proc/PID/task/TID/schedstat, second field, ns) and the machine's load, every 0.25 s."""

    def __init__(self, pid: int, tid: int | None = None) -> None:
        super().__init__(name="starvation", daemon=True)
        self.path = f"/proc/{pid}/task/{tid or pid}/schedstat"
        self.samples: list[tuple[float, float]] = []  # (wall time, cumulative run-queue wait s)
        self.loads: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with open(self.path) as f:
                    waited = int(f.read().split()[1]) / 1e9
                with open("/proc/loadavg") as f:
                    self.loads.append(float(f.read().split()[0]))
            except (OSError, ValueError, IndexError):
                return
            self.samples.append((time.time(), waited))
            self.stop.wait(0.25)

    @property
    def first(self) -> float:
        return self.samples[0][0]

    @property
    def last(self) -> float:
        return self.samples[-1][0]

    def share(self, start: float, end: float) -> float:
        """Share of [start, end] (widened to the samples around it) the thread spent waiting for a CPU."""
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or self.samples[-1:]
        (t0, w0), (t1, w1) = before[-1], after[0]
        return (w1 - w0) / (t1 - t0) if t1 > t0 else 0.0

    def machine(self) -> str:
        loads = sorted(self.loads)
        return (f"load average median {loads[len(loads) // 2]:.1f}, max {loads[-1]:.1f} on {os.cpu_count()} CPUs"
                if loads else "no samples")


def _log_events(output: str, event: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and f'"{event}"' in line]
