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
