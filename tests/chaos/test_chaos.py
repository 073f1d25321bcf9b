"""The chaos suite: the whole stack under a steady mixed stream with broker, processor, API and receiver faults,
then every promise counted from Kafka, the ledger and the sandbox's records (issue 15)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chaos.harness import Chaos, lag, read_all
from chaos.stream import SIMULATE_KEY, Cast, Stream
from hookstream.broker import LocalBroker, LocalCluster
from hookstream.dev.scenario import API_KEY
from hookstream.ledger import Ledger
from hookstream.ledger.decisions import authorization_decisions
from hookstream.ledger.schema import card_links, holds, outbox, postings, treasury_movements, unmatched_events
from hookstream.schemas.routing import TOPICS, dlq_topic

EVENTS = int(os.environ.get("HOOKSTREAM_CHAOS_EVENTS", "500"))  # webhooks the platform emits (first copies)
FULL = EVENTS >= 20_000
FALLBACK_REASONS = ("timeout", "error")  # ingest/authorization.py: the reasons a fallback answer is recorded with
RATE = float(os.environ.get("HOOKSTREAM_CHAOS_RATE", "40" if FULL else "12"))  # events/s asked of the sandbox
API_OUTAGE_S = float(os.environ.get("HOOKSTREAM_CHAOS_API_OUTAGE_S", "60" if FULL else "10"))
BROKER_OUTAGE_S = float(os.environ.get("HOOKSTREAM_CHAOS_BROKER_OUTAGE_S", "10" if FULL else "3"))
ACCOUNTS = 6 if FULL else 4  # one stream thread per account
VELOCITY_CARDS = 6 if FULL else 3
# Where the JSON report goes; "{backend}" is replaced by sqlite/postgres (reports/ is git-ignored).
REPORT = os.environ.get("HOOKSTREAM_CHAOS_REPORT", str(Path(__file__).parents[2] / "reports" / "chaos-{backend}.json"))
SETTLE_S = 600.0 if FULL else 240.0
CARD_TRANSACTIONS = "cryptomate.cards.transactions"  # authorizations and their clearing: the leader to kill
API_PATHS = ["/cards/virtual-cards/"]  # what processors call: 3DS answers, virtual balance, unblock
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chaos_database(request: pytest.FixtureRequest) -> str | None:
    """None: the stack's SQLite file in its run directory; else a fresh Postgres database."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_database_url")


@pytest.mark.timeout(int(900 + EVENTS / RATE * 3))
def test_the_whole_stack_keeps_every_promise_through_broker_processor_api_and_receiver_faults(
        own_broker, chaos_database, tmp_path, monkeypatch):
    run_chaos(own_broker, chaos_database, tmp_path, monkeypatch)


@pytest.mark.timeout(int(1200 + EVENTS / RATE * 3))
def test_on_a_three_broker_cluster_a_leader_kill_is_one_more_fault_the_stack_keeps_every_promise_through(
        cluster, tmp_path, monkeypatch):
    """The same run on a 3-broker cluster (replication 3, min.insync.replicas 2): the broker fault is a SIGKILL of
    the leader of the busiest card-transactions partition, started again after the outage."""
    monkeypatch.setenv("HOOKSTREAM_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS", "2")
    run_chaos(cluster, None, tmp_path, monkeypatch)


