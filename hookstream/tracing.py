"""The one tracing setup: OpenTelemetry spans over OTLP/HTTP when the standard OTEL_* variables ask for it.

Off unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and
`OTEL_SDK_DISABLED` / `OTEL_TRACES_EXPORTER=none` do not say otherwise). Off means `tracer()` is None:
callers skip every span, header and attribute, and OpenTelemetry is never imported, so the packages
(the `tracing` extra) are needed only by a process that exports. Everything else the SDK reads itself:
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_*_HEADERS,
OTEL_BSP_* (batching). Context travels as W3C `traceparent`/`tracestate`: HTTP request headers in and
out, Kafka record headers between receiver and processors, an outbox column from a processor's
transaction to the dispatcher's API call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hookstream import logs
from hookstream.logs import get_logger

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

log = get_logger(__name__)

_provider: Any = None  # the SDK TracerProvider while exporting, else None
_api: Any = None  # opentelemetry.trace, imported only when exporting
_propagator: Any = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for exported traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(v, "").strip() for v in ENDPOINT_VARIABLES)


def configure(service: str) -> bool:
    """Export this process's spans over OTLP/HTTP if the environment asks for it; True when it does.

    `service` is the default service.name; OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) wins.
    """
    global _provider, _api, _propagator
    if _provider is not None:
        return True
    if not wanted():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        log.warning("tracing.unavailable", error=str(exc), hint="pip install 'hookstream[tracing]'")
        return False
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: service})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    # The exporter reads its endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*;
    # the batch processor sends from its own thread, never from the event loop or the poll loop.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider, _api, _propagator = provider, trace, TraceContextTextMapPropagator()
    logs.span_ids = current_ids
    log.info("tracing.exporting", service=resource.attributes.get(SERVICE_NAME),
             endpoint=next(os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v, "").strip()))
    return True


def shutdown() -> None:
    """Send the spans still batched and stop exporting (bounded by OTEL_BSP_EXPORT_TIMEOUT)."""
    global _provider, _api, _propagator
    provider, _provider = _provider, None
    if provider is not None:
        logs.span_ids = None
        _api = _propagator = None
        provider.shutdown()


def tracer(name: str) -> Any:
    """An OpenTelemetry tracer while exporting, else None (the caller then does no tracing work)."""
    return _provider.get_tracer(name) if _provider is not None else None


# --- context in and out -----------------------------------------------------------------------------
def extract(carrier: Mapping[str, str]) -> Any:
    """The remote parent in `traceparent`/`tracestate` (HTTP or record headers); None starts a new trace."""
    if TRACEPARENT not in carrier:
        return None
    return _propagator.extract(carrier)


def traceparent(span: Any) -> str:
    """W3C `traceparent` of a span: formatted directly, one f-string."""
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"


def record_headers(span: Any) -> list[tuple[str, bytes]]:
    """The Kafka record headers carrying `span` as parent."""
    out = [(TRACEPARENT, traceparent(span).encode())]
    state = span.get_span_context().trace_state
    if state:
        out.append((TRACESTATE, state.to_header().encode()))
    return out


def current_span() -> Any:
    return _api.get_current_span() if _api is not None else None


def current_traceparent() -> str | None:
    """`traceparent` of the span current in this thread or task (None when not exporting or none)."""
    span = current_span()
    return traceparent(span) if span is not None and span.get_span_context().is_valid else None


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines; None without one."""
    span = current_span()
    if span is None:
        return None
    c = span.get_span_context()
    return (f"{c.trace_id:032x}", f"{c.span_id:016x}") if c.is_valid else None


def ids(span: Any) -> dict[str, str]:
    """`trace_id`/`span_id` of `span`, to bind into a logger whose lines outlive the span's being current."""
    c = span.get_span_context()
    return {"trace_id": f"{c.trace_id:032x}", "span_id": f"{c.span_id:016x}"}


def use(span: Any) -> Any:
    """Make `span` current for a `with` block without ending it on exit."""
    return _api.use_span(span, end_on_exit=False)


def kind(name: str) -> Any:
    """SpanKind.SERVER / CLIENT / PRODUCER / CONSUMER / INTERNAL by name."""
    return getattr(_api.SpanKind, name)


def fail(span: Any, description: str) -> None:
    """Mark `span` as failed (status ERROR) with a description that holds no secret."""
    span.set_status(_api.Status(_api.StatusCode.ERROR, description))
