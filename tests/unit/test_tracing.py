"""Tracing is off unless the standard OTEL_* variables ask for it: then no exporter, no OpenTelemetry import,
no ids in log lines; on, log lines written under a span carry its ids; without the packages, a warning."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest
import structlog

from fixtures.otlp import otlp  # noqa: F401 — the fixture
from fixtures.waiting import wait_until
from hookstream import logs, tracing
from hookstream.logs import configure_logging

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED",
                  "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME")


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def fresh_logging(out: io.StringIO) -> None:
    structlog.reset_defaults()
    configure_logging("info", "json", stream=out)


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_only_an_otlp_endpoint_turns_tracing_on():
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "})


def test_without_otel_variables_no_exporter_is_made_and_log_lines_carry_no_trace_ids(no_otel_env):
    out = io.StringIO()
    fresh_logging(out)
    assert tracing.configure("hookstream-test") is False
    assert tracing.tracer("t") is None and logs.span_ids is None
    structlog.get_logger("t").info("evt", n=1)
    logging.getLogger("kafka.conn").error("a library line")
    assert [sorted(set(line) & {"trace_id", "span_id"}) for line in lines(out)] == [[], []]


def test_the_off_path_never_imports_opentelemetry():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = ("import sys; from hookstream import tracing; assert tracing.configure('x') is False; "
            "import hookstream.ingest.app, hookstream.processors.runtime, hookstream.processors.dispatch, "
            "hookstream.api.client; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_endpoint_without_the_tracing_extra_warns_once_and_runs_untraced():
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    code = ("import sys; sys.modules['opentelemetry'] = None\n"  # as if hookstream[tracing] were not installed
            "from hookstream.logs import configure_logging; configure_logging()\n"
            "from hookstream import tracing; print(tracing.configure('x'), tracing.tracer('t'))\n"
            "import hookstream.ingest.app, hookstream.processors.runtime, hookstream.api.client")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False None"
    (warning,) = [json.loads(line) for line in done.stderr.splitlines() if "tracing.unavailable" in line]
    assert warning["level"] == "warning" and warning["hint"] == "pip install 'hookstream[tracing]'"


def test_log_lines_under_a_span_carry_its_ids_and_spans_reach_the_endpoint(
        no_otel_env, monkeypatch, otlp):  # noqa: F811
    for name, value in otlp.env().items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    fresh_logging(out)
    assert tracing.configure("hookstream-test")
    try:
        tracer = tracing.tracer("t")
        log = structlog.get_logger("t")
        with tracer.start_as_current_span("work") as span:
            log.info("inside")
            logging.getLogger("kafka.conn").error("a library line inside")
            ids = tracing.ids(span)
            flags = span.get_span_context().trace_flags
            assert tracing.current_traceparent() == f"00-{ids['trace_id']}-{ids['span_id']}-{flags:02x}"
        log.info("outside")
    finally:
        tracing.shutdown()  # flushes: the span is at the endpoint once this returns
    inside, library, outside = [ln for ln in lines(out) if ln["event"] != "tracing.exporting"]
    assert (inside["trace_id"], inside["span_id"]) == (ids["trace_id"], ids["span_id"])
    assert (library["trace_id"], library["span_id"]) == (ids["trace_id"], ids["span_id"])
    assert "trace_id" not in outside
    spans = wait_until(lambda: otlp.snapshot(), "the exported span")
    assert [(s.name, s.trace_id, s.service) for s in spans] == [("work", ids["trace_id"], "hookstream-test")]
    assert tracing.tracer("t") is None and logs.span_ids is None, "after shutdown: off again"
