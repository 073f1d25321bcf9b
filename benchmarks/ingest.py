"""Durable ingest side by side: hookstream's receiver against small peers, on one broker, with wrk.

Targets, all on one local Kafka broker, same CryptoMate bodies and headers, measured in interleaved rounds:
  hookstream   `hookstream ingest` (1 worker; a second row with --workers 2)
  aiokafka     benchmarks/peers/aiokafka_app.py   Starlette + aiokafka send_and_wait (acks=all, idempotent)
  confluent    benchmarks/peers/confluent_app.py  Starlette + confluent-kafka, delivery callback → asyncio
  go           benchmarks/peers/go                net/http + franz-go (acks=all, idempotent), built with go build
  echo         benchmarks/peers/echo.py           plain Starlette echo: the HTTP ceiling, no Kafka
Load: wrk (closed loop, Lua script setting body, X-Webhook-Key, X-Request-Timestamp, content-type). Per target:
requests/s, p50/p99, and CPU seconds per request of the server's process tree and of the broker (/proc).
Then authorization answers (ledger policy, SQLite) at a paced 1,000/s (tests/fixtures/http_load.py post_paced).

Usage: python benchmarks/ingest.py [--seconds 10] [--rounds 3] [--connections 64] [--only NAME ...] [--no-write]
A/B of versions: --variant NAME=PYTHON (a venv with another hookstream installed) adds it to the same
interleaved rounds; --granian adds hookstream's app under granian.
Needs wrk (apt-get install wrk), go, and the `bench` extra (pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import harness  # noqa: F401  (sys.path: tests/, benchmarks/)
from harness import fmt, load_average, summary, tree_cpu_seconds, wrk, WRK_DONE
from fixtures.http_load import post_paced
from report import write_section
from test_ingest.payloads import CATALOG, VARIANTS, envelope

from hookstream.broker import LocalBroker, cache_root, free_port
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import ROUTES, TOPICS
from hookstream.settings import Settings

# The producers' linger: hookstream's (HOOKSTREAM_KAFKA_LINGER_MS, else its default), given to every peer too.
LINGER_MS = int(os.environ.get("HOOKSTREAM_KAFKA_LINGER_MS", Settings.model_fields["kafka_linger_ms"].default))

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
KEY = "bench-webhook-key-0001"
PATH = "/webhooks/cryptomate"
PARTITIONS = 6
AUTH_CONNECTIONS = 32  # post_paced opens more when all are busy, up to 16×
# Every catalog event but the card authorization, which is the decision path measured on its own below.
MIX = [entry for entry in CATALOG if entry[1] != "authorization"]


@dataclass
class Target:
    name: str
    label: str
    cmd: list[str]
    env: dict[str, str]
    prefix: str | None  # topic prefix (None: no Kafka)
    ready: str = PATH  # any answer below 500 here means it serves (a GET on the webhook route gets 405)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    runs: list[dict[str, float]] = field(default_factory=list)
    answered: int = 0  # 2xx answers over all runs, warm-up included
    records: int | None = None


def bodies(n: int) -> list[bytes]:
    """n bodies cycling through the catalog (every kind but authorization) in every envelope form."""
    out = []
    for i in range(n):
        product, event_type, status, _op, data, _topic, _key = MIX[i % len(MIX)]
        op = str(uuid.UUID(int=random.Random(i).getrandbits(128)))
        if event_type == "notification_3ds_authorization":
            data = {**data, "code": op}
        out.append(envelope(product, event_type, status, op, data, **VARIANTS[(i // len(MIX)) % len(VARIANTS)]))
    return out


def lua_script(path: Path, payloads: list[bytes]) -> Path:
    """wrk script: round-robin bodies (offset per thread), fresh X-Request-Timestamp, the key, content-type."""
    rows = ",\n".join(f"[==[{b.decode()}]==]" for b in payloads)
    path.write_text(f"""local bodies = {{
{rows}
}}
local n, i = #bodies, 0
local headers = {{["X-Webhook-Key"] = "{KEY}", ["Content-Type"] = "application/json"}}
local threads = 0
function setup(thread) thread:set("offset", threads * 997); threads = threads + 1 end
function init(args) i = tonumber(offset) or 0 end
function request()
  i = i + 1
  headers["X-Request-Timestamp"] = tostring(os.time() * 1000)
  return wrk.format("POST", "{PATH}", headers, bodies[i % n + 1])
