"""Key-ordered lanes on the real broker and both ledgers: one key in order, keys in parallel, a failing key parks alone."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx

from hookstream.settings import Settings
from test_processors.conftest import (
    Feed, attempts, committed, deposit, effects, query, sample_key, wait_until,
)
from fixtures.kafka import read_topic

DLQ = "hookstream.sample.dlq"
LANES = {"HOOKSTREAM_PROCESSOR_CONCURRENCY": "32"}


def _order_by_key(database_url: str) -> dict[str, list[str]]:
    """Each account's postings (memo = dedup key) in the order the ledger wrote them."""
    rows = query(database_url, "SELECT account_id, memo FROM postings ORDER BY id")
    out: dict[str, list[str]] = {}
    for account, memo in rows:
        out.setdefault(account, []).append(memo)
    return out


def _all_once(effects_now: Counter[str], keys: list[str]) -> bool:
    return all(effects_now[k] == 1 for k in keys)


def _inbox_offsets(database_url: str) -> dict[int, set[int]]:
    rows = query(database_url, 'SELECT "partition", "offset" FROM inbox WHERE processor = :p', p="sample")
    out: dict[int, set[int]] = {}
    for partition, offset in rows:
        out.setdefault(partition, set()).add(offset)
    return out


def test_each_keys_effects_apply_in_order_under_32_lanes_also_across_retries(
        ledger_settings: Settings, start_sample, tmp_path: Path) -> None:
    s = ledger_settings
    feed = Feed(s)
    wallets, per_wallet = 40, 8
    sequence: dict[str, list[str]] = {}
    for n in range(per_wallet):
        for w in range(wallets):
            op = f"w{w}-seq{n}"
            # Every fifth event fails twice before it applies: the key's later events must wait.
            feed.send(deposit(op, wallet=f"wal_{w}", **({"test": "transient:2"} if (w + n) % 5 == 0 else {})))
            sequence.setdefault(f"wal_{w}", []).append(sample_key(op))
    feed.close()

    running = start_sample(s, **LANES)
    assert running.log_events("processor.joining")[0]["lanes"] == 32
    every = [k for keys in sequence.values() for k in keys]
    wait_until(lambda: _all_once(effects(s.database_url), every), "every effect", 120)
    assert sum(effects(s.database_url).values()) == len(every), "an effect applied twice"
    assert _order_by_key(s.database_url) == sequence, "a key's effects applied out of order"
    retried = [op for op, attempt, _, _ in attempts(tmp_path) if attempt == 3]
    assert len(retried) == wallets * per_wallet // 5, "the retries did not happen"
    wait_until(lambda: sum(committed(s).values()) == len(every), "offsets of every event committed", 30)


def test_a_failing_key_parks_while_99_other_keys_in_its_partition_finish_and_commit_stops_at_it(
        ledger_settings: Settings, start_sample, tmp_path: Path) -> None:
    s = ledger_settings
    (tmp_path / "broken").touch()  # the parked key's dependency is down until the file goes
    feed = Feed(s)
    before = [f"before-{i}" for i in range(10)]
    for i, op in enumerate(before):
        feed.send(deposit(op, wallet=f"wal_{i}"), partition=0)
    # Retry-After 20 s: six attempts outlast the test, so the key stays parked until the file goes.
    parked_at = feed.send(deposit("parked-0", wallet="wal_parked", test="stuck:20"), partition=0)
    # A key whose retries run out: dead-lettered, then its queue continues.
    feed.send(deposit("doomed-0", wallet="wal_doomed", test="transient:1000"), partition=0)
    others = []
    for n in range(3):
        feed.send(deposit(f"parked-{n + 1}", wallet="wal_parked"), partition=0)
        feed.send(deposit(f"doomed-{n + 1}", wallet="wal_doomed"), partition=0)
        for w in range(99):
            others.append(f"w{w}-{n}")
            feed.send(deposit(others[-1], wallet=f"wal_{w}"), partition=0)
    total = feed.send(deposit("last", wallet="wal_last"), partition=0) + 1
    feed.close()

    running = start_sample(s, **LANES)
    # One ledger read per check (a read per event made one check of 301 events take ~100 s under load,
    # long enough for the parked key to use up its attempts while the test was still looking).
    flowing = [sample_key(op) for op in [*before, *others, "last"]]
    wait_until(lambda: _all_once(effects(s.database_url), flowing), "the 99 other keys of the partition to finish", 120)
    doomed_later = [sample_key(f"doomed-{n}") for n in range(1, 4)]
    wait_until(lambda: _all_once(effects(s.database_url), doomed_later),
               "the dead-lettered key's queue to continue", 120)
    got = effects(s.database_url)
    assert not any(got[sample_key(f"parked-{n}")] for n in range(4)), "the parked key's events overtook it"
    # Everything below the parked record is finished; the commit stops exactly at it.
    wait_until(lambda: committed(s).get(0) == parked_at, "the commit to reach the parked record", 30)
    handled = _inbox_offsets(s.database_url)[0]
    assert handled >= set(range(parked_at)) and parked_at not in handled and max(handled) == total - 1
    dead = read_topic(s, DLQ, expect=1)
    assert [r.value for r in dead] and all(b'"doomed-0"' in r.value for r in dead), "not the doomed record"
    assert len(dead) == 1

    (tmp_path / "broken").unlink()  # the dependency is back: the key resumes, in order
    parked = [sample_key(f"parked-{n}") for n in range(4)]
    wait_until(lambda: _all_once(effects(s.database_url), parked), "the parked key's events", 60)
    assert _order_by_key(s.database_url)["wal_parked"] == parked
    assert _order_by_key(s.database_url)["wal_doomed"] == [sample_key(f"doomed-{n}") for n in range(1, 4)]
    wait_until(lambda: committed(s).get(0) == total, "the commit to reach the end of the partition", 30)
    assert running.outcome("dead_lettered") == 1



def test_a_lane_stuck_on_one_record_makes_healthz_fail_while_the_poll_loop_runs(
        settings: Settings, start_sample, tmp_path: Path) -> None:
    running = start_sample(settings)
    feed = Feed(settings)
    feed.send(deposit("hangs", wallet="wal_h", test="slow:60"), partition=0)
    feed.close()

    def healthz() -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{running.port}/healthz", timeout=5)

    wait_until(lambda: any(op == "hangs" for op, *_ in attempts(tmp_path)), "the handler to start", 30)
    assert healthz().status_code == 200
    stuck = wait_until(lambda: (r := healthz()).status_code == 503 and r, "/healthz to report the stuck lane", 60)
    assert "stuck" in stuck.text and ":0@0" in stuck.text
