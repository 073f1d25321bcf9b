"""The pure contract on the real broker and both ledgers: decide(event, view) -> Effects, applied per batch.

A batch of decided events is claimed event by event and applied set-based at its commit; these tests
hold it to the promises of the imperative contract: exactly once, failures kept to their own events
(and their keys), a posting already there never posted twice, and a decision seeing its batch's
earlier decisions.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fixtures.kafka import read_topic
from hookstream.ledger import Ledger
from hookstream.settings import Settings
from test_processors.conftest import DECIDING, DEPOSITS, Feed, attempts, deposit, effects, query, sample_key, wait_until

DLQ = "hookstream.sample.dlq"


def _accounts(url: str, *ids: str, pre_posted: tuple[str, str, str] | None = None) -> None:
    books = Ledger(url)
    try:
        with books.unit_of_work() as uow:
            for account in ids:
                uow.ensure_account(account)
            if pre_posted is not None:
                account, amount, dedup = pre_posted
                uow.credit(account, Decimal(amount), dedup, memo=dedup)
    finally:
        books.close()


def _balances(url: str, *ids: str) -> dict[str, tuple[Decimal, Decimal]]:
    """(running balance, balance recomputed from the postings) per account."""
    books = Ledger(url)
    try:
        with books.unit_of_work(read_only=True) as uow:
            return {a: (uow.balance(a).balance, uow.recomputed_balance(a).balance) for a in ids}
    finally:
        books.close()


def test_a_deciding_processor_applies_its_batches_exactly_once_and_keeps_failures_to_their_events(
        ledger_settings: Settings, start_sample, tmp_path: Path) -> None:
    s = ledger_settings
    # wal_b already holds a posting under the dedup key of the "pre-posted" event (another processor's, say).
    _accounts(s.database_url, "wal_a", "wal_b", pre_posted=("wal_b", "5.00", sample_key("pre-posted")))
    (tmp_path / "broken").touch()  # "permanent" events fail while it exists

    feed = Feed(s)
    a_ops = [f"a-{i}" for i in range(40)]
    for i, op in enumerate(a_ops):  # one key: decided in order, most of them in one batch
        feed.send(deposit(op, wallet="wal_a", amount="1.25"), partition=0)
        if i == 20:
            feed.send(deposit("boom", wallet="wal_a", amount="9.00", test="permanent"), partition=0)
    feed.send(deposit("a-5", wallet="wal_a", amount="1.25"), partition=0)  # a redelivery
    feed.send(deposit("nowhere", wallet="wal_missing", amount="3.00"), partition=1)
    feed.send(deposit("pre-posted", wallet="wal_b", amount="7.00"), partition=1)
    feed.send(deposit("flaky", wallet="wal_b", amount="1.00", test="transient:2"), partition=1)
    feed.send(deposit("behind-flaky", wallet="wal_b", amount="1.00"), partition=1)
    b_ops = [f"b-{i}" for i in range(10)]
    for op in b_ops:
        feed.send(deposit(op, wallet="wal_b", amount="2.00"), partition=2)
        if op == "b-4":  # without the receiver's dedup-key header (claimed on its own, not with the batch), twice
            for _ in range(2):
                feed.producer.send(s.topic(DEPOSITS), value=deposit("headerless", wallet="wal_b", amount="0.50"),
                                   key=b"wal_b", partition=2).get(timeout=30)
    feed.close()

    running = start_sample(s, spec=DECIDING)
    applied = [*a_ops, "flaky", "behind-flaky", *b_ops, "headerless"]
    wait_until(lambda: running.outcome("ok") == len(applied) and running.outcome("dead_lettered") == 2
               and running.outcome("duplicate") == 3, "every event decided, applied, refused or skipped", 60)

    # Money: each credit once, the pre-posted one not again, nothing for the refused events.
    balances = _balances(s.database_url, "wal_a", "wal_b")
    assert balances["wal_a"] == (Decimal("50.00"), Decimal("50.00"))
    assert balances["wal_b"] == (Decimal("27.50"), Decimal("27.50"))  # 5.00 before + 2 × 1.00 + 10 × 2.00 + 0.50
    got = effects(s.database_url)
    assert {k: n for k, n in got.items() if n != 1} == {}
    assert set(got) == {sample_key(op) for op in [*applied, "pre-posted"]}
    # The inbox: a claim per applied event, the pre-posted one a duplicate, the refused ones' claims taken back.
    inbox = dict(query(s.database_url, "SELECT dedup_key, outcome FROM inbox WHERE processor = 'sample'"))
    assert inbox == {**{sample_key(op): "ok" for op in applied}, sample_key("pre-posted"): "duplicate"}
    # Refused events went to the dead-letter topic, the rest of their batches committed around them.
    letters = read_topic(s, DLQ, expect=2)
    assert sorted(r.value for r in letters) == sorted([
        deposit("boom", wallet="wal_a", amount="9.00", test="permanent"),
        deposit("nowhere", wallet="wal_missing", amount="3.00")])
    # A transient failure parks its key: retried, then its key's next event, in order.
    log = attempts(tmp_path)
    assert [n for op, n, _, _ in log if op == "flaky"] == [1, 2, 3]
    assert next(at for op, _, at, _ in log if op == "behind-flaky") > max(at for op, _, at, _ in log if op == "flaky")
    # Each decision saw the balance its key's earlier decisions left, staged in its batch or committed.
    seen = [n["seen"] for n in running.log_events("sample.decided") if n["account"] == "wal_a"]
    assert seen == [str(Decimal("1.25") * i) for i in range(40)]
