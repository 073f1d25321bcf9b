"""`hookstream lag`: consumer lag read from committed offsets, from outside the processors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import click

from hookstream.settings import Settings, get_settings

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has not committed on this partition yet
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


@dataclass(frozen=True, slots=True)
class LagReport:
    partitions: list[PartitionLag]
    dlq_records: dict[str, int]  # processor → records in hookstream.NAME.dlq


def measure(settings: Settings, admin: Any, consumer: Any) -> LagReport:
    """Every hookstream group's lag per partition, and every dead-letter topic's size.

    Groups are `<prefix>hookstream.NAME` (processors/runtime.group_id); lag is the log end minus the
    committed offset, so it keeps growing while a processor is down.
    """
    from kafka import TopicPartition

    prefix = settings.topic("hookstream.")
    groups = sorted(g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix))
    fetched = admin.list_group_offsets({group: None for group in groups}) if groups else {}
    committed: dict[str, dict[Any, int]] = {
        group: {tp: meta.offset for tp, meta in fetched.get(group, {}).items() if meta.offset >= 0}
        for group in groups
    }
    wanted = {tp for offsets in committed.values() for tp in offsets}
    dlq_topics = sorted(t for t in admin.list_topics() if t.startswith(prefix) and t.endswith(DLQ_SUFFIX))
    dlq_parts = [TopicPartition(t, p) for t in dlq_topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    for topic in {tp.topic for tp in wanted}:  # partitions nobody has committed on yet still lag
        wanted |= {TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()}
    ends = consumer.end_offsets(sorted(wanted | set(dlq_parts))) if wanted or dlq_parts else {}
    begins = consumer.beginning_offsets(dlq_parts) if dlq_parts else {}
    partitions = [
        PartitionLag(group, tp.topic, tp.partition, committed[group].get(tp), ends[tp])
        for group in groups
        for tp in sorted(wanted)
        if tp.topic in {t.topic for t in committed[group]}
    ]
    dlq: dict[str, int] = {}
    for tp in dlq_parts:
        name = tp.topic[len(prefix):-len(DLQ_SUFFIX)]
        dlq[name] = dlq.get(name, 0) + ends[tp] - begins[tp]
    return LagReport(partitions, dlq)


def _clients(settings: Settings) -> tuple[Any, Any]:
    from hookstream.kafka import TOOL_BOOTSTRAP_TIMEOUT_MS, make_admin, make_consumer

    admin = make_admin(settings)
    try:
        consumer = make_consumer(settings, group_id=None, role="lag",  # type: ignore[arg-type]
                                 bootstrap_timeout_ms=TOOL_BOOTSTRAP_TIMEOUT_MS)
    except Exception:
        admin.close()
        raise
    return admin, consumer


def publish(report: LagReport) -> None:
    """Set the exporter's gauges to this report; series that disappeared are dropped."""
    from hookstream import metrics

    metrics.group_lag.clear()
    for p in report.partitions:
        metrics.group_lag.labels(p.group, p.topic, str(p.partition)).set(p.lag)
    metrics.dlq_records.clear()
    for name, count in report.dlq_records.items():
        metrics.dlq_records.labels(name).set(count)


@click.command()
@click.option("--serve", "port", type=int, default=None, metavar="PORT",
              help="Run as a Prometheus exporter: serve /metrics on PORT, re-measuring every --interval.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for --serve.")
@click.option("--interval", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="Seconds between measurements with --serve.")
def lag(port: int | None, host: str, interval: float) -> None:
    """Print every processor group's lag per partition and each dead-letter topic's size.

    Lag comes from the offsets the groups committed, so it is visible (and growing) while
    processors are down. With --serve PORT: hookstream_consumer_group_lag, hookstream_dlq_records
    and hookstream_kafka_up on http://HOST:PORT/metrics.
    """
    settings = get_settings()
    if port is None:
        admin, consumer = _clients(settings)
        try:
            report = measure(settings, admin, consumer)
        finally:
            consumer.close()
            admin.close()
        _print(report)
        return
    _serve(settings, host, port, interval)


def _print(report: LagReport) -> None:
    click.echo(f"{'group':40} {'topic':40} {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
    for p in report.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        click.echo(f"{p.group:40} {p.topic:40} {p.partition:>9} {committed:>10} {p.end:>10} {p.lag:>8}")
    if not report.partitions:
        click.echo("no hookstream consumer group has committed offsets yet")
    for name, count in sorted(report.dlq_records.items()):
        click.echo(f"dead letters: {name} {count}")


def _serve(settings: Settings, host: str, port: int, interval: float) -> None:
    from prometheus_client import start_http_server

    from hookstream import metrics
    from hookstream.logs import get_logger

    log = get_logger("hookstream.lag")
    server, _thread = start_http_server(port, host, registry=metrics.LAG_REGISTRY)
    click.echo(f"hookstream lag exporter on http://{host}:{server.server_address[1]}/metrics", err=True)
    stop = threading.Event()
    clients: tuple[Any, Any] | None = None
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                clients = clients or _clients(settings)
                publish(measure(settings, *clients))
                metrics.kafka_up.set(1)
            except Exception as exc:  # noqa: BLE001 — the exporter outlives outages and says so in kafka_up
                metrics.kafka_up.set(0)
                log.warning("lag.unmeasured", error=f"{type(exc).__name__}: {exc}")
                if clients:
                    for client in reversed(clients):
                        client.close()
                clients = None
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        if clients:
            for client in reversed(clients):
                client.close()