end
{WRK_DONE}""")
    return path


def go_binary() -> Path:
    """The Go peer, built once per source version (cached under ~/.cache/hookstream/bench)."""
    src = PEERS / "go"
    digest = hashlib.sha256(b"".join((src / f).read_bytes() for f in ("go.mod", "go.sum", "main.go"))).hexdigest()
    binary = cache_root() / "bench" / f"peer-go-{digest[:12]}"
    if not binary.exists():
        if shutil.which("go") is None:
            sys.exit("go not found: the Go peer (benchmarks/peers/go) is built with `go build`")
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(["go", "build", "-o", str(partial), "."], cwd=src, check=True, timeout=600)
        partial.rename(binary)
    return binary


def start(target: Target, work: Path) -> None:
    target.port = free_port()
    cmd = [part.replace("{port}", str(target.port)) for part in target.cmd]
    with open(work / f"{target.name}.log", "wb") as out:
        target.proc = subprocess.Popen(cmd, env={**os.environ, **target.env}, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300  # a loaded 2-core machine takes minutes to start `--workers 2`
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited: {(work / f'{target.name}.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{target.port}{target.ready}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(target)
    raise RuntimeError(f"{target.name} not ready; see {work / f'{target.name}.log'}")


def stop(target: Target) -> None:
    proc = target.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def make_targets(bootstrap: str, work: Path, workers: int, variants: list[str] = (),
                 granian: bool = False) -> list[Target]:
    stamp = uuid.uuid4().hex[:6]
    uvicorn = [sys.executable, "-m", "uvicorn", "--port", "{port}", "--no-access-log", "--log-level", "warning",
               "--loop", "uvloop", "--http", "httptools"]

    def peer_env(prefix: str) -> dict[str, str]:
        routes = {f"{p}/{e}": [f"{prefix}{r.topic}", r.key_field] for (p, e), r in ROUTES.items()}
        return {"PEER_KEY": KEY, "PEER_BOOTSTRAP": bootstrap, "PEER_ROUTES": json.dumps(routes),
                "PEER_LINGER_MS": str(LINGER_MS), "PYTHONPATH": str(PEERS)}

    def hookstream(name: str, n: int, python: str = sys.executable, label: str = "hookstream ingest") -> Target:
        prefix = f"b{stamp}{name.replace('-', '')}."
        return Target(name, f"{label}{'' if n == 1 else f' --workers {n}'}",
                      [python, "-m", "hookstream.cli", "ingest", "--port", "{port}", "--workers", str(n)],
                      {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                       "HOOKSTREAM_TOPIC_PARTITIONS": str(PARTITIONS), "HOOKSTREAM_WEBHOOK_KEYS": KEY,
                       "HOOKSTREAM_SPOOL_DIR": str(work / f"spool-{name}"), "HOOKSTREAM_LOG_LEVEL": "warning",
                       # the default (ledger) policy opens its ledger at start; no authorization is in this mix
                       "HOOKSTREAM_DATABASE_URL": f"sqlite:///{work / f'ledger-{name}.db'}"},
                      prefix, ready="/readyz")

    targets = [hookstream("hookstream", 1)]
    for name, label, module in (("aiokafka", "Starlette + aiokafka", "aiokafka_app:app"),
                                ("confluent", "Starlette + confluent-kafka", "confluent_app:app")):
        prefix = f"b{stamp}{name}."
        targets.append(Target(name, label, [*uvicorn, module], peer_env(prefix), prefix))
    prefix = f"b{stamp}go."
    targets.append(Target("go", "Go net/http + franz-go", [str(go_binary()), "{port}"], peer_env(prefix), prefix))
    targets.append(Target("echo", "Starlette echo (no Kafka, ceiling)", [*uvicorn, "echo:app"],
                          {"PYTHONPATH": str(PEERS)}, None))
    if workers > 1:
        targets.append(hookstream(f"hookstream-w{workers}", workers))
    if granian:  # the same app under granian (Rust HTTP) instead of uvicorn + httptools
        hs = hookstream("hookstream-granian", 1)
        hs.label = "hookstream app under granian"
        hs.cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                  "--port", "{port}", "--loop", "uvloop", "--workers", "1", "--no-access-log", "--log-level",
                  "warning", "hookstream.ingest.app:served_app"]
        targets.insert(1, hs)
    for variant in variants:  # NAME=PYTHON: another hookstream version (its venv), for A/B rounds
        name, python = variant.split("=", 1)
        targets.insert(1, hookstream(name, 1, python, f"hookstream ingest ({name})"))
    return targets


def records_in_kafka(bootstrap: str, prefix: str) -> int:
    """Records in all of a prefix's topics (end offsets; the topics were created empty for this run)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(f"{prefix}{t}", p) for t in TOPICS for p in range(PARTITIONS)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def authorization_run(bootstrap: str, broker_pid: int, work: Path, rate: float, seconds: float) -> dict[str, Any]:
    """Authorization answers at a paced `rate` (open loop, post_paced), SQLite ledger policy, one worker."""
    from authorization import KEY as AUTH_KEY, POLICY, bodies as auth_bodies, seed

    url = f"sqlite:///{work / 'ledger.db'}"
    prefix = f"bauth{uuid.uuid4().hex[:6]}."
    ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS), list(TOPICS))
    seed(url)
    rng = random.Random(11)
    warm, _ = auth_bodies(int(rate * 3), "w", rng)
    load, _ = auth_bodies(int(rate * seconds), "m", rng)
    target = Target("authorization", "authorization", [sys.executable, "-m", "hookstream.cli", "ingest", "--port",
                                                        "{port}"],
                    {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                     "HOOKSTREAM_WEBHOOK_KEYS": AUTH_KEY, "HOOKSTREAM_SPOOL_DIR": str(work / "spool-auth"),
                     "HOOKSTREAM_DATABASE_URL": url, "HOOKSTREAM_AUTHORIZATION_POLICY": POLICY,
                     "HOOKSTREAM_LOG_LEVEL": "warning"}, prefix, ready="/readyz")
    start(target, work)
    assert target.proc is not None

    def send(batch: list[bytes]) -> Any:
        headers = {"X-Webhook-Key": AUTH_KEY, "Content-Type": "application/json",
                   "X-Request-Timestamp": str(int(time.time() * 1000))}
        return asyncio.run(post_paced("127.0.0.1", target.port, PATH, batch, headers, rate, AUTH_CONNECTIONS))

    try:
        send(warm)
        cpu = (tree_cpu_seconds(target.proc.pid), tree_cpu_seconds(broker_pid), time.process_time())
        result = send(load)
        cpu_after = (tree_cpu_seconds(target.proc.pid), tree_cpu_seconds(broker_pid), time.process_time())
    finally:
        stop(target)
    codes: dict[str, int] = {}
    for status, answer in zip(result.statuses, result.answers, strict=True):
        code = json.loads(answer)["response_code"] if status == 200 else f"HTTP {status}"
        codes[code] = codes.get(code, 0) + 1
    n = len(load)
    return {"rate": rate, "seconds": seconds, "sent": n, "achieved": result.achieved_rate,
            "answered_per_s": sum(s == 200 for s in result.statuses) / result.seconds,
            "pool_full": result.connections_opened >= 16 * AUTH_CONNECTIONS,
            "ok": sum(s == 200 for s in result.statuses), "latency": summary(result.latencies),
            "server_cpu_us": (cpu_after[0] - cpu[0]) / n * 1e6, "broker_cpu_us": (cpu_after[1] - cpu[1]) / n * 1e6,
            "client_cpu_us": (cpu_after[2] - cpu[2]) / n * 1e6,
            "codes": dict(sorted(codes.items(), key=lambda kv: -kv[1]))}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def span(runs: list[dict[str, float]], key: str, digits: int = 0) -> str:
    values = [r[key] for r in runs]
    return f"{min(values):,.{digits}f}–{max(values):,.{digits}f}"


