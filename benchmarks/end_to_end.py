"""3DS end to end: challenge webhook sent → `POST …/3ds-authorization` received by the platform, at a fixed rate.

Pipeline: webhook → `hookstream ingest` (acks=all) → Kafka `cryptomate.cards.3ds` → `hookstream process
three-ds` (ledger: linked cards with funds, so the policy approves) → CryptoMate API = `hookstream sandbox`.

The sandbox is the platform, but its webhook sender (httpx.AsyncClient in the same event loop that
also serves the API) cannot send 1,000 webhooks/s, so: the sandbox creates every challenge
(`POST /_sandbox/trigger/3ds` with no webhook URL set: recorded, not sent), this script takes the exact
bodies it would have sent from `/_sandbox/deliveries` and sends them itself, open loop at a fixed rate
(tests/fixtures/http_load.py `post_paced`). The callback time is the sandbox's own receive timestamp of
each API call (`at` in `/_sandbox/calls`, wall clock, taken when the request is read); latency = that
minus the webhook's scheduled send time (same machine, same clock).

Rate limits are lifted for the run: the sandbox runs with `--no-rate-limit` and the processor with
HOOKSTREAM_API_RATE_LIMIT_PER_S far above the rate (the real platform allows 15 requests/s per key).

    .venv/bin/python benchmarks/end_to_end.py [--rate 1000] [--seconds 15] [--processors 1] [--ledger sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

import harness  # noqa: F401  (sys.path: tests/, benchmarks/)
from harness import fmt, histogram, load_average, scrape, summary, total
from fixtures.http_load import post_many, post_paced
from fixtures.processes import Processes
from pg import durable_postgres
from report import write_section

from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.ledger import Ledger
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings

WEBHOOK_KEY = "bench-webhook-key-0001"
API_KEY = "sandbox-key-level-2"
CARDS = 100


def seed_ledger(url: str) -> None:
    ledger = Ledger(url)
    try:
        ledger.upgrade()
        with ledger.unit_of_work() as uow:
            for i in range(CARDS):
                uow.ensure_account(f"acct-{i}")
                uow.credit(f"acct-{i}", Decimal("1000000.00"), f"seed:acct-{i}", memo="seed")
                uow.link_card(f"crd_3ds_{i}", f"acct-{i}", approval_method="WEBHOOK")
    finally:
        ledger.close()


def challenges(base: str, n: int) -> list[bytes]:
    """n challenges created in the sandbox; the webhook bodies it would have sent, serialised as it does."""
    bodies = [json.dumps({"card_id": f"crd_3ds_{i % CARDS}", "transaction_amount": "42.50"}).encode()
              for i in range(n)]
    port = int(base.rsplit(":", 1)[1])
    created = asyncio.run(post_many("127.0.0.1", port, "/_sandbox/trigger/3ds", bodies,
                                    {"Content-Type": "application/json"}, 16))
    if any(s != 201 for s in created.statuses):
        raise RuntimeError(f"trigger/3ds failed: {sorted(set(created.statuses))}")
    deliveries = httpx.get(f"{base}/_sandbox/deliveries", timeout=120).json()
    httpx.request("DELETE", f"{base}/_sandbox/deliveries", timeout=60)
    out = [json.dumps(d["body"]).encode() for d in deliveries if d["outcome"] == "no_url"]
    if len(out) != n:
        raise RuntimeError(f"expected {n} recorded challenges, got {len(out)}")
    return out


def code_of(body: bytes) -> str:
    return str(json.loads(body)["data"]["code"])


def callbacks(base: str) -> dict[str, float]:
    """code → epoch seconds at which the sandbox received the 3DS respond call (first one)."""
    out: dict[str, float] = {}
    for call in httpx.get(f"{base}/_sandbox/calls", params={"path": "3ds-authorization"}, timeout=120).json():
        code = (call.get("body") or {}).get("code")
        if code is not None and code not in out:
            out[code] = datetime.fromisoformat(call["at"]).timestamp()
    return out


def decisions(url: str) -> dict[str, float]:
    """code → epoch seconds at which the processor wrote the answer into its outbox (its decision)."""
    ledger = Ledger(url)
    try:
        with ledger.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT payload, created_at FROM outbox").all()
    finally:
        ledger.close()
    out = {}
    for payload, created in rows:
        at = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        out[str(json.loads(payload)["code"])] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    prefix = f"benche2e{uuid.uuid4().hex[:8]}."
    settings = Settings(kafka_bootstrap=args.bootstrap, topic_prefix=prefix, topic_partitions=6)
    ensure_topics(settings, list(TOPICS))
    seed_ledger(url)
    procs = Processes(work)
    sandbox_port, ingest_port = free_port(), free_port()
    base = f"http://127.0.0.1:{sandbox_port}"
    try:
        sandbox = procs.start(["sandbox", "--port", str(sandbox_port), "--no-rate-limit"],
                              {"HOOKSTREAM_LOG_LEVEL": "warning"}, name="sandbox",
                              ready_url=f"{base}/_sandbox/healthz")
        cards = [{"id": f"crd_3ds_{i}", "approval_method": "WEBHOOK", "forwarded_3ds_type": "FORWARDED",
                  "metadata": {"account": f"acct-{i}"}} for i in range(CARDS)]
        httpx.post(f"{base}/_sandbox/seed", params={"replace": "false"}, json={"cards": cards},
                   timeout=30).raise_for_status()
        warm = challenges(base, int(args.rate * args.warmup))
        load = challenges(base, int(args.rate * args.seconds))
        # The receiver (its default ledger policy decides card authorizations, not 3DS challenges: it opens the
        # ledger the processors use, as in a deployment) and the processor(s).
        ingest = procs.start(["ingest", "--port", str(ingest_port)],
                             {"HOOKSTREAM_KAFKA_BOOTSTRAP": args.bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                              "HOOKSTREAM_DATABASE_URL": url,
                              "HOOKSTREAM_WEBHOOK_KEYS": WEBHOOK_KEY, "HOOKSTREAM_LOG_LEVEL": args.log_level,
                              "HOOKSTREAM_SPOOL_DIR": str(work / "spool")},
                             name="ingest", ready_url=f"http://127.0.0.1:{ingest_port}/readyz")
        processors = []
        for k in range(args.processors):
            port = free_port()
            proc = procs.start(["process", "three-ds"],
                               {"HOOKSTREAM_KAFKA_BOOTSTRAP": args.bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                                "HOOKSTREAM_DATABASE_URL": url, "HOOKSTREAM_PROCESSOR_HTTP_PORT": str(port),
                                "HOOKSTREAM_API_BASE_URL": base, "HOOKSTREAM_API_KEY": API_KEY,
                                "HOOKSTREAM_API_RATE_LIMIT_PER_S": str(max(10 * args.rate, 10000)),
                                "HOOKSTREAM_LOG_LEVEL": args.log_level},
                               name=f"three-ds-{k}", ready_url=f"http://127.0.0.1:{port}/healthz")
            processors.append((proc, f"http://127.0.0.1:{port}/metrics"))

        def handled() -> float:
            """Challenges carried through: answered by the outbox dispatcher (sent, or settled otherwise), not
            only decided — the API call leaves after the decision's commit."""
            return sum(total(scrape(m), "hookstream_outbox_commands_total", processor="three-ds", outcome=o)
                       for _, m in processors for o in ("sent", "expired", "dead_lettered"))

        def send(batch: list[bytes]) -> Any:
            headers = {"X-Webhook-Key": WEBHOOK_KEY, "Content-Type": "application/json",
                       "X-Request-Timestamp": str(int(time.time() * 1000))}
            return asyncio.run(post_paced("127.0.0.1", ingest_port, "/webhooks/cryptomate", batch, headers,
                                          args.rate, args.connections))

        def drain(expected: float, timeout: float) -> float:
            deadline = time.monotonic() + timeout
            while (done := handled()) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            return done

        send(warm)
        drain(len(warm), 60)
        httpx.request("DELETE", f"{base}/_sandbox/calls", timeout=60)
        before = [scrape(m) for _, m in processors]
        pids = [sandbox.pid, ingest.pid] + [p.pid for p, _ in processors]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        load_before = load_average()
        result = send(load)
        sent_done = time.monotonic()
        done = drain(len(warm) + len(load), args.drain_timeout)  # every challenge's API call settled
        drained_s = time.monotonic() - sent_done
        cpu_after = [cpu_seconds(pid) for pid in pids]
        load_after = load_average()
        after = [scrape(m) for _, m in processors]
        received = callbacks(base)
        outcomes = {o: sum(total(a, "hookstream_processed_total", processor="three-ds", outcome=o)
                           - total(b, "hookstream_processed_total", processor="three-ds", outcome=o)
                           for a, b in zip(after, before, strict=True))
                    for o in ("ok", "duplicate", "expired", "retried", "dead_lettered")}
        accepted = sum(1 for r in httpx.get(f"{base}/_sandbox/3ds-responses", timeout=120).json()
                       if r["outcome"] == "ACCEPTED")
        decided = decisions(url) if args.timeline else {}
    finally:
        procs.stop_all()

    latencies, missing = [], 0
    for body, sent_at in zip(load, result.sent_at, strict=True):
        got = received.get(code_of(body))
        if got is None:
            missing += 1
        else:
            latencies.append(got - sent_at)
    if args.timeline:
        print("send second: answers; p50 / max ms, sent → decided (outbox row written) and sent → answer received")
        start = min(result.sent_at)
        by_second: dict[int, list[tuple[float, float]]] = {}
        for body, sent_at in zip(load, result.sent_at, strict=True):
            code = code_of(body)
            if (got := received.get(code)) is not None:
                by_second.setdefault(int(sent_at - start), []).append(
                    (decided.get(code, math.nan) - sent_at, got - sent_at))
        for second, pairs in sorted(by_second.items()):
            d, a = sorted(p[0] for p in pairs), sorted(p[1] for p in pairs)
            print(f"  {second:3d}: {len(pairs):5d}  {d[len(d) // 2] * 1000:9.1f} / {d[-1] * 1000:9.1f}"
                  f"   {a[len(a) // 2] * 1000:9.1f} / {a[-1] * 1000:9.1f}")
    wall = (max(received.values()) - min(result.sent_at)) if received else math.nan
    merged_before: dict[Any, float] = {}
    merged_after: dict[Any, float] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in b.items():
            merged_before[key] = merged_before.get(key, 0.0) + value
        for key, value in a.items():
            merged_after[key] = merged_after.get(key, 0.0) + value
    return {
        "sent": len(load), "send_rate": result.achieved_rate, "answered_200": sum(s == 200 for s in result.statuses),
        "webhook": summary(result.latencies), "end_to_end": summary(latencies), "callbacks": len(latencies),
        "missing": missing, "callback_rate": len(latencies) / wall if wall else math.nan,
        "drained_s": drained_s, "load": f"{load_before} → {load_after}", "handled_total": done, "outcomes": outcomes, "accepted_total": accepted,
        "api_call": histogram(merged_before, merged_after, "hookstream_api_call_duration_seconds"),
        "processing": histogram(merged_before, merged_after, "hookstream_processing_duration_seconds"),
        "cpu": {name: (a - b) / (args.seconds + drained_s)
                for name, a, b in zip(["sandbox", "ingest"] + [f"three-ds-{k}" for k in range(args.processors)],
                                      cpu_after, cpu_before, strict=True)},
    }


