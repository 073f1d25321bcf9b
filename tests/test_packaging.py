"""The distribution as a user installs it: a wheel in a fresh venv, no checkout beside it, runs every verb."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookstream.broker import free_port

REPO = Path(__file__).resolve().parents[1]
BUILD_BOUND_S = 300.0
INSTALL_BOUND_S = 600.0
BROKER_READY_BOUND_S = 120.0
SCENARIO_BOUND_S = 300.0


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """`python -m build --wheel`, then `pip install` of that wheel (not editable) into a throwaway venv."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=BUILD_BOUND_S)
    (wheel,) = (work / "dist").glob("hookstream-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=INSTALL_BOUND_S)
    # Nothing of the checkout may help: no PYTHONPATH, no HOOKSTREAM_KAFKA_HOME, run from an empty folder.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HOOKSTREAM_KAFKA_HOME", "VIRTUAL_ENV") and not k.startswith("HOOKSTREAM_")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    yield venv, env


def _start(venv: Path, env: dict[str, str], cwd: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([str(venv / "bin/hookstream"), *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_installed_wheel_carries_the_broker_files_and_no_checkout_path(installed, tmp_path):
    venv, env = installed
    out = subprocess.run([str(venv / "bin/python"), "-c",
                          "import hookstream.broker as b, hookstream.ingest.app as a, hookstream.schemas as s;"
                          "print(b.kafka_home()); print(a.__file__); print(s.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    home, app, schemas = out.stdout.split()
    for path in (home, app, schemas):
        assert path.startswith(str(venv)), f"{path} is not inside the installed venv"
        assert not path.startswith(str(REPO))
    assert sorted(p.name for p in Path(home).iterdir() if not p.name.startswith("__")) == \
        ["log4j2.properties", "pom.xml", "server.properties.template"]
    top = {p.name for p in next((venv / "lib").glob("python3*/site-packages")).iterdir()}
    assert not top & {"schemas", "ingest", "processors", "ledger", "api", "sandbox", "dev"}, \
        "a room landed at the top of site-packages"


def test_installed_wheel_runs_the_broker_and_the_dev_scenario(installed, tmp_path):
    venv, env = installed
    port = free_port()
    broker = _start(venv, env, tmp_path, tmp_path / "kafka.log", "kafka", "run", "--port", str(port),
                    "--data-dir", str(tmp_path / "kafka-data"))
    try:
        deadline = time.monotonic() + BROKER_READY_BOUND_S
        while "kafka ready: bootstrap=" not in (tmp_path / "kafka.log").read_text(errors="replace"):
            assert broker.poll() is None, (tmp_path / "kafka.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the installed broker was not ready in time"
            time.sleep(0.2)
        bootstrap = f"127.0.0.1:{port}"
        dev = _start(venv, env, tmp_path, tmp_path / "dev.log", "dev", "--scenario-only",
                     "--kafka-bootstrap", bootstrap, "--run-dir", str(tmp_path / "run"))
        try:
            code = dev.wait(timeout=SCENARIO_BOUND_S)
        finally:
            _stop(dev)
        out = (tmp_path / "dev.log").read_text(errors="replace")
        assert code == 0, out[-6000:]
        assert "scenario PASSED" in out, out[-4000:]
        assert re.search(r"acct-dev: balance 70\.00 held 0\.00 available 70\.00", out), out[-3000:]
    finally:
        _stop(broker)
    assert broker.returncode is not None
