"""Authorization decisions are idempotent, isolated from bad neighbours, and survive a database restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from decimal import Decimal

import httpx
import psycopg
import pytest

from fixtures.http_load import post_many
from fixtures.kafka import read_topic
from fixtures.postgres import START_TIMEOUT_S, LocalPostgres, _conninfo
from hookstream.domain.authorization import MAX_BILL_CENTS
from hookstream.kafka import ensure_topics
from hookstream.ledger import Ledger, decide_pg
from hookstream.schemas import headers as h
from hookstream.schemas.routing import TOPICS
from test_ingest.conftest import KEY
from test_ingest.test_ledger_policy import POLICY, _auth, _fund

TRANSACTIONS = "cryptomate.cards.transactions"


def _code(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["response_code"]


def _holds(ledger: Ledger) -> dict[str, str]:
    """operation id → hold status, for every hold in the books."""
    with ledger.unit_of_work(read_only=True) as uow:
        rows = uow.connection.exec_driver_sql("SELECT operation_id, status FROM holds").all()
    return dict(rows)


def _recorded(ledger: Ledger) -> dict[str, tuple[str, bool]]:
    """operation id → (recorded answer, has a hold id) from the decisions table."""
    with ledger.unit_of_work(read_only=True) as uow:
        rows = uow.connection.exec_driver_sql(
            "SELECT operation_id, response_code, hold_id FROM authorization_decisions").all()
    return {op: (code, hold is not None) for op, code, hold in rows}


class _Blocker:
    """Holds the account's lock (Postgres: its row; SQLite: the write lock) until released."""

    def __init__(self, url: str, account: str) -> None:
        if url.startswith("sqlite"):
            self._conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self._conn.execute("BEGIN IMMEDIATE")
            self.release = lambda: self._conn.execute("ROLLBACK")
        else:
            self._conn = psycopg.connect(_conninfo(url))
            self._conn.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (account,))
            self.release = self._conn.rollback

    def close(self) -> None:
        self._conn.close()


def test_redelivered_authorizations_get_their_first_answer_and_holds_follow_the_answers(
    ledger_url, make_settings, start_receiver, topic_reader
):
    settings = make_settings(database_url=ledger_url, authorization_budget_ms=500)
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(ledger_url, "acct-r", "100.00", "crd_r", "crd_rf")
    with ledger.unit_of_work() as uow:
        uow.set_card_state("crd_rf", frozen=True)
    receiver = start_receiver(settings, **POLICY)
    approved, short, frozen, late = (_auth("crd_r", "80.00", "op-ok"), _auth("crd_r", "30.00", "op-51"),
                                     _auth("crd_rf", "1.00", "op-frozen"), _auth("crd_r", "5.00", "op-late"))

    assert _code(receiver.post(approved)) == "00"
    assert _code(receiver.post(short)) == "51"
    assert _code(receiver.post(frozen)) == "05"
    # First answer a fallback: the account is locked past the budget, so "op-late" is answered "05".
    blocker = _Blocker(ledger_url, "acct-r")
    try:
        assert _code(receiver.post(late)) == "05"
    finally:
        blocker.release()
        blocker.close()
    # The approved operation's hold is released (as a reversal would): now every redelivery would fit.
    with ledger.unit_of_work() as uow:
        uow.release_hold("crd_r", "op-ok", "reversal:op-ok")

    bodies = (("op-ok", approved), ("op-51", short), ("op-frozen", frozen), ("op-late", late))
    answers = {name: [_code(receiver.post(body)) for _ in range(3)] for name, body in bodies}
    # Redelivered while the decision path is stuck (the account locked past the budget): this receiver
    # answers from memory; a second receiver (another process, nothing in memory) from the record, read
    # beside the stuck decision. Never the fallback code for an authorization answered before.
    other = start_receiver(settings, **POLICY)
    blocker = _Blocker(ledger_url, "acct-r")
    try:
        for name, body in bodies:
            answers[name] += [_code(receiver.post(body)), _code(other.post(body))]
    finally:
        blocker.release()
        blocker.close()

    assert answers == {"op-ok": ["00"] * 5, "op-51": ["51"] * 5, "op-frozen": ["05"] * 5, "op-late": ["05"] * 5}
    assert _holds(ledger) == {"op-ok": "released"}  # one hold, for the one approval; none for the others
    assert _recorded(ledger) == {"op-ok": ("00", True), "op-51": ("51", False), "op-frozen": ("05", False),
                                 "op-late": ("05", False)}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-r") == uow.recomputed_balance("acct-r")
        assert (uow.balance("acct-r").held, uow.balance("acct-r").available) == (Decimal("0.00"), Decimal("100.00"))
    records = topic_reader(TRANSACTIONS, 24)
    by_op: dict[str, set[str]] = {}
    for record in records:
        by_op.setdefault(record.headers[h.OPERATION_ID], set()).add(record.headers[h.RESPONSE_CODE])
    assert by_op == {"op-ok": {"00"}, "op-51": {"51"}, "op-frozen": {"05"}, "op-late": {"05"}}


