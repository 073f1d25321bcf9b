"""The operator CLI: `hookstream db …` and `hookstream ledger …`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hookstream.cli import main


from hookstream.ledger.migrations import LATEST, MIGRATIONS


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_db_upgrade_creates_the_schema_once_and_reports_it(ledger_url: str) -> None:
    code, out = run("db", "upgrade", "--database-url", ledger_url)
    assert code == 0 and all(f"applied {m.version}:" in out for m in MIGRATIONS)
    assert f"version {LATEST} (upgraded from version 0)" in out
    code, out = run("db", "upgrade", "--database-url", ledger_url)
    assert code == 0 and "already up to date" in out
    assert run("db", "version", "--database-url", ledger_url) == (0, f"applied {LATEST}, expected {LATEST}\n")


def test_link_credit_balance_and_statement_round_trip(ledger_url: str) -> None:
    url = ("--database-url", ledger_url)
    assert run("db", "upgrade", *url)[0] == 0
    code, out = run("ledger", "link", "--card", "crd_1", "--account", "acme", "--approval-method", "topup", *url)
    assert code == 0 and "card crd_1 → account acme (approval method TOP_UP)" in out
    assert run("ledger", "link", "--wallet", "wlt_1", "--account", "acme", *url)[0] == 0

    code, out = run("ledger", "credit", "acme", "250.5", "--ref", "seed-1", *url)
    assert code == 0 and "credited 250.50 to acme" in out
    code, out = run("ledger", "credit", "acme", "250.5", "--ref", "seed-1", *url)
    assert code == 0 and "already credited" in out and "balance 250.50" in out

    code, out = run("ledger", "balance", "acme", "--json", *url)
    assert code == 0
    assert json.loads(out) == {"account": "acme", "balance": "250.50", "held": "0.00", "available": "250.50"}
    code, out = run("ledger", "balance", "acme", *url)
    assert code == 0 and "available 250.50" in out

    code, out = run("ledger", "statement", "acme", "--json", *url)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(p["kind"], p["amount"], p["dedup_key"]) for p in lines] == [
        ("credit", "250.50", "operator:seed-1")]

    code, out = run("ledger", "card", "crd_1", "--freeze", *url)
    assert code == 0 and "frozen=true" in out and "active=false" in out


@pytest.mark.parametrize("args, message", [
    (("ledger", "credit", "acme", "12.345", "--ref", "r"), "more than two decimal places"),
    (("ledger", "credit", "acme", "ten", "--ref", "r"), "not a decimal amount"),
    (("ledger", "credit", "acme", "0", "--ref", "r"), "greater than zero"),
    (("ledger", "link", "--account", "acme"), "exactly one of --card or --wallet"),
    (("ledger", "link", "--card", "c", "--wallet", "w", "--account", "acme"), "exactly one of"),
    (("ledger", "link", "--wallet", "w", "--account", "acme", "--approval-method", "WEBHOOK"), "--card only"),
])
def test_bad_input_is_a_usage_error_with_exit_code_2(tmp_path, args: tuple[str, ...], message: str) -> None:
    code, out = run(*args, "--database-url", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == 2 and message in out


@pytest.mark.parametrize("args", [("ledger", "balance", "ghost"), ("ledger", "statement", "ghost"),
                                  ("ledger", "credit", "ghost", "1.00", "--ref", "r"),
                                  ("ledger", "card", "crd_ghost")])
def test_unknown_account_or_card_is_a_clear_error_with_exit_code_1(tmp_path, args: tuple[str, ...]) -> None:
    code, out = run(*args, "--database-url", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == 1 and ("unknown account 'ghost'" in out or "'crd_ghost' is not linked" in out)


def test_every_ledger_command_explains_itself_with_help() -> None:
    for args in (("db",), ("db", "upgrade"), ("ledger",), ("ledger", "link"), ("ledger", "balance"),
                 ("ledger", "statement"), ("ledger", "credit"), ("ledger", "card")):
        code, out = run(*args, "--help")
        assert code == 0 and "Usage: " in out and "--help" in out


def test_database_url_comes_from_hookstream_database_url(tmp_path) -> None:
    env = {**os.environ, "HOOKSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    cli = [sys.executable, "-m", "hookstream.cli"]
    done = subprocess.run([*cli, "ledger", "credit", "acme", "5", "--ref", "r1", "--create"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env.db").exists()
    done = subprocess.run([*cli, "ledger", "balance", "acme", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert json.loads(done.stdout)["available"] == "5.00"
