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


HANDLER = """
from hookstream.processors import Context, Event, Processor


class Credits(Processor):
    name = "credits"
    topics = ("cryptomate.deposits",)

    def handle(self, event: Event, ctx: Context) -> None:
        ctx.uow.credit("acct", "1.00", dedup_key=event.dedup_key)
        ctx.log.info("credited", account="acct")
"""


def test_mypy_accepts_the_documented_processor_and_catches_a_misspelt_ledger_or_log_call(tmp_path):
    (example,) = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", (ROOT / "docs/processors.md").read_text(),
                                                     re.S) if lang == "python"]
    # The documented processor decides: a misspelt view read or Effects call is caught; so is a handler's
    # misspelt ledger or log call on the imperative contract.
    assert "view.account_for_card(" in example and ".credit(" in example
    (tmp_path / "good.py").write_text(example)
    (tmp_path / "bad.py").write_text(example.replace("view.account_for_card(", "view.account_for_kard(")
                                     .replace(".credit(", ".credit_account("))
    (tmp_path / "good_handler.py").write_text(HANDLER)
    (tmp_path / "bad_handler.py").write_text(HANDLER.replace("ctx.uow.credit(", "ctx.uow.credit_account(")
                                             .replace("ctx.log.info(", "ctx.log.inform("))
    env = {"MYPYPATH": str(_source_tree(tmp_path / "src")), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                             "--no-incremental", "good.py", "bad.py", "good_handler.py", "bad_handler.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good")], result.stdout
    assert any(e.startswith("bad.py") and '"LedgerView" has no attribute "account_for_kard"' in e
               for e in errors), result.stdout
    assert any(e.startswith("bad.py") and '"Effects" has no attribute "credit_account"' in e for e in errors), \
        result.stdout
    assert any('"UnitOfWork" has no attribute "credit_account"' in e for e in errors), result.stdout
    assert any('"BoundLogger" has no attribute "inform"' in e for e in errors), result.stdout
