"""A real Prometheus scrapes a running receiver and processor: the dashboard's and rules' queries all work.

Starts, on loopback: `hookstream ingest`, `hookstream process cards` (both as a user would, via the
`processes` fixture, on the test broker), and Debian's `prometheus` with deploy/prometheus's rules loaded.
Drives a few webhooks through the receiver and asks Prometheus' HTTP API about the result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from test_deploy.conftest import render, tool
from test_deploy.exprs import (PROCESSORS, RULES, SCRAPE_METRICS, alerts, dashboard_exprs, families, label_names, label_values_query,
                          metric_names, rule_exprs, substitute)
from fixtures.processes import Processes
from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.settings import Settings

PROCESSOR = "cards"  # consumes cryptomate.cards.transactions, which the webhooks below are routed to
KEY = "test-webhook-key-0001"  # make_settings' webhook key

# Series the scenario below must produce (the rest of the dashboard's metrics only need to be exposed).
DRIVEN = {
    "up", "hookstream_webhooks_received_total", "hookstream_webhooks_published_total",
    "hookstream_webhooks_rejected_total", "hookstream_request_duration_seconds_count", "hookstream_request_duration_seconds_bucket",
    "hookstream_publish_duration_seconds_bucket", "hookstream_authorization_decisions_total",
    "hookstream_authorization_duration_seconds_bucket", "hookstream_spool_depth", "hookstream_spool_bytes",
    "hookstream_spool_written_total", "hookstream_spool_forwarded_total", "hookstream_spool_rejected_total",
    "hookstream_processed_total", "hookstream_processing_duration_seconds_bucket", "hookstream_event_age_seconds_bucket",
    "hookstream_consumer_lag", "hookstream_consumer_group_lag", "hookstream_dlq_records", "hookstream_kafka_up",
}



def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    # the cards processor calls no API: nothing listens on port 9
    return {**settings.to_env(), "HOOKSTREAM_API_BASE_URL": "http://127.0.0.1:9", **extra}


class Prometheus:
    """Debian's prometheus server on a loopback port, stopped by PID."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
                 "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.popen.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, "prometheus /-/ready", timeout)

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query_status(self, expr: str) -> tuple[int, dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        return response.status_code, response.json()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[dict[str, list[str]]], Prometheus]]:
    started: list[Prometheus] = []

    def start(jobs: dict[str, list[str]]) -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in jobs.items()],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        prom = Prometheus(path, tmp_path / "tsdb", tmp_path / "prometheus.log")
        started.append(prom)
        prom.wait_ready()
        return prom

    try:
        yield start
    finally:
        for prom in started:
            prom.stop()


def webhook(event_type: str, status: str, operation_id: str, card: str, amount: str) -> bytes:
    data = {"card_id": card, "bill_amount": amount, "bill_currency_code": "USD", "transaction_amount": amount,
            "transaction_currency_code": "USD", "channel": "POS", "created_at": "2025-01-15T12:34:56Z",
            "merchant_data": {"id": "mch_1", "name": "Acme Coffee", "country": "USA", "mcc_code": "5812"}}
    return json.dumps({"product": "cards", "event_type": event_type, "status": status,
                       "operation_id": operation_id, "data": data}).encode()


def _probe_paths() -> dict[str, set[str]]:
    """role (ingest | process | lag) → HTTP paths the Kubernetes probes of that role call."""
    out: dict[str, set[str]] = {"ingest": set(), "process": set()}
    for obj in render("deploy/k8s/base"):
        if obj["kind"] == "Deployment":
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    out.setdefault(container["args"][0], set()).add(container[probe]["httpGet"]["path"])
    return out