@pytest.mark.timeout(900)  # two broker start-ups on a busy 2-core machine
def test_redeliveries_during_and_after_a_broker_outage_get_their_first_answers(
    own_broker, ledger_url, make_settings, start_receiver
):
    """Issue 13: first answers given while the broker is down (records spooled) by approval, decline and
    fallback; redelivered during the outage, after it, and to a second receiver after it."""
    settings = make_settings(kafka_bootstrap=own_broker.bootstrap, database_url=ledger_url,
                             authorization_budget_ms=1000, delivery_timeout_s=2.0)
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(ledger_url, "acct-o", "100.00", "crd_o", "crd_of")
    with ledger.unit_of_work() as uow:
        uow.set_card_state("crd_of", frozen=True)
    receiver = start_receiver(settings, **POLICY)
    bodies = (("out-ok", _auth("crd_o", "80.00", "out-ok")), ("out-51", _auth("crd_o", "30.00", "out-51")),
              ("out-frozen", _auth("crd_of", "1.00", "out-frozen")), ("out-late", _auth("crd_o", "5.00", "out-late")))
    answers: dict[str, list[str]] = {name: [] for name, _ in bodies}
    own_broker.stop()
    try:
        for name, body in bodies:
            if name == "out-late":  # first answer a fallback: the account is locked past the budget
                blocker = _Blocker(ledger_url, "acct-o")
                try:
                    answers[name].append(_code(receiver.post(body)))
                finally:
                    blocker.release()
                    blocker.close()
            else:
                answers[name].append(_code(receiver.post(body)))
        for name, body in bodies:  # redelivered while the broker is still down
            answers[name] += [_code(receiver.post(body)) for _ in range(2)]
    finally:
        own_broker.start()
    deadline = time.monotonic() + 120
    while httpx.get(receiver.base + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the receiver is not ready again after the broker restart"
        time.sleep(1)
    other = start_receiver(settings, **POLICY)  # nothing in memory: answers from the record
    for name, body in bodies:
        answers[name] += [_code(receiver.post(body)), _code(other.post(body))]

    assert answers == {"out-ok": ["00"] * 5, "out-51": ["51"] * 5, "out-frozen": ["05"] * 5,
                       "out-late": ["05"] * 5}
    assert _holds(ledger) == {"out-ok": "held"}  # one hold, for the one approval
    assert _recorded(ledger) == {"out-ok": ("00", True), "out-51": ("51", False), "out-frozen": ("05", False),
                                 "out-late": ("05", False)}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-o") == uow.recomputed_balance("acct-o")
        assert (uow.balance("acct-o").held, uow.balance("acct-o").available) == (Decimal("80.00"), Decimal("20.00"))
    # every delivery on Kafka (the spooled ones forwarded), each carrying its operation's one answer
    records = read_topic(settings, TRANSACTIONS, 20, timeout=90)
    by_op: dict[str, set[str]] = {}
    for record in records:
        by_op.setdefault(record.headers[h.OPERATION_ID], set()).add(record.headers[h.RESPONSE_CODE])
    assert len(records) >= 20
    assert by_op == {"out-ok": {"00"}, "out-51": {"51"}, "out-frozen": {"05"}, "out-late": {"05"}}
    ledger.close()


def test_one_absurd_amount_never_decides_the_fate_of_the_funded_authorizations_in_its_batch(
    ledger_url, make_settings, start_receiver
):
    # the whole platform deadline: a burst on a shared 2-core machine must not turn into timeouts
    settings = make_settings(database_url=ledger_url, authorization_budget_ms=1150)
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(ledger_url, "acct-big", "1000.00", *(f"crd_f{i}" for i in range(41)))
    receiver = start_receiver(settings, **POLICY)
    port = int(receiver.url.split(":")[2].split("/")[0])
    funded = [_auth(f"crd_f{i}", "10.00", f"fund-{i}") for i in range(40)]
    absurd = [_auth("crd_f40", "1e30", "absurd-1"), _auth("crd_f40", "1E+999999", "absurd-2"),
              _auth("crd_f40", "92233720368547758.08", "absurd-3")]  # one cent past BIGINT as cents
    bodies = funded[:20] + absurd + funded[20:]
    started = time.monotonic()
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies,
                                   {"X-Webhook-Key": KEY, "Content-Type": "application/json"}, len(bodies)))
    elapsed = time.monotonic() - started

    # 1E+999999 is not a finite amount: the envelope parser quarantines it (400) before any decision; the
    # others are valid numbers the policy must decline alone, without touching their batch.
    expected = {20 + 1: 400}
    assert result.statuses == [expected.get(i, 200) for i in range(len(bodies))]
    codes = {json.loads(b)["operation_id"]: receiver.post(b).json()["response_code"] for b in bodies}  # redelivered
    assert [codes[f"fund-{i}"] for i in range(40)] == ["00"] * 40
    assert [codes[f"absurd-{i}"] for i in (1, 2, 3)] == ["05", "INVALID", "05"]
    assert elapsed < 30  # nothing stalled for the platform's retry horizon (a hang would be ~43 s)
    assert set(_holds(ledger)) == {f"fund-{i}" for i in range(40)}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-big").held == Decimal("400.00")


