"""Start-up failures as an operator meets them: one line naming the cause, an exit status, no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "hookstream.cli"]

BAD_VALUES = {
    "HOOKSTREAM_TOPIC_PARTITIONS": ("abc", "whole number"),
    "HOOKSTREAM_LOG_LEVEL": ("loud", "debug, info, warning or error"),
    "HOOKSTREAM_AUTO_UNBLOCK": ("maybe", "true or false"),
    "HOOKSTREAM_KAFKA_BOOTSTRAP": ("127.0.0.1:abc", "host:port"),
    "HOOKSTREAM_DATABASE_URL": ("nonsense", "sqlite:///"),
}
VERBS = [
    ["topics", "create"],
    ["dlq", "list", "cards"],
    ["process", "cards"],
    ["ingest"],
    ["ledger", "balance", "acct-1"],
    ["lag"],
]


def run(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, env={**clean, **env})


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("variable", sorted(BAD_VALUES))
def test_a_bad_environment_value_is_one_line_naming_the_variable_and_exits_2(variable):
    value, expected = BAD_VALUES[variable]
    for verb in VERBS:
        result = run(verb, {variable: value, "HOOKSTREAM_WEBHOOK_KEYS": "k" * 16})
        assert result.returncode == 2, (verb, result.stderr)
        line = one_line(result)
        assert variable in line and repr(value) in line and expected in line, line


def test_help_works_whatever_the_environment_holds():
    env = {name: value for name, (value, _) in BAD_VALUES.items()}
    for args in [["--help"], ["process", "--help"], ["dlq", "list", "--help"], ["lag", "-h"]]:
        result = run(args, env)
        assert result.returncode == 0 and "Usage:" in result.stdout, (args, result.stderr)


def test_a_database_password_in_a_bad_url_is_not_echoed():
    result = run(["ledger", "balance", "acct-1"], {"HOOKSTREAM_DATABASE_URL": "mysql://u:hunter2pw@db/x"})
    assert result.returncode == 2
    line = one_line(result)
    assert "HOOKSTREAM_DATABASE_URL" in line and "hunter2pw" not in line


def closed_port() -> int:
    with socket.socket() as s:  # bound then released: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verb", [["dlq", "list", "cards"], ["topics", "create"], ["lag"]],
                         ids=lambda v: " ".join(v))
def test_an_unreachable_broker_is_one_line_and_a_non_zero_exit(verb):
    bootstrap = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = run(verb, {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap}, timeout=120)
    waited = time.monotonic() - started
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("Error: Kafka at") and bootstrap in line, line
    # TOOL_BOOTSTRAP_TIMEOUT_MS (10 s) plus interpreter start-up, well short of kafka-python's own 30 s.
    assert waited < 25, waited


def test_a_processor_waits_for_an_unreachable_broker_within_its_start_bound_then_says_so_in_one_line(tmp_path):
    bootstrap = f"127.0.0.1:{closed_port()}"
    env = {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap, "HOOKSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}",
           "HOOKSTREAM_PROCESSOR_START_TIMEOUT_S": "12"}
    assert run(["db", "upgrade"], env).returncode == 0
    started = time.monotonic()
    result = run(["process", "cards"], env, timeout=120)
    waited = time.monotonic() - started
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines[-1].startswith("Error: Kafka at") and bootstrap in lines[-1], lines[-1]
    assert not [line for line in lines[:-1] if line.startswith("Error:")]
    events = [json.loads(line)["event"] for line in lines[:-1]]  # everything before the verdict is JSON
    assert events.count("processor.start_waiting") >= 1, events  # it retried before giving up
    # The bound (12 s) plus the attempt in progress when it ran out (TOOL_BOOTSTRAP_TIMEOUT_MS, 10 s).
    assert 12 <= waited < 40, waited


@pytest.mark.parametrize("name,extra", [("three-ds", {}), ("deposits", {}),
                                        ("card-status", {"HOOKSTREAM_AUTO_UNBLOCK": "true"})])
def test_a_processor_calling_the_api_refuses_to_start_without_a_key(name, extra, tmp_path):
    env = {"HOOKSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}", **extra}
    result = run(["process", name], env)
    assert result.returncode == 2
    line = one_line(result)
    assert "HOOKSTREAM_API_KEY" in line and name in line, line


def test_card_status_without_auto_unblock_starts_without_a_key(processes, kafka_bootstrap, topic_prefix, tmp_path):
    env = {"HOOKSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "HOOKSTREAM_TOPIC_PREFIX": topic_prefix,
           "HOOKSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    assert run(["topics", "create", "--partitions", "1"], env).returncode == 0
    proc = processes.start(["process", "card-status"], env, ready_text="processor.http", timeout=90)
    assert proc.alive() and "HOOKSTREAM_API_KEY" not in proc.output()


def test_a_sqlite_url_whose_folder_does_not_exist_is_an_error_not_an_empty_ledger(tmp_path):
    missing = tmp_path / "typo" / "ledger.db"
    result = run(["ledger", "balance", "acct-1"], {"HOOKSTREAM_DATABASE_URL": f"sqlite:///{missing}"})
    assert result.returncode == 2
    line = one_line(result)
    assert str(missing.parent) in line and "does not exist" in line and "unknown account" not in line
    assert not missing.parent.exists()


def test_a_postgres_url_without_the_driver_says_which_extra_to_install(tmp_path):
    # The same CLI in a real process, with psycopg made unimportable as in an install without the extra.
    code = "import sys; sys.modules['psycopg'] = None; from hookstream.cli import main; main()"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    result = subprocess.run([sys.executable, "-c", code, "ledger", "balance", "acct-1"], capture_output=True,
                            text=True, timeout=90, env={**clean, "HOOKSTREAM_DATABASE_URL":
                                                        "postgresql+psycopg://hookstream@127.0.0.1:1/x"})
    assert result.returncode == 2
    line = one_line(result)
    assert "hookstream[postgres]" in line, line
