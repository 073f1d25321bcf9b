"""`hookstream ingest`: run the receiver under uvicorn."""

from __future__ import annotations

import os
import tempfile

import click

from hookstream.logs import UVICORN_LOG_CONFIG, get_logger
from hookstream.settings import get_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 in a container).")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes. They share the spool directory; metrics are aggregated.")
def ingest(host: str, port: int, workers: int) -> None:
    """Receive CryptoMate webhooks on POST /webhooks/cryptomate and make them durable in Kafka.

    Answers 200 only once the broker has the record (acks=all), 503 with Retry-After when it cannot,
    and answers card authorizations itself within HOOKSTREAM_AUTHORIZATION_BUDGET_MS.
    Also serves /healthz, /readyz and /metrics. Configuration: HOOKSTREAM_* variables.
    """
    import uvicorn

    settings = get_settings()
    if not settings.webhook_keys:
        raise click.UsageError("set HOOKSTREAM_WEBHOOK_KEYS (the key(s) CryptoMate sends in X-Webhook-Key)")
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hookstream-metrics-")
    from hookstream import metrics  # after PROMETHEUS_MULTIPROC_DIR: the zeros land where workers' counts do

    metrics.precreate()
    get_logger("hookstream.ingest").info("ingest.starting", url=f"http://{host}:{port}/webhooks/cryptomate",
                                         workers=workers)
    uvicorn.run(
        "hookstream.ingest.app:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        log_config=UVICORN_LOG_CONFIG,  # uvicorn's lines through hookstream's JSON renderer and redaction
        lifespan="on",
        timeout_graceful_shutdown=15,
    )
