"""The README's promises: two commands, a true configuration table, CI running the test command."""

from pathlib import Path

from hookstream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_first_screen_gives_the_run_and_test_commands():
    first_screen = "\n".join(README.splitlines()[:12])
    assert "make run" in first_screen and "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/run.sh" in makefile and "scripts/test.sh" in makefile


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_every_setting_is_documented_in_the_configuration_table():
    for name in Settings.model_fields:
        assert f"`HOOKSTREAM_{name.upper()}`" in README, name


def test_every_linked_doc_exists():
    import re

    for link in re.findall(r"\]\((docs/[^)#]+)\)", README):
        assert (ROOT / link).is_file(), link


def _section_block(heading: str) -> str:
    import re

    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return block


def test_running_it_by_hand_works_as_written(tmp_path):
    """The README's by-hand walk-through, run by bash as written: only the ports (free ones instead of
    9092/8000/8100) and the install line (this test's environment is installed already) differ."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from hookstream.broker import free_port

    script = _section_block("## Running it by hand")
    assert "HOOKSTREAM_AUTHORIZATION_POLICY" not in script  # the default policy decides on the ledger
    assert "hookstream process cards" in script and "kill $(jobs -p)" in script
    lines = script.splitlines()
    assert lines[0].startswith("python3 -m venv .venv")
    script = "\n".join(lines[1:]).replace('export PATH="$PWD/.venv/bin:$PATH"',
                                          f'export PATH="{Path(sys.executable).parent}:$PATH"')
    for port in ("9092", "8000", "8100"):
        script = re.sub(rf"\b{port}\b", str(free_port()), script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        raise AssertionError(f"walk-through did not finish:\n{out[-4000:]}") from None
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((tmp_path / "var").glob("*.log")))
    assert proc.returncode == 0, out[-4000:] + logs
    assert '"status": "approved", "response_code": "00"' in out, out + logs
    assert re.search(r"available\s+87\.66", out), out + logs
    assert "kafka stopped" in (tmp_path / "var" / "kafka.log").read_text()
