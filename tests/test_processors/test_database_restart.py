"""A Postgres restart in the middle of a stream: the processor keeps running, nothing is lost or doubled."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from fixtures.postgres import LocalPostgres, _admin
from hookstream.settings import Settings
from hookstream.ledger import Ledger
from test_processors.conftest import (
    DECIDING, SAMPLE, Feed, committed, deposit, effects, sample_key, upgrade_ledger, wait_until,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_postgres() -> Iterator[tuple[LocalPostgres, str]]:
    """A server of its own: halting the shared one would fail other tests' databases."""
    server = LocalPostgres()
    try:
        base = server.start()
        name = f"restart_{uuid.uuid4().hex[:8]}"
        _admin(base, f'CREATE DATABASE "{name}"')
        yield server, make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        server.stop()


@pytest.mark.parametrize("spec", [SAMPLE, DECIDING], ids=["handle", "decide"])
def test_a_postgres_restart_mid_stream_loses_and_doubles_nothing(
        settings: Settings, own_postgres: tuple[LocalPostgres, str], start_sample, tmp_path: Path, spec: str) -> None:
    server, url = own_postgres
    upgrade_ledger(url)
    if spec == DECIDING:  # the pure contract credits existing accounts only
        books = Ledger(url)
        with books.unit_of_work() as uow:
            for w in range(11):
                uow.ensure_account(f"wal_{w}")
        books.close()
    # enough attempts that the outage never exhausts a record's retries (the outage is the test, not the DLQ)
    s = settings.model_copy(update={"database_url": url, "retry_max_attempts": 30, "retry_max_s": 2.0})
    feed = Feed(s)
    ops = [f"pgrestart-{i}" for i in range(400)]
    for i, op in enumerate(ops):
        feed.send(deposit(op, wallet=f"wal_{i % 11}", test="slow:0.004"))
    feed.close()

    running = start_sample(s, name="sample", spec=spec, HOOKSTREAM_DATABASE_STATEMENT_TIMEOUT_MS="5000")
    wait_until(lambda: len(effects(url)) >= 40, "the processor to be mid-stream", 60)
    server.halt()  # fast shutdown: every open connection of the processor is cut
    time.sleep(3.0)
    assert running.proc.alive(), "the processor exited while the database was down"
    server.resume()

    wait_until(lambda: all(effects(url)[sample_key(op)] >= 1 for op in ops), "every effect after the restart", 120)
    wait_until(lambda: sum(committed(s).values()) == len(ops), "offsets of every event committed", 60)
    got = effects(url)
    assert set(got) == {sample_key(op) for op in ops}
    assert {k: n for k, n in got.items() if n != 1} == {}
    assert running.proc.alive()
    assert httpx.get(f"http://127.0.0.1:{running.port}/healthz", timeout=5).status_code == 200
    assert running.outcome("retried") > 0  # the outage was felt, and retried through
    assert running.outcome("dead_lettered") == 0  # a lost connection is never a reason to give an event up
    assert running.outcome("dead_lettered") == 0
