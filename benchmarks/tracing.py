"""What tracing costs on the receiver's request path: `hookstream ingest` with tracing off and on, side by side.

Targets, one local Kafka broker, the same bodies as benchmarks/ingest.py, measured in interleaved rounds:
  off        no OTEL_* variables: no tracer, no OpenTelemetry import (the default)
  on         OTEL_EXPORTER_OTLP_ENDPOINT → a sink in this process: SERVER span, PRODUCER child, events,
             traceparent record header, BatchSpanProcessor exporting over OTLP/HTTP
  sampled-out  the same with OTEL_TRACES_SAMPLER=always_off: context made and propagated, nothing recorded
Per target: requests/s, p50/p99, and CPU µs per request of the receiver's process tree (exporter thread
included) from /proc. The sink answers 200 without decoding, so its own CPU is not the receiver's.
Then, in this process and so steadier on a shared machine: the CPU of one request's tracing work alone
(the receiver's spans, events and header, batch export included), N times, off / on / sampled-out.

Usage: python benchmarks/tracing.py [--seconds 10] [--rounds 3] [--connections 64] [--no-write]
Needs wrk (apt-get install wrk) and the tracing extra (pip install -e ".[tracing]").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import harness  # noqa: F401  (sys.path: tests/, benchmarks/)
from harness import load_average, wrk
from ingest import KEY, PARTITIONS, PATH, Target, bodies, lua_script, median, span, start, stop
from report import write_section

from hookstream import tracing
from hookstream.broker import LocalBroker
from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings


class Sink:
    """An OTLP/HTTP endpoint that counts what it is sent and answers 200 (no decoding)."""

    def __init__(self) -> None:
        sink = self
        self.requests = 0
        self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", "0"))
                self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def targets(bootstrap: str, work: Path, sink: Sink) -> list[Target]:
    def receiver(name: str, label: str, otel: dict[str, str]) -> Target:
        prefix = f"btr{name.replace('-', '')}."
        return Target(name, label, [sys.executable, "-m", "hookstream.cli", "ingest", "--port", "{port}"],
                      {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                       "HOOKSTREAM_TOPIC_PARTITIONS": str(PARTITIONS), "HOOKSTREAM_WEBHOOK_KEYS": KEY,
                       "HOOKSTREAM_SPOOL_DIR": str(work / f"spool-{name}"), "HOOKSTREAM_LOG_LEVEL": "warning",
                       "HOOKSTREAM_DATABASE_URL": f"sqlite:///{work / f'ledger-{name}.db'}",  # the default policy's
                       **otel}, prefix, ready="/readyz")

    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
    return [receiver("off", "tracing off (no OTEL_* set)", {}),
            receiver("on", "tracing on, every request exported", endpoint),
            receiver("sampled-out", "tracing on, OTEL_TRACES_SAMPLER=always_off", {
                **endpoint, "OTEL_TRACES_SAMPLER": "always_off"})]


def request_work(tracer: Any, incoming: dict[str, str]) -> list[tuple[str, bytes]]:
    """What the receiver does for tracing per published webhook (ingest/receiver.py), without the I/O."""
    if tracer is None:  # off: the receiver's `self._tracer is None` tests, and nothing else
        return []
    with tracer.start_as_current_span("POST /webhooks/cryptomate", context=tracing.extract(incoming),
                                      kind=tracing.kind("SERVER"),
                                      attributes={"http.request.method": "POST", "url.path": PATH}) as span:
        span.add_event("authenticated")
        headers = tracing.record_headers(span)
        span.add_event("validated", {"hookstream.product": "cards", "hookstream.event_type": "cleared",
                                     "hookstream.operation_id": "op-1"})
        span.add_event("published", {"messaging.destination.name": "t.cryptomate.cards.transactions",
                                     "messaging.destination.partition.id": "3", "messaging.kafka.offset": 12345})
        span.set_attribute("http.response.status_code", 200)
    return headers


def micro(sink: Sink, n: int) -> dict[str, float]:
    """CPU µs per request of `request_work` (all threads of this process, so the batch export counts)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
    assert tracing.configure("bench")
    tracers = {"off": None, "on": tracing.tracer("bench"),
               "sampled-out": TracerProvider(sampler=ALWAYS_OFF).get_tracer("bench")}
    result: dict[str, list[float]] = {name: [] for name in tracers}
    for _ in range(5):  # interleaved rounds, the median kept
        for name, tracer in tracers.items():
            cpu = time.process_time()
            for i in range(n):
                request_work(tracer, {})
                if name == "on" and i % 1000 == 999:
                    tracing._provider.force_flush()  # within the batch queue (2,048): every span exported, counted
            if name == "on":
                tracing._provider.force_flush()
            result[name].append((time.process_time() - cpu) / n * 1e6)
    tracing.shutdown()
    return {name: sorted(values)[len(values) // 2] for name, values in result.items()}


def markdown(ts: list[Target], args: argparse.Namespace, command: str, loads: str, sink: Sink,
             cpu: dict[str, float]) -> str:
    off = median(ts[0].runs, "server_cpu_us")
    rows = []
    for t in ts:
        r = t.runs
        used = median(r, "server_cpu_us")
        rows.append(f"| {t.label} | **{median(r, 'rps'):,.0f}** ({span(r, 'rps')}) | {median(r, 'p50'):.1f} | "
                    f"{median(r, 'p99'):.1f} | **{used:,.0f}** ({span(r, 'server_cpu_us')}) | {used - off:+,.0f} |")
    return f"""Command: `{command}` ({args.rounds} interleaved rounds of {args.seconds:g} s per target, order rotated, wrk
{args.connections} connections, 1 receiver worker; medians, (min–max) over rounds). Load average
{loads}. CPU is the receiver's process tree from /proc (its exporter thread included) per answered request.
The OTLP sink received {sink.requests:,} export requests ({sink.bytes / 2**20:,.1f} MiB).

| receiver | req/s | p50 ms | p99 ms | CPU µs/req | vs off |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Off is the default: `tracing.tracer()` is None, the request path tests `is None` a few times and
OpenTelemetry is never imported. On adds a SERVER span with three events (authenticated, validated,
published), the `traceparent` record header and the batch export; sampled-out still parses/creates the context and the
header but records and exports nothing. On a machine this loaded, req/s and latency swing between rounds;
the CPU column and the in-process figure below are the ones to compare.

The tracing work alone, in one process ({args.micro:,} requests' worth per round, 5 interleaved rounds, median
CPU µs per request, export thread included): off **{cpu["off"]:.2f}**, on **{cpu["on"]:.1f}**, sampled-out
**{cpu["sampled-out"]:.1f}**."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--micro", type=int, default=5000, help="Requests' worth of tracing work per round.")
    parser.add_argument("--no-write", action="store_true", help="Print only; do not touch docs/benchmarks.md.")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/tracing.py", *sys.argv[1:]])
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-tracing-"))
    sink = Sink()
    broker = LocalBroker(heap="1g")
    bootstrap = broker.start()
    ts = targets(bootstrap, work, sink)
    script = lua_script(work / "bodies.lua", bodies(2048))
    try:
        for t in ts:
            ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_prefix=t.prefix, topic_partitions=PARTITIONS),
                          list(TOPICS))
            start(t, work)
        for t in ts:  # warm-up, and every body answered 2xx
            warm = wrk(f"http://127.0.0.1:{t.port}{PATH}", script, args.warmup, args.connections)
            if warm["non2xx"] or warm["socket_errors"]:
                raise RuntimeError(f"{t.name}: {warm['non2xx']} non-2xx in the warm-up; see {work}")
        loads = [load_average()]
        for rnd in range(args.rounds):
            for t in ts[rnd % len(ts):] + ts[:rnd % len(ts)]:  # each round starts elsewhere: drift spreads evenly
                assert t.proc is not None
                run = wrk(f"http://127.0.0.1:{t.port}{PATH}", script, args.seconds, args.connections,
                          watch={"server": t.proc.pid})
                t.runs.append(run)
                print(f"round {rnd + 1} {t.name}: {run['rps']:,.0f} req/s, p50 {run['p50']:.1f} ms, "
                      f"p99 {run['p99']:.1f} ms, server {run['server_cpu_us']:,.0f} µs/req, "
                      f"non-2xx {run['non2xx']}", flush=True)
        loads.append(load_average())
    finally:
        for t in ts:
            stop(t)
        broker.remove()
    if sink.requests == 0:
        sys.exit(f"the traced receivers exported nothing; logs in {work}")
    exported = sink.requests
    cpu = micro(sink, args.micro)
    print(f"in-process CPU µs/request: {cpu}", flush=True)
    if sink.requests == exported:
        sys.exit("the in-process tracer exported nothing")
    body = markdown(ts, args, command, " → ".join(loads), sink, cpu)
    print(body)
    if not args.no_write:
        write_section("tracing", body)
    sink.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
