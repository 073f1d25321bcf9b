"""The retry/park/dead-letter step: what a failed record's key does next.

A transient failure parks the record's key (that key's later records wait behind it, in order)
until its backoff is due; every other key keeps flowing. A permanent failure, or retries used up,
dead-letters the record and the key's queue continues. A deadline-bound record whose retry would
land past its deadline is recorded as expired instead.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kafka import TopicPartition

from hookstream.processors.base import Event, Processor
from hookstream.processors.errors import Failure
from hookstream.processors.retry import Backoff, RetryState, next_retry

DLQ_FAILED_PAUSE_S = 5.0  # the dead-letter topic refused a record: try the record again this much later


@dataclass(slots=True)
class ParkedKey:
    """A key whose head record failed: the head and the key's later records, in offset order."""

    records: deque[Any] = field(default_factory=deque)
    retry: RetryState | None = None  # None: nothing failed, the key only waits behind a rolled-back batch

    @property
    def resume_at(self) -> float:
        return self.retry.resume_at if self.retry is not None else 0.0

    @property
    def attempts(self) -> int:
        return self.retry.attempts if self.retry is not None else 0


class RetryBook:
    """Each failed record's retry state — attempts, first failure, resume time — by (topic, partition, offset).

    Kept outside the lanes, which drop a revoked partition's records: when a rebalance hands the
    partition back, the record fetched again resumes its attempts and its backoff instead of starting
    over. An entry goes when its offset is committed, or when its partition is not assigned back.
    Thread-safe: lanes note and look up, the poll loop forgets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[TopicPartition, dict[int, RetryState]] = {}

    def note(self, record: Any, state: RetryState) -> None:
        with self._lock:
            self._states.setdefault(TopicPartition(record.topic, record.partition), {})[record.offset] = state

    def get(self, record: Any) -> RetryState | None:
        if not self._states:  # the usual case, no failures: no lock taken on the per-record path
            return None
        with self._lock:
            offsets = self._states.get(TopicPartition(record.topic, record.partition))
            return offsets.get(record.offset) if offsets else None

    def committed(self, points: dict[TopicPartition, int]) -> None:
        """Offsets below a committed point are done for good: their retry state goes."""
        with self._lock:
            for tp, point in points.items():
                offsets = self._states.get(tp)
                if offsets is None:
                    continue
                for offset in [o for o in offsets if o < point]:
                    del offsets[offset]
                if not offsets:
                    del self._states[tp]

    def keep_only(self, assigned: list[TopicPartition]) -> None:
        """A new assignment: partitions that went to another member take their records' fate with them."""
        with self._lock:
            for tp in [tp for tp in self._states if tp not in assigned]:
                del self._states[tp]


Next = Literal["retry", "dead_letter", "expired"]


class FailurePolicy:
    """One processor's answer to a failed attempt: retry at a time, dead-letter, or expire."""

    def __init__(self, processor: Processor, backoff: Backoff, book: RetryBook | None = None) -> None:
        self.processor = processor
        self.backoff = backoff
        self.book = book or RetryBook()

    def after(self, failure: Failure, attempt: int, first_failed_at: float, now: float,
              event: Event | None) -> tuple[Next, float]:
        deadline_in = None
        if event is not None:
            deadline = self.processor.deadline(event)
            if deadline is not None:
                deadline_in = deadline.timestamp() - datetime.now(UTC).timestamp()
        return next_retry(self.backoff, failure, attempt, first_failed_at, now,
                          budget_s=self.processor.retry_budget_s, deadline_in_s=deadline_in)

    def park(self, parked: ParkedKey, record: Any, failure: Failure, attempt: int, first_failed_at: float,
             resume_at: float) -> None:
        """Put `record` back at the head of its key's queue, to be tried again at `resume_at`."""
        parked.records.appendleft(record)
        parked.retry = RetryState(record.offset, attempt, first_failed_at, resume_at, failure)
        self.book.note(record, parked.retry)

    def resumed(self, record: Any) -> ParkedKey | None:
        """A record fetched again after a rebalance gave its partition back, that had failed before:
        its key parks at once with the record's attempts and resume time (None: no earlier failure)."""
        state = self.book.get(record)
        if state is None:
            return None
        return ParkedKey(deque([record]), state)

    def batch_lost(self, parked: ParkedKey, records: list[Any], failure: Failure, now: float) -> None:
        """The batch these records were handled in did not commit: handle them again after a backoff.

        They are put back ahead of whatever the key still has queued, in their order; the attempt is
        charged to the key's head, so a batch that keeps failing ends in the dead-letter topic.
        """
        parked.records.extendleft(reversed(records))
        attempts = parked.attempts + 1
        parked.retry = RetryState(records[0].offset, attempts, now, now + self.backoff.delay(attempts), failure)
        self.book.note(records[0], parked.retry)
