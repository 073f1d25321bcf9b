"""`hookstream dev` as a user runs it: the whole stack, the scenario, the summary, a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from fixtures.processes import Processes

SCENARIO_BOUND_S = 240.0
STOP_BOUND_S = 90.0  # processors drain within 20 s, then the broker gets up to 40 s
GONE_BOUND_S = 10.0

# The expected-state table `hookstream dev` prints: label, expected, actual, verdict.
EXPECTED_ROWS = {
    "acct-dev balance": "70.00",
    "acct-dev held": "0.00",
    "acct-dev available": "70.00",
    "crd_dev_topup virtual balance (sandbox)": "100.00",
    "authorizations approved 00": "2",
    "authorizations declined 51": "1",
    "3DS challenges approved (sandbox)": "1",
    "three-ds expired": "1",
    "treasury alerts": "1",
    "crd_dev_velocity blocked (ledger)": "true",
    "dead letters": "0",
}


def _run_scenario(processes: Processes, kafka_bootstrap: str, tmp_path: Path, *extra: str) -> str:
    proc = processes.start(["dev", "--scenario-only", "--kafka-bootstrap", kafka_bootstrap,
                            "--run-dir", str(tmp_path / "run"), *extra], name="dev")
    try:
        code = proc.wait(timeout=SCENARIO_BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"dev --scenario-only still running after {SCENARIO_BOUND_S:.0f}s:\n"
                             f"{proc.output()[-4000:]}") from None
    out = proc.output()
    assert code == 0, out[-6000:]
    return out


def _assert_expected_table(out: str) -> None:
    assert "scenario PASSED" in out, out[-4000:]
    for label, value in EXPECTED_ROWS.items():
        row = re.search(rf"^\s+{re.escape(label)}\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.MULTILINE)
        assert row is not None, f"no summary row for {label!r}:\n{out[-3000:]}"
        assert row.groups() == (value, value, "ok"), row.group(0)


def test_scenario_only_reaches_the_expected_balances_and_exits_0(processes, kafka_bootstrap, tmp_path):
    out = _run_scenario(processes, kafka_bootstrap, tmp_path)
    _assert_expected_table(out)
    assert re.search(r"ledger\s+acct-dev: balance 70\.00 held 0\.00 available 70\.00", out), out[-3000:]
    for step in range(1, 12):
        assert f"step {step}/11: done" in out


def test_scenario_with_generation_a_envelopes_reaches_the_same_balances(processes, kafka_bootstrap, tmp_path):
    out = _run_scenario(processes, kafka_bootstrap, tmp_path, "--generation", "A")
    _assert_expected_table(out)


def test_sigterm_stops_every_child_and_the_broker_last(processes, tmp_path):
    run_dir = tmp_path / "run"
    proc = processes.start(["dev", "--no-scenario", "--run-dir", str(run_dir)], name="dev",
                           ready_text="hookstream dev ready", timeout=SCENARIO_BOUND_S)
    out = proc.output()
    pids = {int(p) for p in re.findall(r"\bpid=(\d+)", out)}
    jvm = re.search(r"kafka ready: bootstrap=\S+ jvm pid=(\d+)", out)
    assert jvm is not None, out
    pids.add(int(jvm.group(1)))
    names = set(re.findall(r"^started (\S+) pid=", out, re.MULTILINE))
    assert {"kafka", "sandbox", "ingest", "cards", "three-ds", "deposits", "treasury", "card-status"} <= names

    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_BOUND_S) == 0, proc.output()[-4000:]

    deadline = time.monotonic() + GONE_BOUND_S
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _exists(pid)}
        time.sleep(0.2)
    assert not alive, f"still running after SIGTERM: {sorted(alive)}"
    stopped = re.findall(r"^stopped (\S+) pid=", proc.output(), re.MULTILINE)
    assert stopped[-1] == "kafka", stopped
    assert not run_dir.exists()  # a clean run removes the run directory it created (no --keep)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_children_do_not_outlive_a_killed_dev(processes, kafka_bootstrap, tmp_path):
    proc = processes.start(["dev", "--no-scenario", "--kafka-bootstrap", kafka_bootstrap,
                            "--run-dir", str(tmp_path / "run")], name="dev",
                           ready_text="hookstream dev ready", timeout=SCENARIO_BOUND_S)
    pids = {int(p) for p in re.findall(r"\bpid=(\d+)", proc.output())}
    assert len(pids) >= 7, proc.output()  # sandbox, ingest and the five processors
    os.kill(proc.pid, signal.SIGKILL)  # no chance to stop anything itself
    deadline = time.monotonic() + STOP_BOUND_S
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _exists(pid)}
        time.sleep(0.2)
    assert not alive, f"orphaned after SIGKILL of dev: {sorted(alive)}"