@pytest.mark.postgres
def test_the_decision_function_declines_an_out_of_range_amount_alone_and_is_idempotent_under_redelivery(
    postgres_database_url,
):
    ledger = _fund(postgres_database_url, "acct-f", "50.00", "crd_f")
    batch = [(False, f"k{i}", "crd_f", f"op{i}", cents, None, "", "", f"a{i}")
             for i, cents in enumerate([1000, 2**62, 2000, -5, 3000])]
    columns = [list(c) for c in zip(*batch, strict=True)]
    with psycopg.connect(_conninfo(postgres_database_url), autocommit=True) as conn:
        first = conn.execute(decide_pg.CALL, (*columns, MAX_BILL_CENTS)).fetchall()
        again = conn.execute(decide_pg.CALL, (*columns, MAX_BILL_CENTS)).fetchall()
        twins = conn.execute(decide_pg.CALL, (*[c[:1] * 2 for c in columns], MAX_BILL_CENTS)).fetchall()

    assert [(code, reason) for code, reason, _ in first] == [
        ("00", "approved"), ("05", "invalid_amount"), ("00", "approved"), ("05", "invalid_amount"),
        ("51", "insufficient_funds")]
    assert again == first  # the same batch delivered again: the answers on record, nothing new placed
    assert twins == [first[0], first[0]]
    assert _holds(ledger) == {"op0": "held", "op2": "held"}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-f").held == Decimal("30.00")
        assert uow.balance("acct-f") == uow.recomputed_balance("acct-f")


