"""/readyz and /healthz read the producer itself: missing topics are named, with the command that fixes them."""

from __future__ import annotations

import httpx

from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import TOPICS
from test_ingest.conftest import settings_env


def test_readyz_is_503_naming_missing_topics_until_they_are_created(make_settings, processes):
    settings = make_settings()  # no `topics create` yet
    port = free_port()
    proc = processes.start(["ingest", "--port", str(port)], settings_env(settings), name="ingest")
    base = f"http://127.0.0.1:{port}"

    def readyz() -> httpx.Response | None:
        try:
            response = httpx.get(f"{base}/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        return response if "topics missing" in response.text else None

    response = wait_until(readyz, "/readyz to name the missing topics", timeout=60)
    assert response.status_code == 503
    assert settings.topic("cryptomate.deposits") in response.json()["reason"]
    assert "hookstream topics create" in response.json()["reason"]
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # not a reason to restart it
    assert '"ingest.topics_missing"' in proc.output() and "hookstream topics create" in proc.output()

    ensure_topics(settings, list(TOPICS))
    wait_until(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200,
               "/readyz to turn ready once the topics exist", timeout=120, every=0.5)
