"""The docs as a newcomer reads them: every `hookstream …` command in them parses, every class they name
exists, and no internal reference leaks into them or into a --help text."""

from __future__ import annotations

import importlib
import re
import shlex
import warnings
from pathlib import Path

import click
import pytest

from hookstream.cli import main
from hookstream.processors import Processor

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
INTERNAL = re.compile(r"\[(?:OLD-T|NEW|OBS)\]|\.\./shared/")
# Placeholders a reader replaces, as a value that parses.
PLACEHOLDERS = {"OFFSET": "0", "PARTITION": "0", "NAME": "cards", "DIR": "out", "ACCOUNT": "acct-1"}


def code_blocks(path: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", path.read_text(), re.S)


def commands(path: Path) -> list[list[str]]:
    """`hookstream …` invocations in the shell blocks of `path`, one per (joined) line."""
    out = []
    for lang, body in code_blocks(path):
        if lang not in ("", "sh", "bash", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            # the command word: at the start, after a path, `-- ` (kubectl exec), `&& `, `; ` or VAR=value
            m = re.search(r"(?:^|/bin/|--\s+|&&\s+|;\s+|\S=\S+\s+)hookstream\s+(.*)", line)
            if not m or "…" in m.group(1) or "[" in m.group(1) or "──" in m.group(1):
                continue
            words = []
            for word in shlex.split(m.group(1)):
                if word in ("|", ">", "&", "&&", ";", "2>&1") or word.startswith((">", "2>")):
                    break
                words.append(PLACEHOLDERS.get(word, word))
            out.append(words)
    return out


def parse(args: list[str]) -> None:
    """Parse `hookstream ARGS` down to the leaf command, as click would before running it."""
    cmd: click.Command = main
    ctx: click.Context | None = None
    name = "hookstream"
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = cmd.make_context(name, list(args), parent=ctx)
            if not isinstance(cmd, click.Group):
                return
            rest = [*ctx.protected_args, *ctx.args]
        found_name, found, args = cmd.resolve_command(ctx, rest)
        assert found is not None, rest
        name, cmd = found_name, found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_hookstream_command_in_the_docs_parses(path):
    for args in commands(path):
        try:
            parse(args)
        except click.ClickException as exc:
            raise AssertionError(f"{path.name}: hookstream {' '.join(args)}: {exc.format_message()}") from None


def test_the_dlq_show_example_names_its_offset_option():
    found = [a for a in commands(ROOT / "docs" / "operations.md") if a[:2] == ["dlq", "show"]]
    assert found and all("--offset" in a for a in found)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_carry_no_internal_references(path):
    assert not INTERNAL.search(path.read_text()), INTERNAL.search(path.read_text()).group(0)


def test_help_texts_carry_no_internal_references():
    def walk(cmd: click.Command, ctx: click.Context) -> None:
        text = cmd.get_help(ctx)
        assert not INTERNAL.search(text), (ctx.command_path, INTERNAL.search(text).group(0))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx))
    walk(main, click.Context(main, info_name="hookstream"))


def test_the_processor_example_defines_the_class_its_registration_names(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "processors.md").read_text()
    (python,) = [body for lang, body in code_blocks(ROOT / "docs" / "processors.md") if lang == "python"]
    (toml,) = [body for lang, body in code_blocks(ROOT / "docs" / "processors.md") if lang == "toml"]
    name, module, cls = re.search(r'([\w-]+) = "([\w.]+):(\w+)"', toml).groups()
    package = tmp_path.joinpath(*module.split(".")[:-1])
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / f"{module.rsplit('.', 1)[1]}.py").write_text(python)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = getattr(importlib.import_module(module), cls)
    assert issubclass(loaded, Processor) and loaded.name == name
    for builtin in re.findall(r"`(hookstream\.[\w.]+):(\w+)`", doc):
        assert issubclass(getattr(importlib.import_module(builtin[0]), builtin[1]), Processor), builtin


def test_the_command_finder_finds_the_walk_throughs():
    found = {p.name: commands(p) for p in DOCS}
    assert ["dlq", "replay", "deposits", "--dry-run"] in found["operations.md"]
    assert ["process", "cards"] in found["README.md"] and ["lag"] in found["metrics.md"]
