"""Real processes on the real broker: crashes, rebalances and shutdowns lose and double nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hookstream.processors.runtime import lane_count
from hookstream.settings import Settings
from hookstream.ledger import Ledger
from test_processors.conftest import (
    DECIDING, SAMPLE, Feed, Running, attempts, committed, deposit, effects, query, sample_key, wait_until,
)
from test_processors.sample import SampleProcessor


def _all_once(database_url: str, ops: list[str]) -> bool:
    got = effects(database_url)
    return all(got[sample_key(op)] == 1 for op in ops)


def _assert_exactly_once(database_url: str, ops: list[str]) -> None:
    got = effects(database_url)
    assert {sample_key(op) for op in ops} == set(got)
    doubled = {k: n for k, n in got.items() if n != 1}
    assert not doubled, f"effects applied more than once: {doubled}"


@pytest.mark.parametrize("lanes,spec", [("default", SAMPLE), ("32", SAMPLE), ("32", DECIDING)],
                         ids=["handle-default", "handle-32", "decide-32"])
def test_sigkill_mid_stream_then_restart_applies_every_effect_exactly_once(
        ledger_settings: Settings, start_sample, tmp_path: Path, lanes: str, spec: str) -> None:
    s = ledger_settings
    env = {} if lanes == "default" else {"HOOKSTREAM_PROCESSOR_CONCURRENCY": lanes}
    env["spec"] = spec
    if spec == DECIDING:  # the pure contract cannot create accounts: they exist, as in production
        books = Ledger(s.database_url)
        with books.unit_of_work() as uow:
            for w in range(7):
                uow.ensure_account(f"wal_{w}")
        books.close()
    feed = Feed(s)
    ops = [f"kill-{i}" for i in range(300)]
    # 7 keys: with 8 or 32 lanes at most 7 run at once, each key's 43 events one after another (on SQLite
    # one at a time whatever the lanes: a handler sleeps inside its write transaction). Each event takes long
    # enough that the whole stream needs ~6 s of handling: time to kill the process mid-stream on a fast
    # machine as on a slow one.
    lanes_used = int(lanes) if lanes != "default" else lane_count(SampleProcessor(s), s, s.database_url)
    running = 1 if s.database_url.startswith("sqlite") else min(7, lanes_used)
    slow = round(6.0 * running / len(ops), 3)
    for i, op in enumerate(ops):
        feed.send(deposit(op, wallet=f"wal_{i % 7}", test=f"slow:{slow}"))
    feed.close()

    first = start_sample(s, name="first", **env)
    wait_until(lambda: len(effects(s.database_url)) >= 40 and sum(committed(s).values()) > 0,
               "the first process to be mid-stream, offsets committed", 60)
    first.proc.kill()  # SIGKILL: no drain, no commit of what is in hand
    at_kill = committed(s)
    handled = _handled_offsets(s.database_url)
    done_before = len(effects(s.database_url))
    assert done_before < len(ops), "the process finished before it could be killed mid-stream"
    for partition, point in at_kill.items():  # lanes finish out of order: never commit past a gap
        missing = set(range(point)) - set(handled.get(partition, []))
        assert not missing, f"committed {point} on partition {partition} past unfinished {sorted(missing)[:5]}"

    second = start_sample(s, name="second", **env)
    wait_until(lambda: _all_once(s.database_url, ops), "every event's effect after the restart", 120)
    wait_until(lambda: sum(committed(s).values()) == len(ops), "offsets of every event committed", 30)
    _assert_exactly_once(s.database_url, ops)
    # Anything the killed process applied but had not committed came back and was skipped.
    assert second.outcome("ok") + second.outcome("duplicate") >= len(ops) - done_before


def test_two_processes_split_partitions_and_one_stopping_loses_and_doubles_nothing(
        settings: Settings, start_sample) -> None:
    s = settings
    a = start_sample(s, name="a")
    b = start_sample(s, name="b")

    def split() -> bool:
        pa, pb = _assigned(a), _assigned(b)
        return bool(pa) and bool(pb) and not (pa & pb) and len(pa | pb) == s.topic_partitions

    wait_until(split, "the group to split the partitions between both processes", 60)

    feed = Feed(s)
    ops = [f"pair-{i}" for i in range(150)]
    for i, op in enumerate(ops):
        feed.send(deposit(op, wallet=f"wal_{i % 11}", test="slow:0.01"))
    feed.close()
    wait_until(lambda: len(effects(s.database_url)) >= 20, "both processes to be working", 60)
    assert a.proc.stop(timeout=20) == 0  # SIGTERM while records are in flight

    wait_until(lambda: len(_assigned(b)) == s.topic_partitions, "b to take over every partition", 60)
    wait_until(lambda: _all_once(s.database_url, ops), "every event's effect", 90)
    wait_until(lambda: sum(committed(s).values()) == len(ops), "offsets of every event committed", 30)
    _assert_exactly_once(s.database_url, ops)


def test_a_rebalance_while_a_key_is_parked_keeps_its_order_and_applies_everything_once(
        settings: Settings, start_sample, tmp_path: Path) -> None:
    """A key waiting out a transient failure when the group rebalances (a second process joins, then the
    first stops): its failed event and the ones queued behind it are neither lost, nor applied twice, nor
    reordered, whichever process ends up owning the partition; the other keys of the partition flow."""
    s = settings
    feed = Feed(s)
    a = start_sample(s, name="a", HOOKSTREAM_PROCESSOR_CONCURRENCY="8")
    # On partition 0: a failing event of wal_k (3 failures, each asking for 4 s: time for a process to join
    # while it waits), four events of wal_k behind it, and 40 events of other keys; more keys elsewhere.
    feed.send(deposit("flaky", wallet="wal_k", test="transient:3:4.0"), partition=0)
    behind = [f"behind-{i}" for i in range(4)]
    for op in behind:
        feed.send(deposit(op, wallet="wal_k"), partition=0)
    others = [f"other-{i}" for i in range(40)]
    for i, op in enumerate(others):
        feed.send(deposit(op, wallet=f"wal_{i % 5}", test="slow:0.02"), partition=0)
    elsewhere = [f"elsewhere-{i}" for i in range(60)]
    for i, op in enumerate(elsewhere):
        feed.send(deposit(op, wallet=f"wal_x{i % 7}", test="slow:0.02"), partition=1 + i % (s.topic_partitions - 1))
    feed.close()
    wait_until(lambda: any(op == "flaky" for op, *_ in attempts(tmp_path)), "the first failure", 30)

    # While wal_k is parked: a second process joins (the group rebalances), then the first stops (SIGTERM).
    b = start_sample(s, name="b", HOOKSTREAM_PROCESSOR_CONCURRENCY="8")
    wait_until(lambda: bool(_assigned(b)), "the second process to get partitions", 60)
    flaky_done = lambda: sample_key("flaky") in effects(s.database_url)  # noqa: E731
    assert not flaky_done(), "the parked key finished before the rebalance"
    assert a.proc.stop(timeout=20) == 0
    wait_until(lambda: len(_assigned(b)) == s.topic_partitions, "the second process to own every partition", 60)

    ops = ["flaky", *behind, *others, *elsewhere]
    wait_until(lambda: _all_once(s.database_url, ops), "every effect", 90)
    wait_until(lambda: sum(committed(s).values()) == len(ops), "offsets of every event committed", 30)
    _assert_exactly_once(s.database_url, ops)
    log = attempts(tmp_path)
    flaky = [(n, at) for op, n, at, _ in log if op == "flaky"]
    succeeded = flaky[-1][1]
    assert len(flaky) >= 4, flaky  # three failures at least (a new owner counts its own), then the success
    firsts = [min(at for op, _, at, _ in log if op == o) for o in behind]
    assert min(firsts) > succeeded, "an event of the parked key overtook its failed one"
    assert firsts == sorted(firsts), "the parked key's events ran out of order"
    assert max(at for op, _, at, _ in log if op in others) < succeeded, "the partition waited for the parked key"
    assert b.outcome("dead_lettered") == 0


def test_sigterm_drains_within_the_bound_and_commits_exactly_the_handled_offsets(
        settings: Settings, start_sample) -> None:
    s = settings
    feed = Feed(s)
    ops = [f"drain-{i}" for i in range(200)]
    for i, op in enumerate(ops):
        feed.send(deposit(op, wallet=f"wal_{i % 5}", test="slow:0.05"))
    feed.close()
    running = start_sample(s)
    wait_until(lambda: len(effects(s.database_url)) >= 15, "processing to be under way", 60)

    started = time.monotonic()
    running.proc.signal(signal.SIGTERM)
    rc = running.proc.wait(timeout=s.processor_shutdown_timeout_s + 5)
    took = time.monotonic() - started
    assert rc == 0, running.proc.output()[-2000:]
    assert took < s.processor_shutdown_timeout_s
    assert '"processor.stopped"' in running.proc.output()

    handled = _handled_offsets(s.database_url)
    assert 0 < sum(len(v) for v in handled.values()) < len(ops), "stopped before or after the stream"
    offsets = committed(s)
    for partition, done in handled.items():
        # Offsets are contiguous from 0: committed == handled means "next = number handled".
        assert sorted(done) == list(range(len(done)))
        assert offsets.get(partition, 0) == len(done), (partition, offsets, len(done))
    assert sum(offsets.values()) == sum(len(v) for v in handled.values())


def _assigned(running: Running) -> set[str]:
    lines = running.log_events("partitions.assigned")
    return set(lines[-1]["partitions"]) if lines else set()


def _handled_offsets(database_url: str) -> dict[int, list[int]]:
    """Inbox claims of the sample processor, by partition: what was handled and committed to the DB."""
    rows = query(database_url, 'SELECT "partition", "offset" FROM inbox WHERE processor = :p', p="sample")
    out: dict[int, list[int]] = {}
    for partition, offset in rows:
        out.setdefault(partition, []).append(offset)
    return out


