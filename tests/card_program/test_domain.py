"""The domain package decides from values alone: no I/O library is even importable through it."""

from __future__ import annotations

import subprocess
import sys

from hookstream.domain.effects import ApiCommand
from hookstream.domain.treasury import is_alert
from hookstream.domain.velocity import on_velocity_block

IO_MODULES = ("sqlalchemy", "httpx", "kafka", "psycopg", "sqlite3", "starlette", "uvicorn")


def test_importing_every_domain_module_loads_no_io_library():
    code = ("import sys, pkgutil, importlib, hookstream.domain as d\n"
            "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('hookstream.domain.' + m.name)\n"
            f"print(sorted(n for n in {IO_MODULES!r} if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_velocity_block_is_kept_unless_auto_unblock_which_asks_for_one_unblock_command():
    kept = on_velocity_block("crd_a", linked=True, auto_unblock=False)
    assert (kept.blocked, kept.outcome, kept.commands) == (True, "blocked", [])
    freed = on_velocity_block("crd_b", linked=False, auto_unblock=True)
    assert (freed.blocked, freed.outcome) == (False, "unmatched_unblocked")
    assert freed.commands == [ApiCommand("unblock_card", {"card_id": "crd_b"}, "unblock", order_key="card:crd_b")]


def test_treasury_alerts_are_failed_and_manual_check_in_any_casing():
    assert [is_alert(s) for s in ("FAILED", "manual_check", "success", None)] == [True, True, False, False]
