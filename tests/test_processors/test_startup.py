"""Start-up never gives up on a dependency that is down: the process waits for the broker, then works."""

from __future__ import annotations

from pathlib import Path

from hookstream.broker import LocalBroker, free_port
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import TOPICS
from test_processors.conftest import SAMPLE, Feed, deposit, effects, env_for, sample_key, upgrade_ledger, wait_until


def test_a_processor_started_before_its_broker_waits_and_then_processes(make_settings, processes,
                                                                         tmp_path: Path) -> None:
    broker = LocalBroker(port=free_port(), heap="384m")
    s = make_settings(kafka_bootstrap=broker.bootstrap)
    upgrade_ledger(s.database_url)
    proc = processes.start(["process", SAMPLE], env_for(s, tmp_path), name="early",
                           ready_text='"processor.start_waiting"', timeout=60)
    try:
        broker.start()
        ensure_topics(s, list(TOPICS))
        processes.wait_ready(proc, None, '"processor.ready"', 120)
        feed = Feed(s)
        feed.send(deposit("after-the-wait"))
        feed.close()
        wait_until(lambda: effects(s.database_url)[sample_key("after-the-wait")] == 1, "the effect", 60)
        assert proc.alive()
        assert proc.output().count('"processor.start_waiting"') >= 1
    finally:
        proc.stop(timeout=20)
        broker.remove()
