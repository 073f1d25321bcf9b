"""Processor tests: deposits into the real broker, `hookstream process` subprocesses, the real ledger."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import TopicPartition
from sqlalchemy import text

from fixtures.feed import Feed, upgrade_ledger
from fixtures.processes import Proc, Processes
from fixtures.waiting import wait_until
from hookstream.kafka import ensure_topics, make_admin
from hookstream.ledger.engine import SQLITE_BEGIN, make_engine
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import DEPOSITS, TOPICS, dedup_key
from hookstream.settings import Settings

TESTS_DIR = Path(__file__).resolve().parents[1]
SAMPLE = "test_processors.sample:SampleProcessor"
DECIDING = "test_processors.deciding:DecidingSample"  # the same credits through decide(event, view) -> Effects



def deposit(op: str, wallet: str = "wal_1", amount: str = "10.00", **extra: Any) -> bytes:
    data = {"wallet_id": wallet, "amount": amount, "blockchain": "polygon", **extra}
    return json.dumps({"product": "virtual_wallets", "event_type": "deposit", "operation_id": op,
                       "status": "success", "data": data}).encode()



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
    upgrade_ledger(ledger_url)
    return s



def env_for(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **settings.to_env(),
        "HOOKSTREAM_PROCESSOR_HTTP_PORT": "0",
        "PYTHONPATH": str(TESTS_DIR),
        "SAMPLE_ATTEMPTS_FILE": str(tmp_path / "attempts.txt"),
        "SAMPLE_BROKEN_FILE": str(tmp_path / "broken"),
        **extra,
    }


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
    def start(settings: Settings, name: str = "sample", spec: str = SAMPLE, **extra: str) -> Running:
        proc = processes.start(["process", spec], env_for(settings, tmp_path, **extra), name=name,
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
