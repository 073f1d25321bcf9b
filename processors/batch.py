"""The commit step's transaction: one ledger transaction shared by the records a lane handles together.

Each record's claim and effect sit in their own savepoint, so a failing handler undoes only its own
writes. One commit per batch instead of one per event (an fsync each on SQLite) is what makes
thousands of events/s; offsets are finished only after `commit()` returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hookstream.ledger.errors import LedgerTransientError


class BatchBroken(LedgerTransientError):
    """The batch's connection is gone: nothing in it can commit; its records are handled again."""


class Batch:
    """Opened on the first record that needs the ledger; `commit()` or `rollback()` ends it."""

    def __init__(self, ledger: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger = ledger
        self._clock = clock
        self._manager: Any = None
        self._uow: Any = None
        self.opened_at: float | None = None
        self.broken = False
        self.commands = 0  # outbox commands written: the dispatcher is woken after the commit

    def age(self) -> float:
        return 0.0 if self.opened_at is None else self._clock() - self.opened_at

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """A unit of work for one record; its writes vanish if the block raises."""
        if self.broken:
            raise BatchBroken("ledger connection lost inside the batch")
        if self._uow is None:
            self._manager = self._ledger.unit_of_work()
            self._uow = self._manager.__enter__()
            self.opened_at = self._clock()
        try:
            with self._uow.savepoint("hs_event") as uow:
                yield uow
        except LedgerTransientError as exc:
            if "savepoint lost" in str(exc):  # the connection is gone: the batch cannot commit
                self.broken = True
            raise

    def commit(self) -> None:
        """Commit (a no-op when nothing was opened). Raises, rolled back, when the commit fails."""
        manager, self._manager, self._uow = self._manager, None, None
        if manager is None:
            return
        try:
            if self.broken:
                raise BatchBroken("ledger connection lost inside the batch")
            manager.__exit__(None, None, None)
        except Exception as exc:
            try:
                manager.__exit__(type(exc), exc, exc.__traceback__)  # roll back whatever is left
            except Exception:  # noqa: BLE001, S110 — already failed; the rollback is best effort
                pass
            raise
