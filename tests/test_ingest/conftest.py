"""A receiver process per test, started as a user would: `hookstream ingest` with HOOKSTREAM_* env."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from fixtures.processes import Proc, Processes
from hookstream.broker import LocalBroker, free_port
from hookstream.settings import Settings

KEY = "test-webhook-key-0001"


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**settings.to_env(), "HOOKSTREAM_SPOOL_FORWARD_INTERVAL_S": "0.3", **extra}


@dataclass
class Receiver:
    proc: Proc
    url: str
    base: str

    def post(self, body: bytes, key: str | None = KEY, **headers: str) -> httpx.Response:
        hdrs = {"content-type": "application/json", **headers}
        if key is not None:
            hdrs["X-Webhook-Key"] = key
        return httpx.post(self.url, content=body, headers=hdrs, timeout=30)


@pytest.fixture(scope="module")
def own_broker() -> Iterator[LocalBroker]:
    """A broker this module's tests may stop and restart on its data directory (the shared one stays up)."""
    broker = LocalBroker(heap="384m")
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


@pytest.fixture
def start_receiver(processes: Processes) -> Callable[..., Receiver]:
    def start(settings: Settings, workers: int = 1, **env: str) -> Receiver:
        port = free_port()
        proc = processes.start(["ingest", "--port", str(port), "--workers", str(workers)],
                               settings_env(settings, **env), name="ingest",
                               ready_url=f"http://127.0.0.1:{port}/readyz", timeout=30)
        base = f"http://127.0.0.1:{port}"
        return Receiver(proc, f"{base}/webhooks/cryptomate", base)

    return start
