"""The commit point: per partition, the lowest offset handed out and not finished — never past it."""

from __future__ import annotations

from kafka import TopicPartition

from hookstream.processors.offsets import OffsetTracker

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