def markdown(r: dict[str, Any], args: argparse.Namespace) -> str:
    e2e, hook = r["end_to_end"], r["webhook"]
    cpu = ", ".join(f"{name} {share:.0%}" for name, share in r["cpu"].items())
    cmd = (f"python benchmarks/end_to_end.py --rate {args.rate:g} --seconds {args.seconds:g} "
           f"--processors {args.processors} --ledger {args.ledger}")
    met = not math.isnan(e2e["p99"]) and e2e["p99"] <= 100 and r["missing"] == 0
    return f"""`{cmd}`

Webhook sent → 3DS answer received by the platform: `notification_3ds_authorization` webhooks sent open
loop at a fixed **{args.rate:g}/s** for {args.seconds:g} s (after {args.warmup:g} s of warm-up, drained, not
counted) to `hookstream ingest` (one uvicorn worker; answers once the record is acked, acks=all) →
Kafka `cryptomate.cards.3ds` (6 partitions, local single-node Kafka 4.4) → {args.processors} ×
`hookstream process three-ds` ({args.ledger} ledger, {CARDS} linked cards with funds, so every challenge
is approved) → `POST /cards/virtual-cards/{{cardId}}/3ds-authorization` on `hookstream sandbox`.
Challenges are created by the sandbox (`/_sandbox/trigger/3ds` with no webhook URL) and their exact
bodies sent by the benchmark's paced client, because the sandbox's own sender (httpx in the loop that
also serves the API) cannot send 1,000/s; the callback time is the sandbox's receive timestamp of each
API call (`at` in `/_sandbox/calls`), minus the webhook's scheduled send time. Rate limits lifted for
the run: sandbox `--no-rate-limit`, `HOOKSTREAM_API_RATE_LIMIT_PER_S={max(10 * args.rate, 10000):g}`
(default 15, the real platform's limit per key — in production the API limit, not the pipeline, caps
3DS answers at ~15/s per key). Log level {args.log_level}. Everything on the same 2 cores, shared with
other work (1-minute load average before → after: {r['load']}).

| | p50 ms | p90 ms | p99 ms | max ms | count |
|---|---|---|---|---|---|
| webhook answered by the receiver (200) | {fmt(hook['p50'])} | {fmt(hook['p90'])} | {fmt(hook['p99'])} | {fmt(hook['max'])} | {r['answered_200']:,}/{r['sent']:,} |
| **webhook sent → 3DS answer received** | {fmt(e2e['p50'])} | {fmt(e2e['p90'])} | {fmt(e2e['p99'])} | {fmt(e2e['max'])} | {r['callbacks']:,}/{r['sent']:,} |

- Webhooks sent at {r['send_rate']:,.0f}/s; 3DS answers arrived at **{r['callback_rate']:,.0f}/s** on
  average (first send → last answer); the processor(s) needed {r['drained_s']:.1f} s after the last
  webhook to catch up. Outcomes: {', '.join(f'{k} {v:,.0f}' for k, v in r['outcomes'].items() if v)};
  {r['accepted_total']:,} answers accepted by the sandbox in total (warm-up included).
- Processor side (histograms, bucket-interpolated): handler p50 {fmt(r['processing']['p50'])} ms /
  p99 {fmt(r['processing']['p99'])} ms (mean {fmt(r['processing']['mean'])} ms), of which the API call
  p50 {fmt(r['api_call']['p50'])} ms / p99 {fmt(r['api_call']['p99'])} ms (mean {fmt(r['api_call']['mean'])} ms).
- CPU (share of one core, send start → drained): {cpu}.

**Against the target** (p99 ≤ 100 ms at {args.rate:g}/s): **{'met' if met else 'missed'}**.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="Challenges per second (open loop).")
    parser.add_argument("--seconds", type=float, default=15.0, help="Measured duration.")
    parser.add_argument("--warmup", type=float, default=2.0, help="Warm-up seconds at the same rate.")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processors", type=int, default=1, help="`hookstream process three-ds` processes.")
    parser.add_argument("--ledger", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--log-level", default="warning", help="HOOKSTREAM_LOG_LEVEL of receiver and processors.")
    parser.add_argument("--drain-timeout", type=float, default=90.0, help="Wait at most this for the backlog.")
    parser.add_argument("--bootstrap", default=os.environ.get("HOOKSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--no-write", action="store_true", help="Print only; do not touch docs/benchmarks.md.")
    parser.add_argument("--timeline", action="store_true", help="Also print the latency per second of sending.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-e2e-"))
    try:
        with ExitStack() as stack:
            url = (f"sqlite:///{work / 'ledger.db'}" if args.ledger == "sqlite"
                   else stack.enter_context(durable_postgres()))
            result = run(args, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, default=str))
    body = markdown(result, args)
    print(body)
    if not args.no_write:
        write_section("end_to_end", body)


if __name__ == "__main__":
    main()