def run_chaos(broker: LocalBroker | LocalCluster, chaos_database: str | None, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_AUTO_UNBLOCK", "true")  # card-status sends unblock commands too
    on_cluster = isinstance(broker, LocalCluster)
    backend = ("sqlite" if chaos_database is None else "postgres") + ("-cluster" if on_cluster else "")
    cast = Cast(ACCOUNTS, VELOCITY_CARDS)
    chaos = Chaos(tmp_path / "run", broker, chaos_database, cast.seed(), cast.links(),
                  lambda line: print(line, flush=True))
    broker_fault = ((lambda: chaos.kill_leader(CARD_TRANSACTIONS, BROKER_OUTAGE_S)) if on_cluster
                    else (lambda: chaos.restart_broker(BROKER_OUTAGE_S)))
    started = time.time()
    try:
        chaos.start()
        # The harness's simulate calls share 127.0.0.1 with the processors: the sandbox's per-IP limit would
        # count the test's own traffic against theirs. The 429 path is exercised by the injected fault.
        httpx.post(f"{chaos.sandbox}/_sandbox/config", json={"rate_limit_enabled": False}, timeout=10)
        stream = Stream(chaos.sandbox, cast, EVENTS, RATE)
        plan = [(0.15, broker_fault),
                (0.35, lambda: chaos.kill_processor("cards")),
                (0.45, lambda: chaos.kill_processor("three-ds")),
                (0.55, lambda: chaos.api_outage(API_OUTAGE_S, API_PATHS)),
                (0.80, chaos.restart_receiver)]
        gates = [stream.gate(int(at * EVENTS)) for at, _ in plan[1:]]
        stream.start()
        try:
            # On this (the main) thread: children get SIGTERM when the thread that started them ends
            # (PR_SET_PDEATHSIG in dev/supervisor.py), so a restarted child must not outlive its starter.
            for n, (at, cause) in enumerate(plan):
                while not stream.reached(int(at * EVENTS)):
                    time.sleep(0.2)
                cause()
                if n < len(gates):
                    gates[n].set()
        finally:
            for g in gates:
                g.set()
        stream.join(timeout=EVENTS / RATE * 3 + 600)
        stream_s = time.time() - started
        report = settle_and_count(chaos, stream, cast)
    finally:
        chaos.stop()
    report.update(backend=backend, events=stream.sent.events, stream_s=round(stream_s, 1),
                  wall_s=round(time.time() - started, 1), rate=RATE, api_outage_s=API_OUTAGE_S,
                  broker_outage_s=BROKER_OUTAGE_S,
                  faults=[{"name": f.name, "at": round(f.started - started, 1),
                           "took_s": round(f.ended - f.started, 1)} for f in chaos.faults])
    broker_logs = [b.log_path for b in broker.brokers] if on_cluster else [broker.log_path]
    report["secrets_in_logs"] = scan_logs(tmp_path / "run" / "logs", broker_logs,
                                          [chaos.stack.webhook_key, API_KEY, SIMULATE_KEY],
                                          set(stream.sent.challenges))
    path = Path(REPORT.replace("{backend}", backend))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    logs = path.with_name(f"{path.stem}-logs")  # every process's output, kept beside the report
    shutil.rmtree(logs, ignore_errors=True)
    shutil.copytree(tmp_path / "run" / "logs", logs)
    print("\n" + summary(report) + f" report={path}")

    assert chaos.faults and [f.name for f in chaos.faults] == [
        "leader_kill" if on_cluster else "broker_restart", "sigkill_cards", "sigkill_three-ds", "api_outage", "receiver_restart"]
    assert report["stream_errors"] == [], "the sandbox refused part of the stream"
    assert report["kafka"]["answered_200_missing"] == [], "answered 200 but not on Kafka"
    assert report["deliveries"]["regular_given_up"] == 0, "the platform gave up on a retried event"
    assert report["ledger"]["balance_mismatches"] == {}, "balances differ from the model of the stream"
    assert report["ledger"]["posting_mismatches"] == {}, "a ledger effect is missing or doubled"
    assert report["ledger"]["hold_mismatches"] == [], "a hold is not as the answers and later events say"
    assert report["decisions"]["redelivery_changed_answer"] == [], "a redelivered authorization got another answer"
    assert report["three_ds"]["not_answered"] == [] and report["three_ds"]["answered_late"] == 0
    assert report["three_ds"]["answered_twice"] == []
    assert report["api"]["applied_twice"] == [], "an API command took effect twice"
    assert report["api"]["outbox_not_finished"] == {}, "outbox commands left pending"
    assert report["api"]["dead_lettered"] == 0 and report["dlq"] == {}
    assert report["topup"]["sandbox_virtual_balance"] == report["topup"]["model"]
    assert report["treasury"]["missing"] == [] and report["treasury"]["alerts"] == report["treasury"]["alerts_expected"]
    assert report["velocity"]["not_unblocked"] == []
    assert report["processes"]["exited_on_their_own"] == [], "a process died that the harness did not kill"
    assert report["processes"]["starts"] == report["processes"]["starts_expected"], "unplanned restart"
    assert report["secrets_in_logs"] == {}, "a secret reached a log"


# --- settling and counting -------------------------------------------------------------------------
def _wait(what: str, done: Any, timeout: float, chaos: Chaos) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if (dead := chaos.stack.broken()) is not None:
            raise AssertionError(f"while waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled within {timeout:.0f}s: {what}")
        time.sleep(1.0)


def _books(ledger: Ledger, accounts: list[str]) -> dict[str, tuple[Decimal, Decimal]]:
    with ledger.unit_of_work(read_only=True) as uow:
        out = {}
        for a in accounts:
            b = uow.balance(a)
            out[a] = (b.balance, b.held)
        return out


def settle_and_count(chaos: Chaos, stream: Stream, cast: Cast) -> dict[str, Any]:
    sandbox = httpx.Client(base_url=chaos.sandbox, timeout=120.0)
    sent = stream.sent
    model = sent.model
    expected_books = model.books()
    ledger = Ledger(chaos.stack.database_url)
    try:
        _wait("sandbox deliveries", lambda: sandbox.get("/_sandbox/state").json()["pending_deliveries"] == 0,
              SETTLE_S, chaos)

        def pending() -> int:
            with ledger.engine.connect() as conn:
                return len(conn.execute(select(outbox.c.id).where(outbox.c.status == "pending")).all())

        try:
            _wait("processors' consumer lag, ledger books and outbox",
                  lambda: lag(chaos.settings(), list(chaos.processor_urls)) == 0 and pending() == 0
                  and _books(ledger, list(expected_books)) == expected_books, SETTLE_S / 2, chaos)
        except AssertionError:
            pass  # counted below, with the differences named
        deliveries = sandbox.get("/_sandbox/deliveries").json()
        calls = sandbox.get("/_sandbox/calls").json()
        responses = sandbox.get("/_sandbox/3ds-responses").json()
        state = sandbox.get("/_sandbox/state").json()
        report: dict[str, Any] = {"stream_errors": sent.errors[:20]}
        report["deliveries"], answered = count_deliveries(deliveries, model, chaos.faults)
        report["decisions"] = count_decisions(deliveries)
        report["kafka"], report["dlq"] = count_kafka(chaos, answered)
        report["ledger"] = count_ledger(ledger, model, expected_books)
        report["three_ds"] = count_three_ds(sent.challenges, deliveries, responses)
        report["api"] = count_api(calls, ledger)
        cards = {c["id"]: c for c in state["cards"]}
        report["topup"] = {"model": str(sum(sent.topup, Decimal("0.00"))),
                           "sandbox_virtual_balance": str(Decimal(str(cards[cast.topup_card]["virtual_balance"]))
                                                          .quantize(Decimal("0.01")))}
        report["treasury"] = count_treasury(ledger, sent.transfers, deliveries)
        report["velocity"] = count_velocity(ledger, sent.velocity_blocks, calls, cards, deliveries)
        report["processes"] = {
            "exited_on_their_own": [c.name for c in chaos.children() if not c.alive()],
            "starts": dict(sorted(chaos.starts.items())),
            "starts_expected": dict(sorted({**{c: 1 for c in chaos.starts}, "cards": 2, "three-ds": 2,
                                            "ingest": 2}.items()))}
        return report
    finally:
        ledger.close()
        sandbox.close()


def _answered(d: dict[str, Any]) -> bool:
    return d["http_status"] == 200


def _code(d: dict[str, Any]) -> str | None:
    if d["outcome"] != "ok":
        return None
    try:
        return str(json.loads(d["answer"])["response_code"])
    except (ValueError, KeyError, TypeError):
        return None


def _identity(event_type: Any, operation_id: Any, status: Any) -> tuple[str, str, str]:
    return (str(event_type).lower(), str(operation_id), str(status).lower())


def _window(at: float, faults: list[Any], grace_s: float = 5.0) -> str:
    """The latest fault that had begun at `at` (epoch) and ended less than `grace_s` before; else "none"."""
    return next((f.name for f in reversed(faults) if f.started <= at <= f.ended + grace_s), "none")


def count_deliveries(deliveries: list[dict[str, Any]], model: Any,
                     faults: list[Any]) -> tuple[dict[str, Any], set[tuple]]:
    by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in deliveries:
        by_event[d["event_id"]].append(d)
    given_up = Counter()
    for attempts in by_event.values():
        if not any(_answered(d) for d in attempts):
            given_up[attempts[0]["policy"]] += 1
    answered = {_identity(d["event_type"], d["operation_id"], d["status"]) for d in deliveries if _answered(d)}
    # The receiver's first answer to each authorization: the model needs it for the holds.
    first = {d["operation_id"]: d for d in deliveries if d["policy"] == "authorization" and d["copy"] == 1}
    for p in model.purchases:
        d = first.get(p.txn_id)
        p.receiver_code = _code(d) if d else None
    copies = sum(1 for d in deliveries if d["copy"] > 1 and d["attempt"] == 1)
    return ({"events": len(by_event), "attempts": len(deliveries), "extra_copies": copies,
             "duplicate_share": round(copies / max(1, len(by_event)), 4),
             "statuses": dict(Counter(str(d["http_status"] or d["outcome"]) for d in deliveries)),
             "failed_attempts": {f"{p} {o} during {w}": n for (p, o, w), n in sorted(Counter(
                 (d["policy"], str(d["http_status"] or d["outcome"]), _window(d["sent_at_epoch"], faults))
                 for d in deliveries if not _answered(d)).items())},
             "regular_given_up": given_up["regular"], "authorization_unanswered": given_up["authorization"],
             "no_retry_unanswered": given_up["no_retry"]}, answered)


def count_decisions(deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    answers: dict[str, list[str]] = defaultdict(list)
    for d in sorted(deliveries, key=lambda d: d["copy"]):
        if d["policy"] == "authorization" and (code := _code(d)) is not None:
            answers[d["operation_id"]].append(code)
    codes = Counter(a[0] for a in answers.values())
    changed = [op for op, a in answers.items() if len(set(a)) > 1]
    return {"first_answers": dict(codes), "redelivered": sum(1 for a in answers.values() if len(a) > 1),
            "redelivery_changed_answer": changed[:20]}


def count_kafka(chaos: Chaos, answered: set[tuple]) -> tuple[dict[str, Any], dict[str, int]]:
    settings = chaos.settings()
    records = read_all(settings, list(TOPICS))
    on_kafka: set[tuple] = set()
    for recs in records.values():
        for r in recs:
            try:
                body = json.loads(r.value)
                on_kafka.add(_identity(body.get("event_type", body.get("sub_operation")), body.get("operation_id"),
                                       body.get("status")))
            except ValueError:
                continue
    missing = sorted(answered - on_kafka)
    dlq = read_all(settings, [dlq_topic(p) for p in chaos.processor_urls])
    return ({"records": {t: len(r) for t, r in records.items() if r}, "answered_200": len(answered),
             "answered_200_missing": [list(m) for m in missing[:20]]},
            {t: len(r) for t, r in dlq.items() if r})


def count_ledger(ledger: Ledger, model: Any, expected: dict[str, tuple[Decimal, Decimal]]) -> dict[str, Any]:
    actual = _books(ledger, list(expected))
    balance_mismatches = {a: {"expected": [str(x) for x in expected[a]], "ledger": [str(x) for x in actual[a]]}
                          for a in expected if actual[a] != expected[a]}
    with ledger.engine.connect() as conn:
        hold_rows = conn.execute(select(holds.c.card_id, holds.c.operation_id, holds.c.status,
                                        holds.c.account_id)).all()
        posting_rows = conn.execute(select(postings.c.account_id, postings.c.kind)).all()
        unmatched = conn.execute(select(unmatched_events.c.event_type, unmatched_events.c.reason)).all()
        fell_back = {(r.card_id, r.operation_id) for r in conn.execute(
            select(authorization_decisions.c.card_id, authorization_decisions.c.operation_id)
            .where(authorization_decisions.c.reason.in_(FALLBACK_REASONS)))}
    status_of = {(r.card_id, r.operation_id): r.status for r in hold_rows}
    hold_mismatches = []
    for p in model.purchases:
        allowed = model.hold_allowed(p, fell_back=(p.card_id, p.txn_id) in fell_back)
        got = status_of.get((p.card_id, p.txn_id))
        if got not in allowed:
            hold_mismatches.append({"txn": p.txn_id, "platform": p.platform_code, "receiver": p.receiver_code,
                                    "then": p.then, "allowed": sorted(map(str, allowed)), "hold": got})
    known = {(p.card_id, p.txn_id) for p in model.purchases}
    strays = [list(k) for k in status_of if k not in known]
    # Each effect once: hold/capture/release postings equal the hold rows, credits/refunds equal the stream.
    got_postings: dict[str, Counter[str]] = defaultdict(Counter)
    for r in posting_rows:
        got_postings[r.account_id][r.kind] += 1
    want_postings: dict[str, Counter[str]] = defaultdict(Counter, {a: Counter(c) for a, c in model.credits().items()})
    for r in hold_rows:
        want_postings[r.account_id]["hold"] += 1
        if r.status == "captured":
            want_postings[r.account_id]["capture"] += 1
        elif r.status == "released":
            want_postings[r.account_id]["release"] += 1
    posting_mismatches = {a: {"expected": dict(want_postings[a]), "ledger": dict(got_postings[a])}
                          for a in set(want_postings) | set(got_postings) if +want_postings[a] != +got_postings[a]}
    if strays:
        hold_mismatches.append({"holds_for_no_authorization": strays[:20]})
    return {"accounts": {a: [str(x) for x in actual[a]] for a in actual}, "holds": dict(Counter(status_of.values())),
            "balance_mismatches": balance_mismatches, "posting_mismatches": posting_mismatches,
            "hold_mismatches": hold_mismatches[:20],
            "unmatched": dict(Counter(f"{r.event_type}: {r.reason}" for r in unmatched))}


def count_three_ds(codes: list[str], deliveries: list[dict[str, Any]],
                   responses: list[dict[str, Any]]) -> dict[str, Any]:
    delivered = {d["operation_id"] for d in deliveries
                 if str(d["event_type"]).lower() == "notification_3ds_authorization" and _answered(d)}
    accepted = Counter(r["code"] for r in responses if r["outcome"] == "ACCEPTED")
    late = sum(1 for r in responses if r["outcome"] == "VAL" and "expired" in json.dumps(r))
    return {"challenges": len(codes), "delivered": len(delivered & set(codes)),
            "answered": sum(1 for c in codes if accepted[c] == 1),
            "approved": sum(1 for r in responses if r["outcome"] == "ACCEPTED" and r["approve"]),
            "not_answered": [c[:8] for c in codes if c in delivered and accepted[c] == 0][:20],
            "answered_twice": [c[:8] for c in codes if accepted[c] > 1][:20],
            "answered_late": late, "responses": dict(Counter(str(r["outcome"]) for r in responses))}


def count_api(calls: list[dict[str, Any]], ledger: Ledger) -> dict[str, Any]:
    applied: Counter[str] = Counter()
    for c in calls:
        if c["idempotency_key"] and c["status"] and c["status"] < 300 and not c["replayed"] and not c["fault"]:
            applied[c["idempotency_key"]] += 1
    with ledger.engine.connect() as conn:
        statuses = Counter(r.status for r in conn.execute(select(outbox.c.status)).all())
    return {"calls": len(calls), "statuses": dict(Counter(str(c["status"]) for c in calls)),
            "faulted": sum(1 for c in calls if c["fault"]), "replayed": sum(1 for c in calls if c["replayed"]),
            "applied_twice": [k[:12] for k, n in applied.items() if n > 1][:20], "outbox": dict(statuses),
            "outbox_not_finished": {s: n for s, n in statuses.items() if s == "pending"},
            "dead_lettered": statuses.get("dead", 0), "expired": statuses.get("expired", 0)}


def count_treasury(ledger: Ledger, transfers: list[tuple[str, str]],
                   deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    answered = {(d["operation_id"], str(d["status"]).lower()) for d in deliveries if _answered(d)}
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(treasury_movements.c.operation_id, treasury_movements.c.status,
                                   treasury_movements.c.alert)).all()
    recorded = Counter((r.operation_id, str(r.status).lower()) for r in rows)
    sent = [t for t in transfers if t in answered]
    return {"sent": len(transfers), "recorded": len(rows),
            "missing": [list(t) for t in sent if recorded[t] != 1][:20],
            "alerts": sum(1 for r in rows if r.alert),
            "alerts_expected": sum(1 for _, s in sent if s in ("failed", "manual_check"))}


def count_velocity(ledger: Ledger, blocked: list[str], calls: list[dict[str, Any]], cards: dict[str, Any],
                   deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    delivered = {d["operation_id"] for d in deliveries
                 if str(d["event_type"]).lower() == "card_blocked_by_velocity" and _answered(d)}
    unblocks = Counter(c["path"].split("/")[3] for c in calls
                       if c["path"].endswith("/unblock") and c["status"] == 200 and not c["replayed"])
    with ledger.engine.connect() as conn:
        flags = {r.card_id: r.blocked for r in conn.execute(select(card_links.c.card_id, card_links.c.blocked))}
    wrong = [c for c in blocked if c in delivered and (unblocks[c] != 1 or cards[c]["status"] != "ACTIVE"
                                                        or flags.get(c))]
    return {"blocks": len(blocked), "delivered": len(delivered), "unblocked": sum(unblocks.values()),
            "not_unblocked": wrong}


# --- logs and summary ------------------------------------------------------------------------------
def scan_logs(log_dir: Path, extra: list[Path], keys: list[str], codes: set[str]) -> dict[str, int]:
    """Lines per process log holding a key or a 3DS code (any of the run's challenge codes)."""
    found: Counter[str] = Counter()
    for path in [*sorted(log_dir.glob("*.log")), *extra]:
        if not path.exists():
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if any(k in line for k in keys) or any(m in codes for m in UUID.findall(line)):
                    found[path.name] += 1
    return dict(found)


def summary(r: dict[str, Any]) -> str:
    ok = not any([r["kafka"]["answered_200_missing"], r["ledger"]["balance_mismatches"],
                  r["ledger"]["posting_mismatches"], r["ledger"]["hold_mismatches"],
                  r["decisions"]["redelivery_changed_answer"], r["three_ds"]["not_answered"],
                  r["api"]["applied_twice"], r["secrets_in_logs"], r["processes"]["exited_on_their_own"]])
    return (f"chaos {r['backend']}: {'OK' if ok else 'FAILED'} events={r['events']} in {r['stream_s']}s "
            f"deliveries={r['deliveries']['attempts']} dup={r['deliveries']['duplicate_share']:.1%} "
            f"answered200={r['kafka']['answered_200']} missing={len(r['kafka']['answered_200_missing'])} "
            f"holds={r['ledger']['holds']} 3ds={r['three_ds']['answered']}/{r['three_ds']['delivered']} "
            f"api_calls={r['api']['calls']} faulted={r['api']['faulted']} "
            f"faults={','.join(f['name'] for f in r['faults'])} secrets={sum(r['secrets_in_logs'].values())}")
