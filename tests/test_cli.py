"""The spine's CLI verbs as a user runs them: kafka run, topics create, schemas export, --help."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from kafka import KafkaAdminClient

CLI = [sys.executable, "-m", "hookstream.cli"]


def test_every_verb_has_help():
    out = subprocess.run(CLI + ["--help"], capture_output=True, text=True, timeout=60).stdout
    for verb in ("ingest", "process", "dlq", "sandbox", "kafka", "topics", "schemas", "db", "ledger", "dev"):
        assert verb in out, verb
        sub = subprocess.run(CLI + [verb, "--help"], capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0 and "Usage:" in sub.stdout, verb


def test_kafka_run_prints_the_bootstrap_once_ready_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(CLI + ["kafka", "run", "--data-dir", str(tmp_path / "k"), "--heap", "384m"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        bootstrap = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and bootstrap is None:
            line = proc.stdout.readline()
            if "kafka ready: bootstrap=" in line:
                bootstrap = line.split("bootstrap=")[1].split()[0]
            assert line or proc.poll() is None, "kafka run exited early"
        assert bootstrap is not None
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        assert admin.describe_cluster()["brokers"]
        admin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "kafka stopped" in proc.stdout.read()
        assert (tmp_path / "k" / "log" / "meta.properties").is_file()  # --data-dir is kept
    finally:
        if proc.poll() is None:
            proc.kill()


def test_topics_create_is_idempotent(kafka_bootstrap, topic_prefix):
    env = {"HOOKSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "HOOKSTREAM_TOPIC_PREFIX": topic_prefix}
    import os

    run = lambda: subprocess.run(CLI + ["topics", "create", "--partitions", "2", "--processor", "cards"],
                                 capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    first, second = run(), run()
    assert first.returncode == second.returncode == 0
    assert first.stdout.count("created") == 9
    assert second.stdout.count("exists") == 9 and "created" not in second.stdout
    assert f"{topic_prefix}hookstream.cards.dlq" in first.stdout


def test_topics_create_without_a_broker_fails_clearly():
    import os

    result = subprocess.run(CLI + ["topics", "create"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOOKSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.returncode != 0
    assert "Kafka at 127.0.0.1:1" in result.stderr


def test_schemas_export_writes_json_schema_for_every_route(tmp_path):
    result = subprocess.run(CLI + ["schemas", "export", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    auth = json.loads((tmp_path / "cards.authorization.json").read_text())
    assert auth["x-topic"] == "cryptomate.cards.transactions"
    assert "bill_amount" in auth["required"]
    assert (tmp_path / "envelope.json").is_file()
