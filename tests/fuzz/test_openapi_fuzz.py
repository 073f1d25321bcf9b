"""schemathesis against the receiver's own /openapi.json: no 5xx, every answer as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fuzz.conftest import CASES, Watch
from test_ingest.conftest import KEY

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")


def test_schemathesis_finds_no_server_error_or_undocumented_answer(settings, fuzz_receiver, all_records, tmp_path):
    receiver = fuzz_receiver
    report = tmp_path / "schemathesis.json"
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{receiver.base}/openapi.json", "-H", f"X-Webhook-Key: {KEY}",
               "--checks", CHECKS, "--max-examples", str(max(CASES // 3, 50)), "--workers", "2",
               "--seed", "15", "--request-timeout", "30", "--report", "json", "--report-json-path", str(report)]
    with Watch(receiver) as watch:
        run = subprocess.run(command, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                             cwd=tmp_path)  # schemathesis keeps a .schemathesis/ cache in its working directory
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["complete"] and summary["failures"] == [] and summary["test_cases"]["generated"] > 0
    print(f"schemathesis: {summary['test_cases']['generated']} cases, {len(summary['failures'])} failures, "
          f"{summary['running_time']:.0f}s")
    watch.assert_kept_promises()
    assert len(all_records(watch.canaries)) >= watch.canaries
