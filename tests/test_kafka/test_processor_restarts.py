"""Broker restarts under load for the deposits, three-ds and treasury processors: they resume by themselves, with
exactly-once effects (ledger rows, API calls per idempotency key), and the dead-letter tools work afterwards."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest
from kafka.errors import KafkaError
from kafka.future import Future

from card_program.conftest import Sandbox, balance, envelope, fund
from fixtures.feed import Feed, upgrade_ledger
from fixtures.kafka import read_topic
from fixtures.processes import HOOKSTREAM
from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.ledger import Ledger
from hookstream.ledger.treasury import movements
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings

RATE = 12  # records/s over the three processors; the sandbox allows 15 API calls/s per key
OUTAGE_S = 8.0  # longer than delivery timeout + 1 s: the outage that wedged kafka-python 3.0's producers
PROCESSORS = ("deposits", "three-ds", "treasury")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Stream:
    """Deposits (10.00 to wlt_1), 3DS challenges (created in the sandbox first) and treasury transfers, fed to
    Kafka as the receiver writes them, in turn at RATE/s. A send the broker does not acknowledge is sent again
    (as the platform retries a 503), so the topics may hold duplicates: effects must not."""

    def __init__(self, settings: Settings, sandbox: Sandbox) -> None:
        self.settings, self.sandbox = settings, sandbox
        self.sent: dict[str, list[str]] = defaultdict(list)  # kind → acknowledged operation ids
        self.failed_sends = 0
        self.unacknowledged = 0
        self.drain_until = float("inf")  # after stop: keep resending what is not acknowledged until then
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def _body(self, n: int) -> tuple[str, str, bytes]:
        kind = PROCESSORS[n % 3]
        if kind == "deposits":
            op = f"0xdep{n:06d}"
            return kind, op, envelope("B", "virtual_wallets", "deposit", "success", op,
                                      {"wallet_id": "wlt_1", "amount": "10.00", "transaction_hash": op})
        if kind == "three-ds":
            code = self.sandbox.trigger("3ds", card_id="crd_webhook", transaction_amount="1.00")["code"]
            return kind, code, envelope("B", "cards", "notification_3ds_authorization", "pending", code,
                                        {"code": code, "card_id": "crd_webhook", "merchant_name": "Acme Coffee",
                                         "merchant_country_code": "USA", "transaction_amount": "1.00",
                                         "transaction_currency": "USD", "transaction_timestamp": _now()})
        op = f"wf_{n:06d}"
        return kind, op, envelope("B", "treasury", "transfer", "success", op,
                                  {"wallet_id": "twl_1", "amount": "5.00", "blockchain": "POLYGON",
                                   "transaction_hash": op, "to_wallet_address": "0xdef", "created_at": _now()})

    def _run(self) -> None:
        feed = Feed(self.settings)
        pending: list[tuple[str, str, bytes, Any]] = []  # in flight: kind, op, body, the producer's future
        try:
            n = 0
            while not self.stop.is_set() or (pending and self.drain_until > time.monotonic()):
                if not self.stop.is_set():
                    kind, op, body = self._body(n)
                    pending.append((kind, op, body, _submit(feed, body)))
                    n += 1
                still = []
                for kind, op, body, future in pending:
                    if not future.is_done:
                        still.append((kind, op, body, future))
                    elif future.succeeded():
                        self.sent[kind].append(op)
                    else:  # not acknowledged (broker down): send it again
                        self.failed_sends += 1
                        still.append((kind, op, body, _submit(feed, body)))
                pending = still
                time.sleep(1 / RATE)
        finally:
            self.unacknowledged = len(pending)
            feed.close()

    def count(self) -> int:
        return sum(len(v) for v in self.sent.values())


def _submit(feed: Feed, body: bytes) -> Future:
    """The producer's future, or a failed one when send() itself gave up (no metadata while the broker is down)."""
    try:
        return feed.submit(body)
    except KafkaError as exc:
        return Future().failure(exc)


def _start_sandbox(processes) -> Sandbox:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = processes.start(["sandbox", "--port", str(port)], {}, name="sandbox",
                           ready_url=f"{base}/_sandbox/healthz", timeout=60)
    return Sandbox(proc, base)


