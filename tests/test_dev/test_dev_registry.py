"""`hookstream dev` runs every registered processor: one installed by another package starts with the built-ins."""

from __future__ import annotations

import re
import signal

from fixtures.plugins import env_with, install_refunds


def test_dev_starts_a_processor_another_package_registered(processes, kafka_bootstrap, tmp_path):
    site = install_refunds(tmp_path / "site")
    proc = processes.start(["dev", "--no-scenario", "--kafka-bootstrap", kafka_bootstrap,
                            "--run-dir", str(tmp_path / "run")], env_with(site), name="dev",
                           ready_text="hookstream dev ready", timeout=240)
    try:
        out = proc.output()
        started = set(re.findall(r"^started (\S+) pid=", out, re.MULTILINE))
        assert {"refunds", "cards", "three-ds", "deposits", "treasury", "card-status"} <= started, out[-3000:]
        ready = re.search(r"processors=(\S+)", out)
        assert ready is not None and "refunds" in ready.group(1).split(","), out[-3000:]
    finally:
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, proc.output()[-4000:]
