"""`make run` (= `hookstream dev`): the live summary prints only on change, and once the scenario is over
it names three commands to try, which work when pasted as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from fixtures.waiting import wait_until

SUMMARY_START = re.compile(r"^\[\d\d:\d\d:\d\d\] events", re.M)


def summaries(out: str) -> list[str]:
    """Each live summary block without its time stamp (the block runs until the next non-indented line)."""
    blocks = []
    for m in SUMMARY_START.finditer(out):
        rest = out[m.start():].splitlines()
        block = [rest[0].split("]", 1)[1]]
        for line in rest[1:]:
            if not line.startswith("           "):
                break
            block.append(line)
        blocks.append("\n".join(block))
    return blocks


def test_after_the_scenario_dev_names_three_commands_that_work(processes, kafka_bootstrap, tmp_path):
    proc = processes.start(["dev", "--kafka-bootstrap", kafka_bootstrap, "--run-dir", str(tmp_path / "run")],
                           name="dev")
    wait_until(lambda: "Try, in another terminal:" in proc.output() or not proc.alive(), "the scenario's end", 300,
               every=1.0)
    time.sleep(1)  # the three lines follow the heading in one write
    out = proc.output()
    assert "scenario PASSED" in out, out[-4000:]
    tail = out.split("Try, in another terminal:", 1)[1].splitlines()[1:4]
    commands = [line.strip().split("   # ", 1)[0] for line in tail]
    assert len(commands) == 3 and commands[0].startswith("curl "), tail
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")},
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    results = [subprocess.run(["bash", "-c", c], capture_output=True, text=True, timeout=120, env=env)
               for c in commands]
    assert all(r.returncode == 0 for r in results), [(r.stdout, r.stderr) for r in results]
    assert '"response_code": "00"' in results[0].stdout, results[0].stdout
    assert re.search(r"held\s+5\.00", results[1].stdout), results[1].stdout
    assert "hookstream.cards" in results[2].stdout, results[2].stdout

    blocks = summaries(proc.output())
    assert blocks, out[-3000:]
    assert all(a != b for a, b in zip(blocks, blocks[1:])), "a live summary repeated an unchanged state"
