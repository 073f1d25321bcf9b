"""The PromQL of deploy/: alert expressions, dashboard queries, and the hookstream metrics they name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from hookstream import metrics
from hookstream.processors.registry import registered

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy/prometheus/rules/hookstream.rules.yml"
RULE_TESTS = REPO / "deploy/prometheus/tests/hookstream.test.yml"
DASHBOARD = REPO / "deploy/grafana/hookstream.json"
OPERATIONS = REPO / "docs/operations.md"

PROCESSORS = tuple(sorted(registered()))  # deploy/ is rendered from the registry (hookstream deploy render)

# Grafana's built-in interval variables, as Grafana would substitute them at a 15 s scrape interval.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

# Series every scrape has without hookstream declaring them: Prometheus' `up`, prometheus_client's process metrics.
SCRAPE_METRICS = frozenset({"up", "process_start_time_seconds"})

# PromQL words that look like metric names but are not.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "le", "inf", "nan"}


@dataclass(frozen=True)
class Expr:
    where: str  # "alert X" or "panel 'Y' target A"
    expr: str


@dataclass(frozen=True)
class Family:
    name: str  # as declared, e.g. hookstream_webhooks_received (counters without _total)
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]

    def samples(self) -> dict[str, str]:
        """Sample name → the part of the family it is."""
        if self.kind == "counter":
            return {f"{self.name}_total": "total"}
        if self.kind == "histogram":
            return {f"{self.name}_{s}": s for s in ("bucket", "sum", "count")}
        return {self.name: "value"}

    @property
    def exposition_name(self) -> str:
        """The name in # TYPE lines (and so in Prometheus' metadata API)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


def families() -> dict[str, Family]:
    """Every metric declared in hookstream.metrics, by sample name."""
    out: dict[str, Family] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            fam = Family(value._name, value._type, tuple(value._labelnames))
            for sample in fam.samples():
                out[sample] = fam
    return out


def rule_exprs() -> list[Expr]:
    doc = yaml.safe_load(RULES.read_text())
    return [Expr(f"alert {r['alert']}", r["expr"]) for g in doc["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[Expr]:
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append(Expr(f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            out.append(Expr(f"variable {var['name']}", var["query"]["query"]))
    return out


def substitute(expr: str, processor: str = "cards") -> str:
    """A dashboard query as Grafana sends it to Prometheus for one value of $processor."""
    for name, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("${processor}", processor).replace("$processor", processor)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable left in {expr!r}")
    return expr


def label_values_query(expr: str) -> str | None:
    """Grafana's label_values(metric, label) as the series selector Prometheus is asked for."""
    m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s*,\s*(\w+)\s*\)\s*", expr)
    return m.group(1) if m else None


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers not followed by '(' and not keywords/labels)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # matchers hold label names, not metrics
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = m.group(0)
        rest = text[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def label_names(expr: str) -> dict[str, set[str]]:
    """metric → label names used in its matchers; plus '*' → labels used in by()/without()."""
    text = _strip_strings(expr)
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", text):
        out.setdefault(m.group(1), set()).update(
            re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
    grouping = set()
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        grouping.update(p.strip() for p in m.group(1).split(",") if p.strip())
    out["*"] = grouping
    return out


def all_exprs() -> list[Expr]:
    return rule_exprs() + dashboard_exprs()
