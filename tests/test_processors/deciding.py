"""The sample processor on the pure contract: `decide(event, view) -> Effects`, applied set-based per batch.

Run it as `hookstream process test_processors.deciding:DecidingSample` with PYTHONPATH=tests.

It credits `data.amount` to the account named by `data.wallet_id` (the account must exist) and notes the
balance it saw (`sample.decided`, `seen`: the account's balance before this credit, including what the
batch's earlier decisions staged). `data.test` picks a failure, as in `sample.py`:
  "transient:N"  fail transiently on the first N decisions of this operation
  "permanent"    fail permanently while the file $SAMPLE_BROKEN_FILE exists
  "slow:S"       take S seconds
Each decision appends "operation_id attempt epoch_seconds pid" to $SAMPLE_ATTEMPTS_FILE (attempt counted there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hookstream.domain.effects import Effects
from hookstream.processors import Event, PermanentError, Processor, TransientError
from hookstream.processors.view import LedgerView
from hookstream.schemas.routing import DEPOSITS


class DecidingSample(Processor):
    name = "sample"
    topics = (DEPOSITS,)
    event_types = frozenset({"deposit"})

    def decide(self, event: Event, view: LedgerView) -> Effects:
        attempt = _count_attempt(event.operation_id)
        account = event.data.wallet_id  # type: ignore[attr-defined]
        behaviour = str((event.data.model_extra or {}).get("test", ""))
        kind, _, arg = behaviour.partition(":")
        broken = os.environ.get("SAMPLE_BROKEN_FILE")
        if kind == "transient" and attempt <= int(arg):
            raise TransientError("sample flaky dependency")
        if kind == "permanent" and broken and os.path.exists(broken):
            raise PermanentError("sample refuses this event")
        if kind == "slow":
            time.sleep(float(arg))
        seen = view.balance(account).balance if view.account_exists(account) else None
        return (Effects().credit(account, event.data.amount, memo=event.dedup_key)  # type: ignore[attr-defined]
                .note("info", "sample.decided", account=account, seen=str(seen), attempt=attempt))


def _count_attempt(operation_id: str) -> int:
    path = os.environ.get("SAMPLE_ATTEMPTS_FILE")
    if not path:
        return 1
    file = Path(path)
    before = sum(1 for line in file.read_text().splitlines() if line.split()[0] == operation_id) \
        if file.exists() else 0
    with open(file, "a") as out:
        out.write(f"{operation_id} {before + 1} {time.time():.6f} {os.getpid()}\n")
    return before + 1
