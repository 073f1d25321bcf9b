"""docs/metrics.md lists every metric of hookstream/metrics.py with its type and labels, and no other."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from hookstream import metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            out[name] = (value._type, tuple(value._labelnames))
    return out


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`(hookstream_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", line)
        if m:
            out[m.group(1)] = (m.group(2), tuple(re.findall(r"`(\w+)`", m.group(3))))
    return out


def test_every_metric_is_in_the_docs_table_with_its_type_and_labels():
    assert documented() == declared()


def test_histograms_follow_prometheus_naming():
    for name, (kind, _labels) in declared().items():
        if kind == "histogram":
            assert name.endswith("_seconds"), name
            assert name.endswith("_duration_seconds") or name.endswith("_age_seconds"), name


def test_counters_with_known_labels_exist_at_zero_from_start():
    """In a fresh process (this one's counters may have moved): every known series is exported at 0."""
    text = subprocess.run([sys.executable, "-c", "from hookstream import metrics; metrics.precreate(); "
                           "print(metrics.render()[0].decode())"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    for counter, label_sets in metrics.KNOWN_LABELS.items():
        (label,) = counter._labelnames
        for (value,) in label_sets:
            assert f'{counter._name}_total{{{label}="{value}"}} 0.0' in text, (counter._name, value)