def _restart(server: LocalPostgres, down_s: float) -> tuple[float, float]:
    """Fast shutdown (every connection dropped), `down_s` with nothing listening, start on the same
    port; returns when it was down and when it was back."""
    pg_ctl = str(server.bin / "pg_ctl")
    done = server._run(pg_ctl, "-D", str(server.data), "-m", "fast", "-w", "stop", timeout=30)
    assert done.returncode == 0, done.stderr
    down = time.monotonic()
    time.sleep(down_s)
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.root} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    done = server._run(pg_ctl, "-D", str(server.data), "-l", str(server.log), "-o", options, "-w",
                       "-t", str(int(START_TIMEOUT_S)), "start", timeout=START_TIMEOUT_S + 10)
    assert done.returncode == 0, done.stderr
    return down, time.monotonic()


@pytest.mark.postgres
def test_a_postgres_restart_mid_stream_loses_and_duplicates_nothing_and_decisions_resume(
    make_settings, start_receiver, topic_reader
):
    server = LocalPostgres()
    try:
        url = server.start()
        settings = make_settings(database_url=url)
        ensure_topics(settings, list(TOPICS))
        ledger = _fund(url, "acct-pg", "100000.00", "crd_pg")
        ledger.close()
        receiver = start_receiver(settings, **POLICY)
        answers: dict[str, tuple[float, str]] = {}
        stop = threading.Event()

        def stream() -> None:  # ~40 authorizations/s until told to stop
            with httpx.Client(timeout=10) as client:
                i = 0
                while not stop.is_set():
                    op = f"pg-{i}"
                    response = client.post(receiver.url, content=_auth("crd_pg", "1.00", op),
                                           headers={"X-Webhook-Key": KEY, "content-type": "application/json"})
                    answers[op] = (time.monotonic(), _code(response))
                    i += 1
                    time.sleep(0.025)

        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(3)
        outage = time.monotonic()
        down, back = _restart(server, down_s=2.0)
        time.sleep(6)
        stop.set()
        sender.join(timeout=30)

        before = [code for at, code in answers.values() if at < outage]
        during = [code for at, code in answers.values() if down < at < back]
        # a new connection is made and warmed in the background (≤ 1 s pauses between tries) before decisions
        # resume: 3 s leaves room for a loaded CI machine
        after = [code for at, code in answers.values() if at > back + 3]
        assert before and set(before) == {"00"}
        assert during and set(during) == {"05"}  # falls back while the database is gone
        assert after and set(after) == {"00"}, (  # and decides again, no receiver restart
            [(op, round(at - back, 2), code) for op, (at, code) in answers.items() if at > back and code != "00"],
            [line for line in receiver.proc.output().splitlines() if "authorization." in line][-20:])
        ledger = Ledger(url)
        approved = {op for op, (_, code) in answers.items() if code == "00"}
        deadline = time.monotonic() + 15  # fallback answers given in the outage are put on record
        while _recorded(ledger) != {op: (code, code == "00") for op, (_, code) in answers.items()}:
            assert time.monotonic() < deadline, "decisions table does not match the answers given"
            time.sleep(0.2)
        # a decision committed as the connection dropped was answered "05": its hold is released
        assert {op for op, status in _holds(ledger).items() if status == "held"} == approved
        with ledger.unit_of_work(read_only=True) as uow:
            assert uow.balance("acct-pg").held == Decimal(len(approved)).quantize(Decimal("0.01"))
        records = topic_reader(TRANSACTIONS, len(answers), timeout=60)
        assert sorted(r.headers[h.OPERATION_ID] for r in records) == sorted(answers)  # each once
        assert {r.headers[h.OPERATION_ID]: r.headers[h.RESPONSE_CODE] for r in records} == {
            op: code for op, (_, code) in answers.items()}
        ledger.close()
    finally:
        server.stop()
