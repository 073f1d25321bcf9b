"""What the benchmarks share: percentiles, /metrics scraping, record headers, CPU from /proc, a wrk run."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "tests", ROOT / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([-+0-9.eEinfNa]+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of seconds, in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q) - 1))] * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.50), "p90": pct(values, 0.90), "p99": pct(values, 0.99),
            "p999": pct(values, 0.999), "max": max(values) * 1000 if values else math.nan}


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text exposition."""
    out: Samples = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        found = _SAMPLE.match(line)
        if found:
            labels = frozenset(_LABEL.findall(found.group(2) or ""))
            out[(found.group(1), labels)] = float(found.group(3))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def histogram(before: Samples, after: Samples, name: str) -> dict[str, float]:
    """Count, mean and bucket-interpolated p50/p99 (ms) of what a histogram observed between two scrapes."""
    buckets: dict[float, float] = defaultdict(float)
    for (n, labels), value in after.items():
        if n == f"{name}_bucket":
            le = dict(labels)["le"]
            buckets[math.inf if le == "+Inf" else float(le)] += value - before.get((n, labels), 0.0)
    count = total(after, f"{name}_count") - total(before, f"{name}_count")
    seconds = total(after, f"{name}_sum") - total(before, f"{name}_sum")
    bounds = sorted(buckets)

    def quantile(q: float) -> float:
        rank, lower, below = q * count, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if math.isinf(bound):
                    return lower * 1000
                inside = buckets[bound] - below
                return (lower + (bound - lower) * ((rank - below) / inside if inside else 1)) * 1000
            lower, below = bound, buckets[bound]
        return math.nan

    return {"count": count, "mean": seconds / count * 1000 if count else math.nan,
            "p50": quantile(0.5), "p99": quantile(0.99)}


def record_headers(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[dict[str, str]]:
    """Headers of every record of `topic` (all partitions, from the start) until `expected` are read."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             max_poll_records=5000, fetch_max_bytes=64 * 2**20)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        out: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend({k: v.decode() for k, v in r.headers} for r in records)
        return out
    finally:
        consumer.close()


def load_average() -> str:
    """1-minute load average now (other work on the machine skews every figure)."""
    return f"{os.getloadavg()[0]:.1f}"


def fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and every live descendant (/proc/<pid>/stat counts all of a process's threads)."""
    parents: dict[int, list[int]] = defaultdict(list)
    own: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parents[int(fields[1])].append(int(entry.name))
        own[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total_s, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total_s += own.get(current, 0.0)
        todo.extend(parents.get(current, []))
    return total_s


def _reaped_children_cpu() -> float:
    """cutime+cstime of this process: the CPU of the children it has waited for (wrk, once reaped)."""
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


# wrk's done() hook prints one JSON line the caller parses (latencies in µs).
WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,'
    .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


def wrk(url: str, script: Path, seconds: float, connections: int, threads: int = 1,
        watch: dict[str, int] | None = None) -> dict[str, float]:
    """One closed-loop wrk run: requests/s, latency percentiles (ms), and the CPU seconds per request of
    every process tree in `watch` (name → pid) and of wrk itself, all from /proc around the run."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "15s",
           "-s", str(script), url]
    watch = watch or {}
    before = {name: tree_cpu_seconds(pid) for name, pid in watch.items()}
    client_before = _reaped_children_cpu()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=seconds + 60)
    after = {name: tree_cpu_seconds(pid) for name, pid in watch.items()}
    client_s = _reaped_children_cpu() - client_before
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-2000:]}")
    raw = json.loads(line[4:])
    n = max(raw["requests"], 1)
    result = {"requests": raw["requests"], "rps": raw["requests"] / (raw["duration_us"] / 1e6),
              "non2xx": raw["non2xx"], "socket_errors": raw["socket_errors"],
              **{q: raw[q] / 1000 for q in ("p50", "p90", "p99", "p999", "max")},
              "client_cpu_us": client_s / n * 1e6}
    for name in watch:
        result[f"{name}_cpu_us"] = (after[name] - before[name]) / n * 1e6
    return result