def _dlq(settings: Settings, *args: str) -> str:
    done = subprocess.run(HOOKSTREAM + ["dlq", *args], env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.timeout(1200)  # broker start-ups take up to a minute each on a busy 2-core machine
def test_processors_resume_after_broker_restarts_with_exactly_once_effects_and_dlq_tools_work(
        own_broker, tmp_path, processes, start_processor):
    settings = Settings(kafka_bootstrap=own_broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                        topic_partitions=3, spool_dir=tmp_path / "spool", webhook_keys="test-webhook-key-0001",
                        database_url=f"sqlite:///{tmp_path / 'ledger.db'}", delivery_timeout_s=2.0)
    ensure_topics(settings, list(TOPICS) + [f"hookstream.{p}.dlq" for p in PROCESSORS])
    upgrade_ledger(settings.database_url)
    ledger = Ledger(settings.database_url)
    fund(ledger, "acct-1", "1000.00", cards={"crd_webhook": "WEBHOOK", "crd_topup": "TOP_UP"}, wallets=("wlt_1",))
    sandbox = _start_sandbox(processes)
    running = {name: start_processor(name, settings, api_url=sandbox.base) for name in PROCESSORS}
    pids = {name: r.proc.pid for name, r in running.items()}

    stream = Stream(settings, sandbox)
    feeding_started = time.monotonic()
    stream.thread.start()
    try:
        wait_until(lambda: all(r.handled() >= 5 for r in running.values()), "every processor at work", timeout=120)
        for cycle in range(2):
            before = {name: r.handled() for name, r in running.items()}
            own_broker.stop()
            time.sleep(OUTAGE_S)
            own_broker.start()
            # each processor handles new records again without a restart
            wait_until(lambda: all(r.handled() > before[n] + 5 for n, r in running.items()),
                       f"every processor to resume after restart {cycle + 1}", timeout=120, every=1.0)
    finally:
        stream.drain_until = time.monotonic() + 60
        stream.stop.set()
        stream.thread.join(timeout=90)
    assert stream.unacknowledged == 0
    assert stream.failed_sends > 0  # the outages did refuse writes
    sent = {kind: list(dict.fromkeys(ops)) for kind, ops in stream.sent.items()}
    deposits, challenges, transfers = sent["deposits"], sent["three-ds"], sent["treasury"]
    print(f"\nfed {stream.count()} records ({ {k: len(v) for k, v in sent.items()} }), "
          f"{stream.failed_sends} sends refused during the outages, in {time.monotonic() - feeding_started:.0f}s")

    # every record fed was handled; a record redelivered after a restart is a duplicate, not a second effect
    wait_until(lambda: running["deposits"].handled() >= len(deposits)
               and running["three-ds"].handled() >= len(challenges)
               and running["treasury"].handled() >= len(transfers), "the processors to catch up", timeout=240,
               every=1.0)
    assert {name: r.proc.pid for name, r in running.items() if r.healthy()} == pids  # never restarted, healthy

    # deposits: one ledger credit per deposit, one virtual-balance override per credited deposit
    wait_until(lambda: balance(ledger, "acct-1")[0] == D("1000.00") + 10 * len(deposits), "every deposit credited",
               timeout=60)
    calls = wait_until(lambda: _keyed(sandbox.calls("/virtual-balance"), "idempotency_key", len(deposits)),
                       "one virtual-balance call per deposit", timeout=120, every=1.0)
    assert len({c["idempotency_key"] for c in calls}) == len(deposits)
    _one_effect_per_key(calls, lambda c: c["status"] == 200)

    # three-ds: each challenge answered exactly once (a retried call carries the same key and is replayed)
    answers = wait_until(lambda: _keyed(sandbox.control("GET", "3ds-responses"), "code", len(challenges)),
                         "every challenge answered", timeout=120, every=1.0)
    accepted = Counter(a["code"] for a in answers if a["outcome"] == "ACCEPTED")
    assert set(accepted) == set(challenges) and set(accepted.values()) == {1}
    keys = defaultdict(set)
    for a in answers:
        keys[a["code"]].add(a["idempotency_key"])
    assert all(len(k) == 1 for k in keys.values()), "a challenge answered under two idempotency keys"

    # treasury: one recorded movement per transfer
    with ledger.unit_of_work(read_only=True) as uow:
        recorded = Counter(m.operation_id for m in movements(uow))
    assert set(recorded) == set(transfers) and set(recorded.values()) == {1}

    # dead letters after the restarts: the deposits processor's own DLQ producer lived through the outages
    bad = envelope("B", "virtual_wallets", "deposit", "success", "0xbad",
                   {"wallet_id": "wlt_1", "amount": "not-a-number", "transaction_hash": "0xbad"})
    feed = Feed(settings)
    try:
        feed.send(bad, topic="cryptomate.deposits")
    finally:
        feed.close()
    dead = read_topic(settings, "hookstream.deposits.dlq", expect=1, timeout=60)
    assert [r.value for r in dead] == [bad]
    assert "1 dead letter(s)" in _dlq(settings, "list", "deposits")
    assert "replayed 1, refused 0" in _dlq(settings, "replay", "deposits")
    again = read_topic(settings, "hookstream.deposits.dlq", expect=2, timeout=60)  # replayed, refused again
    assert [r.value for r in again] == [bad, bad]
    assert balance(ledger, "acct-1")[0] == D("1000.00") + 10 * len(deposits)
    ledger.close()


def _keyed(entries: list[dict], field: str, count: int) -> list[dict] | None:
    """`entries` once they hold `count` distinct values of `field`."""
    return entries if len({e[field] for e in entries}) >= count else None


def _one_effect_per_key(calls: list[dict], effective) -> None:
    """Every idempotency key's calls carry one body, and at least one took effect."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for call in calls:
        by_key[call["idempotency_key"]].append(call)
    for key, same in by_key.items():
        assert len({json.dumps(c["body"], sort_keys=True) for c in same}) == 1, key
        assert any(effective(c) for c in same), key
