"""Processor tests: deposits into the real broker, `hookstream process` subprocesses, the real ledger."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer, TopicPartition
from sqlalchemy import text

from fixtures.processes import Proc, Processes
from hookstream.kafka import ensure_topics, make_admin, make_producer
from hookstream.ledger import Ledger
from hookstream.ledger.engine import SQLITE_BEGIN, make_engine
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import DEPOSITS, TOPICS, dedup_key
from hookstream.settings import Settings

TESTS_DIR = Path(__file__).resolve().parents[1]
SAMPLE = "processors.sample:SampleProcessor"
GROUP = "hookstream.sample"


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `condition` until truthy (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def deposit(op: str, wallet: str = "wal_1", amount: str = "10.00", **extra: Any) -> bytes:
    data = {"wallet_id": wallet, "amount": amount, "blockchain": "polygon", **extra}
    return json.dumps({"product": "virtual_wallets", "event_type": "deposit", "operation_id": op,
                       "status": "success", "data": data}).encode()


class Feed:
    """Publishes webhook bodies as the receiver does: body as value, metadata in headers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(DEPOSITS)
        self.producer: KafkaProducer = make_producer(settings, role="test-feed")

    def send(self, body: bytes, partition: int | None = None, key: bytes | None = None) -> int:
        env = parse_envelope(body)
        headers = [(h.DEDUP_KEY, dedup_key(env).encode()),
                   (h.RECEIVED_AT, str(int(time.time() * 1000)).encode()),
                   (h.TRACE_ID, b"trace-test")]
        key = key if key is not None else str(env.data.get("wallet_id")).encode()
        return self.producer.send(self.topic, value=body, key=key, partition=partition,
                                  headers=headers).get(timeout=30).offset

    def close(self) -> None:
        self.producer.close(timeout=5)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Short retry delays so retry tests take seconds; one replay before the loop guard refuses."""
    s = make_settings(retry_initial_s=0.3, retry_max_s=5.0, retry_max_attempts=6, dlq_max_replays=1,
                      processor_shutdown_timeout_s=10.0)
    ensure_topics(s, list(TOPICS))
    return s


@pytest.fixture
def ledger_settings(settings: Settings, ledger_url: str) -> Settings:
    """`settings` on the SQLite and the Postgres ledger, schema upgraded (as `hookstream db upgrade`)."""
    s = settings.model_copy(update={"database_url": ledger_url})
    ledger = Ledger(ledger_url)
    try:
        ledger.upgrade()
    finally:
        ledger.close()
    return s


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    f = Feed(settings)
    try:
        yield f
    finally:
        f.close()


def env_for(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "HOOKSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HOOKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKSTREAM_DATABASE_URL": settings.database_url,
        "HOOKSTREAM_PROCESSOR_HTTP_PORT": "0",
        "HOOKSTREAM_RETRY_INITIAL_S": str(settings.retry_initial_s),
        "HOOKSTREAM_RETRY_MAX_S": str(settings.retry_max_s),
        "HOOKSTREAM_RETRY_MAX_ATTEMPTS": str(settings.retry_max_attempts),
        "HOOKSTREAM_DLQ_MAX_REPLAYS": str(settings.dlq_max_replays),
        "HOOKSTREAM_PROCESSOR_SHUTDOWN_TIMEOUT_S": str(settings.processor_shutdown_timeout_s),
        "PYTHONPATH": str(TESTS_DIR),
        "SAMPLE_ATTEMPTS_FILE": str(tmp_path / "attempts.txt"),
        "SAMPLE_BROKEN_FILE": str(tmp_path / "broken"),
    }
    env.update(extra)
    return env


@dataclass
class Running:
    proc: Proc
    port: int

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def outcome(self, outcome: str) -> float:
        found = re.search(
            rf'hookstream_processed_total\{{outcome="{outcome}",processor="sample"\}} ([0-9.e+]+)',
            self.metrics())
        return float(found.group(1)) if found else 0.0

    def log_events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.proc.output().splitlines():
            if f'"{event}"' in line and line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture
def start_sample(processes: Processes, tmp_path: Path) -> Callable[..., Running]:
    def start(settings: Settings, name: str = "sample", **extra: str) -> Running:
        proc = processes.start(["process", SAMPLE], env_for(settings, tmp_path, **extra), name=name,
                               ready_text='"processor.ready"', timeout=60)
        line = next(ln for ln in proc.output().splitlines() if '"processor.http"' in ln)
        return Running(proc, int(json.loads(line)["port"]))

    return start


def query(database_url: str, sql: str, **params: Any) -> list[Any]:
    """Read the ledger the way an auditor would: plain SQL, a read-only (deferred) transaction."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def effects(database_url: str) -> Counter[str]:
    """Postings per event (memo = dedup key) in the ledger."""
    return Counter(r[0] for r in query(database_url, "SELECT memo FROM postings"))


def attempts(tmp_path: Path) -> list[tuple[str, int, float, int]]:
    path = tmp_path / "attempts.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        op, attempt, at, pid = line.split()
        out.append((op, int(attempt), float(at), int(pid)))
    return out


def committed(settings: Settings, processor: str = "sample") -> dict[int, int]:
    """The group's committed offsets on the deposits topic, by partition."""
    from hookstream.processors.runtime import group_id

    group = group_id(processor, settings)
    admin = make_admin(settings)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    topic = settings.topic(DEPOSITS)
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0}


def sample_key(op: str) -> str:
    return dedup_key(parse_envelope(deposit(op)))


__all__ = ["TopicPartition", "wait_until", "deposit", "Feed", "effects", "attempts", "committed",
           "sample_key", "Running"]
