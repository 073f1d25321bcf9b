"""The processor `Context` is typed: mypy checks a handler's use of `ctx.uow` and `ctx.log` against the ledger's
unit of work and structlog's logger, so a misspelt ledger call is caught before it dead-letters events."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _source_tree(into: Path) -> Path:
    """The `hookstream` package as pyproject's package-dir maps it, as symlinks (mypy cannot follow the
    editable install's import hook)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    spine = into / "hookstream"
    spine.mkdir(parents=True)
    for path in (ROOT / mapping["hookstream"]).iterdir():
        (spine / path.name).symlink_to(path)
    for package, folder in mapping.items():
        if package != "hookstream":
            (spine / package.removeprefix("hookstream.")).symlink_to(ROOT / folder)
    return into


def test_mypy_accepts_the_documented_processor_and_catches_a_misspelt_ledger_or_log_call(tmp_path):
    (example,) = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", (ROOT / "docs/processors.md").read_text(),
                                                     re.S) if lang == "python"]
    assert "ctx.uow.credit(" in example and "ctx.log.info(" in example
    (tmp_path / "good.py").write_text(example)
    (tmp_path / "bad.py").write_text(example.replace("ctx.uow.credit(", "ctx.uow.credit_account(")
                                     .replace("ctx.log.info(", "ctx.log.inform("))
    env = {"MYPYPATH": str(_source_tree(tmp_path / "src")), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                             "--no-incremental", "good.py", "bad.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], result.stdout
    assert any('"UnitOfWork" has no attribute "credit_account"' in e for e in errors), result.stdout
    assert any('"BoundLogger" has no attribute "inform"' in e for e in errors), result.stdout