def test_prometheus_scraping_a_receiver_and_a_processor_serves_every_dashboard_and_rule_query(
        settings: Settings, processes: Processes, prometheus_for, tmp_path: Path):
    ensure_topics(settings, [f"hookstream.{PROCESSOR}.dlq"])
    env = env_for(settings)

    ingest_port = free_port()
    receiver = f"http://127.0.0.1:{ingest_port}"
    processes.start(["ingest", "--host", "127.0.0.1", "--port", str(ingest_port), "--workers", "1"], env,
                    name="ingest", ready_url=f"{receiver}/readyz", timeout=60)
    processor_port = free_port()
    processor = f"http://127.0.0.1:{processor_port}"
    processes.start(["process", PROCESSOR], {**env, "HOOKSTREAM_PROCESSOR_HTTP_PORT": str(processor_port)},
                    name=f"process-{PROCESSOR}", ready_url=f"{processor}/healthz", timeout=60)

    # The probes in deploy/k8s answer 200 on the running processes.
    probes = _probe_paths()
    for base, role in ((receiver, "ingest"), (processor, "process")):
        for path in probes[role]:
            assert httpx.get(f"{base}{path}", timeout=5).status_code == 200, f"{role} {path}"

    lag_port = free_port()
    processes.start(["lag", "--serve", str(lag_port), "--interval", "1"], env, name="lag",
                    ready_url=f"http://127.0.0.1:{lag_port}/metrics", timeout=60)
    for path in probes["lag"]:  # the lag exporter's Deployment probes it too
        assert httpx.get(f"http://127.0.0.1:{lag_port}{path}", timeout=5).status_code == 200, f"lag {path}"

    prom = prometheus_for({"hookstream-receiver": [f"127.0.0.1:{ingest_port}"],
                           "hookstream-processor": [f"127.0.0.1:{processor_port}"],
                           "hookstream-lag": [f"127.0.0.1:{lag_port}"]})

    # A few webhooks: an authorization (answered by the receiver), its clearing, a refund, and two refusals.
    post = f"{receiver}/webhooks/cryptomate"
    headers = {"content-type": "application/json", "X-Webhook-Key": KEY}
    answers = [
        httpx.post(post, content=webhook("authorization", "pending", "op_live_1", "crd_live", "12.00"),
                   headers=headers, timeout=30),
        httpx.post(post, content=webhook("cleared", "success", "op_live_1", "crd_live", "12.00"),
                   headers=headers, timeout=30),
        httpx.post(post, content=webhook("refund", "success", "op_live_2", "crd_live", "3.00"),
                   headers=headers, timeout=30),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert "response_code" in answers[0].json()
    assert httpx.post(post, content=b"{}", headers={**headers, "X-Webhook-Key": "wrong-key-0000"},
                      timeout=30).status_code == 401

    # Prometheus sees both targets up and the processor's work.
    def targets_up() -> bool:
        result = prom.api("query", query='up{job=~"hookstream-.*"} == 1')["result"]
        return len(result) == 3
    wait_until(targets_up, "the three hookstream targets up in Prometheus", 60)
    wait_until(lambda: prom.api("query", query=f'sum(hookstream_processed_total{{processor="{PROCESSOR}"}}) >= 3')
             ["result"], f"{PROCESSOR} to process the three card events", 90)

    # 1. Every metric the dashboard and the rules use is exposed by a scraped hookstream process, with its type.
    declared = families()
    used = set()
    for expr in rule_exprs() + dashboard_exprs():
        used |= metric_names(label_values_query(expr.expr) or expr.expr)
    used -= SCRAPE_METRICS
    assert used
    for sample in sorted(used):
        fam = declared[sample]
        metadata = prom.api("targets/metadata", metric=fam.exposition_name)
        jobs = {m["target"]["job"] for m in metadata}
        assert jobs, f"no scraped target exposes {fam.exposition_name}"
        assert {m["type"] for m in metadata} == {fam.kind}, (fam.exposition_name, metadata)

    # The lag exporter measures on its own clock: it sees the processor's commit a little later.
    wait_until(lambda: prom.api("series", **{"match[]": "hookstream_consumer_group_lag"}),
               "the lag exporter's view of the committed offsets", 60)

    # 2. The series the scenario exercised have samples, with the labels the queries group by.
    for sample in sorted(DRIVEN):
        result = prom.api("series", **{"match[]": sample})
        assert result, f"Prometheus has no {sample} series"
        if sample in declared:
            assert set(declared[sample].labels) <= set(result[0]), (sample, result[0])

    # 3. Every rule and dashboard expression is accepted by this Prometheus (a syntax error answers 400) ...
    queries: list[tuple[str, str]] = [(e.where, e.expr) for e in rule_exprs()]
    for e in dashboard_exprs():
        selector = label_values_query(e.expr)
        if selector:
            values = prom.api("label/processor/values", **{"match[]": selector})
            assert PROCESSOR in values, values
            continue
        for name in PROCESSORS:
            queries.append((f"{e.where} [processor={name}]", substitute(e.expr, processor=name)))
    for where, query in queries:
        status, body = prom.query_status(query)
        assert status == 200 and body["status"] == "success", f"{where}: {query!r} → {body}"
    bad_status, bad_body = prom.query_status("sum(rate(hookstream_processed_total[1m])")
    assert bad_status == 400 and bad_body["errorType"] == "bad_data"

    # ... and the panels whose metrics the scenario drove (with no filter but $processor) show data.
    def unfiltered(expr: str) -> bool:
        labels = label_names(expr)
        return all(v <= {"processor"} for k, v in labels.items() if k != "*")

    def empty_panels() -> list[str]:
        missing = []
        for e in dashboard_exprs():
            if label_values_query(e.expr) or not unfiltered(e.expr):
                continue
            if metric_names(e.expr) <= DRIVEN:
                if not prom.api("query", query=substitute(e.expr, processor=PROCESSOR))["result"]:
                    missing.append(e.where)
        return missing
    wait_until(lambda: not empty_panels(), "dashboard panels with data", 60)

    # 4. Prometheus loaded every alert from the rules file and evaluates each without error.
    def evaluated_rules() -> list[dict] | None:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        if all(r["lastEvaluation"] > "2000" for r in rules):  # RFC 3339; never evaluated is year 0001
            return rules
        return None
    rules = wait_until(evaluated_rules, "every rule evaluated once", 30)
    assert sorted(r["name"] for r in rules) == sorted(a["alert"] for a in alerts())
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    # Nothing is wrong in this scenario, so nothing fires.
    firing = [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"]
    assert firing == [], firing
