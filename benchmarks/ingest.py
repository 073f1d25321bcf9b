"""Durable requests/s and latency of `hookstream ingest` against a plain-echo Starlette endpoint.

Both run as one uvicorn worker (uvloop, httptools, no access log) on loopback and get the same load from
the same client in the same run; the receiver answers only after acks=all from a real Kafka broker.
Usage: python benchmarks/ingest.py [--requests N] [--connections C]
       (HOOKSTREAM_KAFKA_BOOTSTRAP=host:port to use a running broker instead of starting one)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from fixtures.http_load import post_many  # noqa: E402
from report import write_section  # noqa: E402

from hookstream.broker import LocalBroker, free_port  # noqa: E402
from hookstream.kafka import ensure_topics  # noqa: E402
from hookstream.schemas.routing import TOPICS  # noqa: E402
from hookstream.settings import Settings  # noqa: E402

KEY = "bench-webhook-key-0001"


def start(cmd: list[str], env: dict[str, str], ready: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} not ready; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def bodies(n: int, tag: str) -> list[bytes]:
    return [json.dumps({"product": "virtual_wallets", "event_type": "deposit", "operation_id": f"{tag}-{i}",
                        "status": "success", "data": {"wallet_id": f"wlt_{i % 64}", "amount": "125.50",
                                                      "wallet_address": "0xabc", "blockchain": "polygon",
                                                      "token": {"address": "0x2791"}}}).encode()
            for i in range(n)]


def measure(port: int, n: int, connections: int, tag: str) -> dict[str, float]:
    headers = {"X-Webhook-Key": KEY, "Content-Type": "application/json"}
    asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies(500, tag + "w"), headers, connections))
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies(n, tag), headers, connections))
    ok = sum(1 for s in result.statuses if s == 200)
    return {"rps": n / result.seconds, "p50": result.percentile(0.50) * 1000, "p99": result.percentile(0.99) * 1000,
            "max": max(result.latencies) * 1000, "ok": ok, "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    broker = None
    bootstrap = os.environ.get("HOOKSTREAM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalBroker(heap="1g")
        bootstrap = broker.start()
    work = Path(tempfile.mkdtemp(prefix="hookstream-bench-"))
    prefix = f"bench{int(time.time())}."
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=6)
    ensure_topics(settings, list(TOPICS))
    procs = []
    try:
        echo_port, ingest_port = free_port(), free_port()
        procs.append(start([sys.executable, "-m", "uvicorn", "echo_app:app", "--port", str(echo_port),
                            "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"],
                           {"PYTHONPATH": str(ROOT / "benchmarks")}, f"http://127.0.0.1:{echo_port}/",
                           work / "echo.log"))
        procs.append(start([sys.executable, "-m", "hookstream.cli", "ingest", "--port", str(ingest_port)],
                           {"HOOKSTREAM_KAFKA_BOOTSTRAP": bootstrap, "HOOKSTREAM_TOPIC_PREFIX": prefix,
                            "HOOKSTREAM_WEBHOOK_KEYS": KEY, "HOOKSTREAM_SPOOL_DIR": str(work / "spool"),
                            "HOOKSTREAM_LOG_LEVEL": "warning"},
                           f"http://127.0.0.1:{ingest_port}/readyz", work / "ingest.log"))
        echo = measure(echo_port, args.requests, args.connections, "e")
        durable = measure(ingest_port, args.requests, args.connections, "d")
    finally:
        for proc in procs:
            stop(proc)
        if broker is not None:
            broker.remove()

    ratio = durable["rps"] / echo["rps"]
    rows = "\n".join(
        f"| {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['ok']:,}/{r['n']:,} |"
        for name, r in (("plain echo (ceiling)", echo), ("hookstream ingest, durable (acks=all)", durable)))
    body = f"""`python benchmarks/ingest.py --requests {args.requests} --connections {args.connections}`: one uvicorn worker each,
{args.connections} keep-alive connections from one asyncio client process on the same machine, deposit webhooks
(~250 B), topics with 6 partitions on a local single-node Kafka 4.4 broker.

| endpoint | requests/s | p50 ms | p99 ms | max ms | 200s |
|---|---|---|---|---|---|
{rows}

Durable throughput is **{ratio:.0%}** of the echo ceiling (target ≥ 70%).
"""
    print(body)
    write_section("ingest", body)


if __name__ == "__main__":
    main()
