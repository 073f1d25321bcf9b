"""Committable offsets: per partition, the lowest offset handed out for processing and not yet finished.

Records of one partition finish out of order when their keys run in different lanes (or one key is
parked), so the commit point is never "the last finished" but the first unfinished: everything
below it is done, and a crash redelivers from it (the inbox turns the finished ones into duplicates).
"""

from __future__ import annotations

import threading
from collections import deque

from kafka import TopicPartition


class _Partition:
    __slots__ = ("order", "done", "next")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # offsets handed out, in offset order
        self.done: set[int] = set()  # finished, but above an unfinished one
        self.next = -1  # offset after the last one handed out


class OffsetTracker:
    """Thread-safe: the poll loop hands offsets out, lanes finish them, the poll loop commits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offsets: list[int]) -> None:
        """Offsets fetched and handed to the lanes (ascending, as a fetch returns them)."""
        with self._lock:
            part = self._parts.get(tp)
            if part is None:
                part = self._parts[tp] = _Partition()
            part.order.extend(offsets)
            if offsets:
                part.next = offsets[-1] + 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """The record's effect is durable (ledger committed, dead letter acked, or nothing to do)."""
        with self._lock:
            part = self._parts.get(tp)
            if part is None or not part.order or offset < part.order[0]:
                # Revoked meanwhile (its new owner redelivers), or a copy handed out again after the
                # partition came back was finished already: nothing above the commit point changes.
                return
            part.done.add(offset)
            while part.order and part.order[0] in part.done:
                part.done.discard(part.order.popleft())

    def in_flight(self) -> int:
        """Records handed out and not finished, over all partitions (for back-pressure)."""
        with self._lock:
            return sum(len(p.order) - len(p.done) for p in self._parts.values())

    def commit_points(self, only: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Next offset to commit per partition, where it moved since the last call."""
        out: dict[TopicPartition, int] = {}
        with self._lock:
            for tp, part in self._parts.items():
                if only is not None and tp not in only:
                    continue
                point = part.order[0] if part.order else part.next
                if point >= 0 and self._committed.get(tp) != point:
                    out[tp] = point
                    self._committed[tp] = point
        return out

    def resume_points(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where fetching must resume for each partition: its lowest unfinished offset (else the next)."""
        with self._lock:
            points = {tp: part.order[0] if part.order else part.next
                      for tp in tps if (part := self._parts.get(tp)) is not None}
        return {tp: point for tp, point in points.items() if point >= 0}

    def forget(self, tps: list[TopicPartition]) -> None:
        """Partitions revoked: what is still unfinished there is the next owner's to redeliver."""
        with self._lock:
            for tp in tps:
                self._parts.pop(tp, None)
                self._committed.pop(tp, None)