def markdown(targets: list[Target], auth: dict[str, Any] | None, args: argparse.Namespace, command: str,
             loads: str) -> str:
    rows = []
    for t in targets:
        r = t.runs
        durable = "—" if t.records is None else f"{t.records:,} / {t.answered:,}"
        rows.append(f"| {t.label} | **{median(r, 'rps'):,.0f}** ({span(r, 'rps')}) | {median(r, 'p50'):.1f} | "
                    f"{median(r, 'p99'):.1f} | **{median(r, 'server_cpu_us'):,.0f}** ({span(r, 'server_cpu_us')}) | "
                    f"{median(r, 'broker_cpu_us'):,.0f} | {median(r, 'client_cpu_us'):,.0f} | "
                    f"{sum(x['non2xx'] + x['socket_errors'] for x in r):,} | {durable} |")
    by = {t.name: t for t in targets}
    lines = []
    hs = by.get("hookstream")
    python = [by[n] for n in ("aiokafka", "confluent") if n in by]
    if hs and python:
        best_rps = max(python, key=lambda t: median(t.runs, "rps"))
        best_cpu = min(python, key=lambda t: median(t.runs, "server_cpu_us"))
        rps_ratio = median(hs.runs, "rps") / median(best_rps.runs, "rps")
        cpu_ratio = median(hs.runs, "server_cpu_us") / median(best_cpu.runs, "server_cpu_us")
        lines.append(f"- hookstream / best Python peer: requests/s **{rps_ratio:.2f}×** ({best_rps.label}; "
                     f"target ≥ 1.0×: {'met' if rps_ratio >= 1 else 'missed'}), server CPU per request "
                     f"**{cpu_ratio:.2f}×** ({best_cpu.label}; target ≤ 1.0×: {'met' if cpu_ratio <= 1 else 'missed'}).")
    if hs and "go" in by:
        go = by["go"]
        rps_ratio = median(hs.runs, "rps") / median(go.runs, "rps")
        cpu_ratio = median(hs.runs, "server_cpu_us") / median(go.runs, "server_cpu_us")
        lines.append(f"- hookstream / Go peer: requests/s **{rps_ratio:.2f}×** (aim ≥ 0.5×: "
                     f"{'met' if rps_ratio >= 0.5 else 'missed'}), server CPU per request **{cpu_ratio:.2f}×**.")
    workers = next((t for t in targets if t.name.startswith("hookstream-w")), None)
    if hs and workers:
        lines.append(f"- `{workers.label}` / 1 worker: requests/s **{median(workers.runs, 'rps') / median(hs.runs, 'rps'):.2f}×**, "
                     f"CPU per request {median(workers.runs, 'server_cpu_us') / median(hs.runs, 'server_cpu_us'):.2f}× "
                     "(2 cores, shared with wrk, the broker and other work: no headroom for a second worker to add much).")
    auth_part = ""
    if auth:
        lat = auth["latency"]
        why = (f"all {16 * AUTH_CONNECTIONS} connections of the client's pool were waiting on answers" if auth["pool_full"]
               else "the client process was short of CPU")
        behind = "" if auth["achieved"] >= 0.95 * auth["rate"] else (
            f" **Requests were written late**: {auth['achieved']:,.0f}/s, not {auth['rate']:,.0f}/s ({why}); "
            "latencies still count from the scheduled times, so the backlog's wait is in them.")
        auth_part = f"""
Authorization answers (card `authorization`, `HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.policy:ledger_policy`,
SQLite ledger seeded as in `benchmarks/authorization.py`, one worker) sent open loop at a paced
**{auth['rate']:,.0f}/s** for {auth['seconds']:g} s after 3 s of warm-up, by the paced client of
`tests/fixtures/http_load.py` (`post_paced`, {AUTH_CONNECTIONS} keep-alive connections, up to {16 * AUTH_CONNECTIONS} when all are busy;
latency from each request's scheduled send time, so no coordinated omission; CPU per request sent).
wrk cannot pace, so it is not used here.

| written/s | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | 200s | server CPU µs/request | broker CPU µs/request | client CPU µs/request |
|---|---|---|---|---|---|---|---|---|---|---|
| {auth['achieved']:,.0f} | {auth['answered_per_s']:,.0f} | {fmt(lat['p50'])} | {fmt(lat['p90'])} | {fmt(lat['p99'])} | {fmt(lat['p999'])} | {fmt(lat['max'])} | {auth['ok']:,}/{auth['sent']:,} | {auth['server_cpu_us']:,.0f} | {auth['broker_cpu_us']:,.0f} | {auth['client_cpu_us']:,.0f} |

Response codes: {', '.join(f'`{c}` {n:,}' for c, n in auth['codes'].items())} (`HTTP 0`: no answer within the
client's 10 s timeout).{behind}
"""
    return f"""`{command}`

Side by side on one local single-node Kafka 4.4 broker (topics of {PARTITIONS} partitions, one prefix per
target), each server one process on 127.0.0.1 (uvicorn with uvloop + httptools, no access log, for the
Python ones), all started before the first round and measured in {args.rounds} interleaved rounds
({' → '.join(t.name for t in targets)}, repeated) of {args.seconds:g} s of
`wrk -t {args.threads} -c {args.connections}` each, after a {args.warmup:g} s warm-up per target. Bodies: the
{len(MIX)} non-authorization kinds of the test catalog (`tests/test_ingest/payloads.py`) in all
{len(VARIANTS)} envelope forms, unique operation ids, sent round-robin by a Lua script that sets
`X-Webhook-Key`, a fresh `X-Request-Timestamp` and `Content-Type`. Every Kafka target answers 200 only
after acks=all (idempotent producers, every one with hookstream's linger, {LINGER_MS} ms); the peers route each kind to the same topic and key
as hookstream but add no record headers, validate nothing beyond the JSON and keep no metrics or spool.
CPU per request = utime+stime from `/proc/<pid>/stat` of the server's process tree (all threads and
worker processes; the Go binary too), the broker's JVM and wrk, over the run ÷ requests answered.
The machine is shared with other work (1-minute load average before → after: {loads}): requests/s is
noisy, **CPU per request is the figure to trust**. Median over the rounds (min–max in brackets).

| target | requests/s | p50 ms | p99 ms | server CPU µs/req | broker CPU µs/req | wrk CPU µs/req | errors | records in Kafka / 2xx |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(lines)}
{auth_part}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of one target in one round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk seconds per target before round 1.")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads.")
    parser.add_argument("--workers", type=int, default=2, help="Also measure `ingest --workers N` (1: skip).")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PYTHON",
                        help="Also measure the hookstream installed in another venv (A/B of versions).")
    parser.add_argument("--granian", action="store_true", help="Also measure hookstream's app under granian.")
    parser.add_argument("--only", action="append", help="Measure only these targets (hookstream, aiokafka, …).")
    parser.add_argument("--auth-rate", type=float, default=1000.0, help="Authorizations/s (0: skip).")
    parser.add_argument("--auth-seconds", type=float, default=15.0)
    parser.add_argument("--no-write", action="store_true", help="Print only; do not touch docs/benchmarks.md.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    command = " ".join(["python benchmarks/ingest.py", *sys.argv[1:]])

    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-ingest-"))
    broker = LocalBroker(heap="1g")
    bootstrap = broker.start()
    assert broker.pid is not None
    targets = [t for t in make_targets(bootstrap, work, args.workers, args.variant, args.granian) if not args.only or t.name in args.only]
    script = lua_script(work / "bodies.lua", bodies(2048))
    auth = None
    try:
        for t in targets:
            if t.prefix:
                ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=t.prefix, topic_partitions=PARTITIONS),
                              list(TOPICS))
            start(t, work)
            print(f"{t.name}: started (pid {t.proc.pid if t.proc else '?'})", flush=True)
        for t in targets:  # warm-up, also a check that every body is answered 2xx by every target
            assert t.proc is not None
            warm = wrk(f"http://127.0.0.1:{t.port}{PATH}", script, args.warmup, args.connections, args.threads)
            if warm["non2xx"] or warm["socket_errors"]:
                raise RuntimeError(f"{t.name}: {warm['non2xx']} non-2xx, {warm['socket_errors']} socket errors "
                                   f"in the warm-up; see {work / f'{t.name}.log'}")
            t.answered += int(warm["requests"])
        loads = [load_average()]
        for rnd in range(args.rounds):
            for t in targets:
                assert t.proc is not None
                run = wrk(f"http://127.0.0.1:{t.port}{PATH}", script, args.seconds, args.connections, args.threads,
                          watch={"server": t.proc.pid, "broker": broker.pid})
                t.runs.append(run)
                t.answered += int(run["requests"] - run["non2xx"])
                print(f"round {rnd + 1} {t.name}: {run['rps']:,.0f} req/s, p50 {run['p50']:.1f} ms, "
                      f"p99 {run['p99']:.1f} ms, server {run['server_cpu_us']:,.0f} µs/req, "
                      f"broker {run['broker_cpu_us']:,.0f} µs/req, non-2xx {run['non2xx']}", flush=True)
        loads.append(load_average())
        for t in targets:
            stop(t)
            if t.prefix:
                t.records = records_in_kafka(bootstrap, t.prefix)
        if args.auth_rate > 0:
            auth = authorization_run(bootstrap, broker.pid, work, args.auth_rate, args.auth_seconds)
            print(json.dumps(auth, default=str), flush=True)
    finally:
        for t in targets:
            stop(t)
        broker.remove()
    body = markdown(targets, auth, args, command, " → ".join(loads))
    print(body)
    short = [t.name for t in targets if t.records is not None and t.records < t.answered]
    if short:
        sys.exit(f"fewer records in Kafka than 2xx answers: {short}; logs in {work}")
    if not args.no_write:
        write_section("ingest", body)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
