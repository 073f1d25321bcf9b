"""The commit point: per partition, the lowest offset handed out and not finished — never past it."""

from __future__ import annotations

from types import SimpleNamespace

from kafka import TopicPartition

from hookstream.processors.errors import Failure
from hookstream.processors.offsets import OffsetTracker
from hookstream.processors.parking import RetryBook
from hookstream.processors.retry import RetryState

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_offsets_finished_out_of_order_commit_only_up_to_the_first_unfinished() -> None:
    tracker = OffsetTracker()
    tracker.started(P0, [10, 11, 12, 13])
    tracker.finish(P0, 12)
    tracker.finish(P0, 13)
    assert tracker.commit_points() == {P0: 10}  # 10 and 11 unfinished: nothing above them counts
    tracker.finish(P0, 10)
    assert tracker.commit_points() == {P0: 11}
    tracker.finish(P0, 11)
    assert tracker.commit_points() == {P0: 14}
    assert tracker.commit_points() == {}, "an unchanged point is not committed again"
    assert tracker.in_flight() == 0


def test_a_revoked_partition_is_forgotten_and_late_finishes_for_it_are_ignored() -> None:
    tracker = OffsetTracker()
    tracker.started(P0, [0, 1])
    tracker.started(P1, [5])
    tracker.finish(P1, 5)
    assert tracker.commit_points(only=[P1]) == {P1: 6}
    tracker.forget([P0])
    tracker.finish(P0, 0)
    assert tracker.commit_points() == {}
    assert tracker.in_flight() == 0


def test_a_partition_given_back_resumes_at_its_lowest_unfinished_offset_and_old_finishes_change_nothing() -> None:
    tracker = OffsetTracker()
    tracker.started(P0, [3, 4, 5])
    tracker.finish(P0, 3)
    tracker.finish(P0, 5)
    tracker.started(P1, [7])
    tracker.finish(P1, 7)
    assert tracker.resume_points([P0, P1]) == {P0: 4, P1: 8}
    tracker.forget([P0, P1])
    tracker.started(P0, [4, 5])  # fetched again from the resume point
    tracker.finish(P0, 3)  # a lane finishing a record it had before the revocation: below the point
    assert tracker.commit_points() == {P0: 4}
    tracker.finish(P0, 5)
    tracker.finish(P0, 4)
    assert tracker.commit_points() == {P0: 6}
    assert tracker.in_flight() == 0


def test_retry_state_outlives_the_lanes_until_its_offset_is_committed_or_its_partition_leaves() -> None:
    book = RetryBook()
    failed = SimpleNamespace(topic="t", partition=0, offset=4)
    other = SimpleNamespace(topic="t", partition=1, offset=9)
    state = RetryState(4, 2, first_failed_at=10.0, resume_at=12.5, last=Failure("transient", "TransientError", "x"))
    book.note(failed, state)
    book.note(other, RetryState(9, 1, 10.0, 11.0, Failure("transient", "TransientError", "x")))
    assert book.get(SimpleNamespace(topic="t", partition=0, offset=4)) is state  # the record fetched again
    book.keep_only([P0])  # partition 1 went to another member
    assert book.get(other) is None
    book.committed({P0: 4})  # the commit point reached the failed record, not past it
    assert book.get(failed) is state
    book.committed({P0: 5})
    assert book.get(failed) is None
