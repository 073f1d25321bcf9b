"""A throwaway PostgreSQL cluster for benchmarks: the tests' LocalPostgres, restarted durable.

The test fixture runs with fsync/synchronous_commit/full_page_writes off (fast tests); a benchmark of
a ledger must pay for durable commits, so the cluster is restarted with the server defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures.postgres import START_TIMEOUT_S, LocalPostgres, _wait_ready  # noqa: E402


@contextmanager
def durable_postgres(max_connections: int = 100) -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh local cluster (fsync on, synchronous_commit on); stopped after."""
    server = LocalPostgres()
    try:
        url = server.start()
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.root} "
                   f"-c max_connections={max_connections}")
        done = server._run(str(server.bin / "pg_ctl"), "-D", str(server.data), "-l", str(server.log),
                           "-o", options, "-w", "-t", str(int(START_TIMEOUT_S)), "-m", "fast", "restart",
                           timeout=START_TIMEOUT_S + 10)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {done.stderr[-2000:]}")
        _wait_ready(url, START_TIMEOUT_S)
        yield url
    finally:
        server.stop()


def server_settings(url: str) -> dict[str, str]:
    """fsync, synchronous_commit, full_page_writes as the server runs them (for the report)."""
    import psycopg

    from fixtures.postgres import _conninfo

    with psycopg.connect(_conninfo(url)) as conn:
        rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                            "('fsync', 'synchronous_commit', 'full_page_writes', 'server_version')").fetchall()
    return dict(rows)
