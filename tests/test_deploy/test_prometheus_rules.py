"""Alert rules pass promtool, every alert has unit tests and a runbook, and all PromQL names real metrics."""

from __future__ import annotations

import re

import pytest
import yaml

from test_deploy.conftest import run, tool
from test_deploy.exprs import (OPERATIONS, REPO, RULE_TESTS, RULES, SCRAPE_METRICS, alerts, all_exprs, dashboard,
                          families, label_names, label_values_query, metric_names)


def test_promtool_check_rules():
    result = run([tool("promtool"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = run([tool("promtool"), "test", "rules", str(RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path):
    doc = yaml.safe_load(RULE_TESTS.read_text())
    doc["rule_files"] = [str(RULES)]
    case = next(t for t in doc["tests"] for a in t["alert_rule_test"] if a["exp_alerts"])
    for check in case["alert_rule_test"]:
        check["exp_alerts"] = [] if check["exp_alerts"] else [{"exp_labels": {"severity": "critical"}}]
    doc["tests"] = [case]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(doc))
    assert run([tool("promtool"), "test", "rules", str(broken)]).returncode != 0


def test_every_alert_is_tested_both_firing_and_quiet():
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fired, quiet = set(), set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    out = set()
    for heading in re.findall(r"^#+\s+(.*)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_alert_has_a_runbook_section_in_operations_doc():
    anchors = _anchors(OPERATIONS.read_text())
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md" and anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"docs/operations.md has no section for {alert['alert']}"
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_prometheus_config_for_compose_is_valid_and_loads_the_rules(tmp_path):
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]  # where compose.yaml mounts rules/
    config["rule_files"] = [str(REPO / "deploy/prometheus/rules/*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([tool("promtool"), "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"hookstream-receiver", "hookstream-processor", "hookstream-lag"}


@pytest.mark.parametrize("expr", all_exprs(), ids=lambda e: e.where)
def test_promql_names_only_declared_metrics_and_their_labels(expr):
    declared = families()
    query = label_values_query(expr.expr) or expr.expr
    names = metric_names(query)
    assert names, f"{expr.where}: selects no metric"
    labels = label_names(query)
    allowed = {"le", "job", "instance", "namespace", "pod", "processor"}  # processor: a target label too
    for name in names:
        if name in SCRAPE_METRICS:
            continue
        assert name in declared, f"{expr.where}: {name} is not declared in hookstream.metrics"
        allowed |= set(declared[name].labels)
        unknown = labels.get(name, set()) - set(declared[name].labels) - {"job", "instance"}
        assert not unknown, f"{expr.where}: {name} has no label(s) {unknown}"
    assert labels["*"] <= allowed, f"{expr.where}: groups by unknown label(s) {labels['*'] - allowed}"


def test_dashboard_has_rows_for_ingest_authorization_each_processor_and_the_api():
    dash = dashboard()
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    titles = [r["title"] for r in rows]
    assert titles[:2] == ["Ingest", "Authorization"] and "CryptoMate API" in titles
    (per_processor,) = [r for r in rows if r.get("repeat") == "processor"]
    assert "$processor" in per_processor["title"]
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "processor"]
    assert var["includeAll"] and var["multi"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_shows_what_an_on_call_engineer_acts_on():
    """Issue 11: DLQ backlog per processor (a level, not a rate), processes up and restarts, Kafka reachability,
    spool records and bytes on separate axes, authorization fallbacks per minute."""
    panels = {p["title"]: p for p in dashboard()["panels"] if p["type"] != "row"}

    def exprs(title: str) -> list[str]:
        return [t["expr"] for t in panels[title]["targets"]]

    assert exprs("Dead letters held per processor") == ["sum by (processor) (hookstream_dlq_records)"]
    assert any("up{" in e for e in exprs("Processes up"))
    assert any(e.startswith("changes(process_start_time_seconds") for e in exprs("Restarts (last hour)"))
    assert any("hookstream_kafka_up" in e for e in exprs("Kafka reachable"))
    assert any("hookstream_consumer_group_lag" in e for e in exprs("Consumer lag per group (committed offsets)"))
    spool = panels["Spool records and bytes"]
    by_ref = {t["refId"]: t["expr"] for t in spool["targets"]}
    (bytes_ref,) = [ref for ref, e in by_ref.items() if "hookstream_spool_bytes" in e]
    (override,) = [o for o in spool["fieldConfig"]["overrides"] if o["matcher"]["options"] == bytes_ref]
    assert {"id": "custom.axisPlacement", "value": "right"} in override["properties"]
    assert exprs("Fallbacks per minute by cause") == [
        "60 * sum by (cause) (rate(hookstream_authorization_fallbacks_total[$__rate_interval]))"]
