"""The one metrics module: every hookstream_* Prometheus metric is declared here."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.2, 2.5, 5, 10, 30)
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# --- ingest ---------------------------------------------------------------------------------
webhooks_received = Counter(
    "hookstream_webhooks_received_total", "Authentic webhooks received.", ["product", "event_type"]
)
webhooks_published = Counter(
    "hookstream_webhooks_published_total", "Webhooks acknowledged by Kafka.", ["product", "event_type"]
)
webhooks_failed = Counter(
    "hookstream_webhooks_failed_total",
    "Webhooks not taken (answered 503) or rejected.",
    ["product", "event_type", "reason"],
)
webhooks_rejected = Counter(
    "hookstream_webhooks_rejected_total", "Requests refused before routing.", ["reason"]
)
request_seconds = Histogram(
    "hookstream_request_duration_seconds", "Webhook request latency.", ["route", "status"], buckets=LATENCY_BUCKETS
)
publish_seconds = Histogram(
    "hookstream_publish_duration_seconds", "Time from send to broker ack.", ["topic"], buckets=LATENCY_BUCKETS
)
spool_depth = Gauge("hookstream_spool_depth", "Records waiting in the local spool.", multiprocess_mode="livesum")
spool_bytes = Gauge("hookstream_spool_bytes", "Bytes in the local spool.", multiprocess_mode="livesum")
spool_written = Counter("hookstream_spool_written_total", "Records written to the spool.")
spool_forwarded = Counter("hookstream_spool_forwarded_total", "Spooled records forwarded to Kafka.")
spool_rejected = Counter("hookstream_spool_rejected_total", "Records the full spool could not take.")
authorization_decisions = Counter(
    "hookstream_authorization_decisions_total", "Authorization answers.", ["response_code", "reason"]
)
authorization_seconds = Histogram(
    "hookstream_authorization_duration_seconds", "Policy decision latency.", buckets=LATENCY_BUCKETS
)
authorization_fallbacks = Counter(
    "hookstream_authorization_fallbacks_total", "Fallback answers.", ["cause"]
)

# --- processors ----------------------------------------------------------------------------
processed = Counter(
    "hookstream_processed_total", "Records processed, by outcome.", ["processor", "outcome"]
)
processing_seconds = Histogram(
    "hookstream_processing_duration_seconds", "Handler time per record.", ["processor"], buckets=LATENCY_BUCKETS
)
event_age_seconds = Histogram(
    "hookstream_event_age_seconds", "Receipt to processing (end to end).", ["processor"], buckets=AGE_BUCKETS
)
consumer_lag = Gauge(
    "hookstream_consumer_lag", "Records behind the log end.", ["processor", "topic", "partition"]
)
dead_lettered = Counter(
    "hookstream_dead_lettered_total", "Records sent to a dead-letter topic.", ["processor", "error_type"]
)
retries = Counter("hookstream_retries_total", "Transient failures retried.", ["processor", "error_type"])
treasury_alerts = Counter(
    "hookstream_treasury_alerts_total", "Treasury events needing attention.", ["event_type", "status"]
)
ledger_unmatched = Counter(
    "hookstream_ledger_unmatched_total", "Card events without a matching hold.", ["event_type"]
)

# --- CryptoMate API --------------------------------------------------------------------------
api_calls = Counter("hookstream_api_calls_total", "CryptoMate API calls.", ["endpoint", "status"])
api_call_seconds = Histogram(
    "hookstream_api_call_duration_seconds", "CryptoMate API call latency.", ["endpoint"], buckets=LATENCY_BUCKETS
)

outbox_commands = Counter(
    "hookstream_outbox_commands_total", "API commands settled by the outbox dispatcher.",
    ["processor", "command", "outcome"],  # sent | retried | expired | dead_lettered
)

# --- `hookstream lag --serve`: measured from outside the processors (own registry) ------------
LAG_REGISTRY = CollectorRegistry(auto_describe=True)
group_lag = Gauge(
    "hookstream_consumer_group_lag", "Log end minus the group's committed offset (outside view).",
    ["group", "topic", "partition"], registry=LAG_REGISTRY,
)
dlq_records = Gauge(
    "hookstream_dlq_records", "Records held in a processor's dead-letter topic.", ["processor"],
    registry=LAG_REGISTRY,
)
kafka_up = Gauge(
    "hookstream_kafka_up", "1 when the last lag measurement reached Kafka, else 0.", registry=LAG_REGISTRY
)

# Label values known up front: their series exist at 0 from start, so `increase()` sees the first event.
KNOWN_LABELS: dict[Counter, tuple[tuple[str, ...], ...]] = {
    webhooks_rejected: (("unauthorized",), ("stale_timestamp",), ("too_large",), ("disconnected",)),
    authorization_fallbacks: (("timeout",), ("error",), ("late_hold_stuck",)),
}


def precreate() -> None:
    """Create every series with known label values at 0 (the receiver calls this once at start)."""
    for counter, label_sets in KNOWN_LABELS.items():
        for labels in label_sets:
            counter.labels(*labels)


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition body and its content type (aggregated over workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
