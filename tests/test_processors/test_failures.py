"""Failures on the real broker: transient ones retry on a paused partition, permanent ones dead-letter."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from hookstream.schemas import headers as h
from hookstream.settings import Settings
from test_processors.conftest import (
    DEPOSITS, Feed, attempts, deposit, effects, env_for, query, sample_key, wait_until,
)
from fixtures.kafka import read_topic

DLQ = "hookstream.sample.dlq"


def test_transient_failure_retries_with_growing_delays_while_other_partitions_flow(
        settings: Settings, feed: Feed, start_sample, tmp_path: Path) -> None:
    running = start_sample(settings)
    # Partition 0: a dependency failing three times, then an event queued behind it (order).
    feed.send(deposit("flaky", wallet="wal_a", test="transient:3"), partition=0)
    feed.send(deposit("behind-flaky", wallet="wal_a"), partition=0)
    # Partition 1: a 429 asking for 2 s, far longer than the 0.3 s first backoff.
    feed.send(deposit("rate-limited", wallet="wal_b", test="transient:1:2.0"), partition=1)
    wait_until(lambda: any(a[0] == "flaky" for a in attempts(tmp_path)), "the first failure", 30)
    # Partition 2 keeps flowing while 0 and 1 wait.
    others = [f"other-{i}" for i in range(20)]
    for op in others:
        feed.send(deposit(op, wallet="wal_c"), partition=2)

    everything = ["flaky", "behind-flaky", "rate-limited", *others]
    wait_until(lambda: all(effects(settings.database_url)[sample_key(op)] == 1 for op in everything),
               "every effect, retries included", 60)

    log = attempts(tmp_path)
    flaky = [at for op, _, at, _ in log if op == "flaky"]
    assert [n for op, n, _, _ in log if op == "flaky"] == [1, 2, 3, 4]
    gaps = [b - a for a, b in zip(flaky, flaky[1:])]
    # Backoff 0.3·2^(n-1) s, jitter shortening each by at most half: 0.15-0.3, 0.3-0.6, 0.6-1.2
    # (plus a fetch round trip). The floors double, and the third wait exceeds the first's ceiling.
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3 and gaps[2] >= 0.6, gaps
    assert gaps[2] > gaps[0] and gaps[2] > 0.3, gaps
    behind = next(at for op, _, at, _ in log if op == "behind-flaky")
    assert behind > flaky[-1], "a later event of the partition overtook the failing one"
    limited = [at for op, _, at, _ in log if op == "rate-limited"]
    assert len(limited) == 2 and limited[1] - limited[0] >= 2.0, "Retry-After was not honoured"
    last_other = max(at for op, _, at, _ in log if op.startswith("other-"))
    assert last_other < flaky[-1], "partition 2 waited for partition 0's retries"
    assert running.outcome("retried") == 4 and running.outcome("ok") == len(everything)
    assert 'hookstream_retries_total{error_type="TransientError",processor="sample"} 4.0' in running.metrics()
    # A lone consumer joins once: subscribing before the topics' metadata wait gives the first join a full
    # metadata snapshot (the other way round kafka-python rebalanced it again a moment after joining).
    assert running.proc.output().count('"event": "partitions.assigned"') == 1, "rebalanced after joining"


def test_past_deadline_events_are_recorded_expired_and_never_retried(
        settings: Settings, feed: Feed, start_sample, tmp_path: Path) -> None:
    running = start_sample(settings)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    feed.send(deposit("too-late", expires_at=past), partition=0)
    # Its dependency asks for 5 s, past the event's deadline: expire instead of retrying.
    feed.send(deposit("would-be-late", expires_at=soon, test="transient:9:5"), partition=1)
    feed.send(deposit("on-time"), partition=2)
    wait_until(lambda: running.outcome("expired") == 2 and running.outcome("ok") == 1, "two expired, one handled", 30)
    assert set(effects(settings.database_url)) == {sample_key("on-time")}
    assert [op for op, *_ in attempts(tmp_path)].count("would-be-late") == 1
    outcomes = dict(query(settings.database_url, "SELECT dedup_key, outcome FROM inbox"))
    assert outcomes == {sample_key("too-late"): "expired", sample_key("would-be-late"): "expired",
                        sample_key("on-time"): "ok"}
    assert running.outcome("retried") == 0
    # Lag is observed after each batch's offsets are committed, a moment after the outcomes.
    metrics = wait_until(lambda: next((m for m in [running.metrics()] if "hookstream_consumer_lag{" in m), None),
                         "the consumer lag gauge", 10)
    assert 'hookstream_event_age_seconds_count{processor="sample"} 3.0' in metrics
    assert 'hookstream_consumer_lag{partition="0",processor="sample",topic="%s"} 0.0' % settings.topic(DEPOSITS) \
        in metrics
    assert httpx.get(f"http://127.0.0.1:{running.port}/healthz", timeout=5).status_code == 200


def _dlq(settings: Settings, tmp_path: Path, *args: str) -> str:
    """`hookstream dlq ARGS` as an operator runs it; its output (progress goes to stderr)."""
    env = {**os.environ, **env_for(settings, tmp_path)}
    done = subprocess.run([sys.executable, "-m", "hookstream.cli", "dlq", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_permanent_failure_dead_letters_whole_and_replay_after_the_fix_applies_once(
        ledger_settings: Settings, start_sample, tmp_path: Path) -> None:
    s = ledger_settings
    (tmp_path / "broken").touch()  # the cause: the sample refuses "permanent" events while it exists
    feed = Feed(s)
    body = deposit("bad", wallet="wal_x", amount="7.00", test="permanent")
    offset = feed.send(body, partition=1, **{h.TRACE_ID: "trace-test"})  # original headers travel along
    feed.send(deposit("fine", wallet="wal_x"), partition=1)
    feed.close()
    running = start_sample(s)

    dead = read_topic(s, DLQ, expect=1, timeout=30)
    assert len(dead) == 1
    letter = dead[0]
    assert letter.value == body, "dead letter must be the original bytes"
    assert letter.key == b"wal_x"
    hd = letter.headers
    assert (hd[h.ORIGIN_TOPIC], hd[h.ORIGIN_PARTITION], hd[h.ORIGIN_OFFSET]) == (s.topic(DEPOSITS), "1", str(offset))
    assert (hd[h.ERROR_TYPE], hd[h.ERROR_MESSAGE]) == ("PermanentError", "sample refuses this event")
    assert (hd[h.ATTEMPTS], hd[h.PROCESSOR]) == ("1", "sample")
    assert int(hd[h.DEAD_LETTERED_AT]) >= int(hd[h.RECEIVED_AT])
    assert hd[h.DEDUP_KEY] == sample_key("bad") and hd[h.TRACE_ID] == "trace-test"
    wait_until(lambda: effects(s.database_url)[sample_key("fine")] == 1, "the event behind it", 30)
    assert running.outcome("dead_lettered") == 1
    assert effects(s.database_url)[sample_key("bad")] == 0, "the failed attempt's write survived"

    listed = _dlq(s, tmp_path, "list", "sample")
    assert "PermanentError" in listed and f"{s.topic(DEPOSITS)}:1@{offset}" in listed
    shown = _dlq(s, tmp_path, "show", "sample", "--offset", "0")
    assert "hs-origin-offset: " + str(offset) in shown and '"operation_id": "bad"' in shown

    # Replayed before the fix: it fails again, and a dead letter replayed once is then refused.
    assert "replayed 1, refused 0" in _dlq(s, tmp_path, "replay", "sample")
    again = read_topic(s, DLQ, expect=2, timeout=30)
    assert len(again) == 2 and again[1].headers[h.REPLAY_COUNT] == "1"
    assert again[1].value == body
    refused = _dlq(s, tmp_path, "replay", "sample")
    assert "replayed 0, refused 1" in refused and "replayed 1 times already" in refused

    # The fix, then a replay from the start: the effect lands once.
    (tmp_path / "broken").unlink()
    dry = _dlq(s, tmp_path, "replay", "sample", "--since", "1h", "--dry-run")
    assert "would replay 1, refused 1" in dry
    assert "replayed 1, refused 1" in _dlq(s, tmp_path, "replay", "sample", "--since", "1h", "--rate", "5")
    wait_until(lambda: effects(s.database_url)[sample_key("bad")] == 1, "the replayed effect", 30)

    # Replaying the same dead letter again changes nothing: the inbox calls it a duplicate.
    assert "replayed 1, refused 1" in _dlq(s, tmp_path, "replay", "sample", "--since", "1h")
    wait_until(lambda: running.outcome("duplicate") == 1, "the second replay counted as duplicate", 30)
    got = effects(s.database_url)
    assert got[sample_key("bad")] == 1 and got[sample_key("fine")] == 1
    assert len(read_topic(s, DLQ, expect=2, timeout=5)) == 2, "a duplicate must not be dead-lettered"
