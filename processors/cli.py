"""`hookstream process NAME`: run one processor as this process, until SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import click

from hookstream.logs import get_logger
from hookstream.settings import ConfigError, get_settings

EXIT_DRAIN_TIMEOUT = 3  # the drain did not finish within processor_shutdown_timeout_s


@click.command()
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="List registered processors and exit.")
def process(name: str | None, list_: bool) -> None:
    """Run processor NAME (a registered name or `module:Class`) in consumer group hookstream.NAME.

    Exposes /healthz and /metrics on HOOKSTREAM_PROCESSOR_HTTP_PORT. SIGTERM or SIGINT: stop
    fetching, finish the record in hand, commit, leave the group, exit within
    HOOKSTREAM_PROCESSOR_SHUTDOWN_TIMEOUT_S.
    """
    from hookstream.processors import registry

    if list_:
        _list(registry)
        return
    if not name:
        raise click.UsageError("give a processor NAME (or --list)")
    try:
        cls = registry.load(name)
    except registry.ProcessorNotFound as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(_run(cls))


def _list(registry: Any) -> None:
    found = registry.registered()
    if not found:
        click.echo("no processors registered (entry-point group hookstream.processors)")
    for entry, spec in sorted(found.items()):
        try:
            cls = registry.load(entry)
        except Exception as exc:  # noqa: BLE001 — one broken plug-in must not hide the others
            click.echo(f"{entry:14} {spec}  (cannot load: {exc})")
            continue
        types = ",".join(sorted(cls.event_types)) if cls.event_types is not None else "*"
        click.echo(f"{entry:14} topics={','.join(cls.topics)} event_types={types}  {spec}")


def _run(cls: Any) -> int:
    from hookstream import tracing
    from hookstream.processors.health import Health, serve
    from hookstream.processors.runtime import Runtime

    settings = get_settings()
    processor = cls(settings)
    _check_start(processor, settings)
    tracing.configure(f"hookstream-{processor.name}")
    log = get_logger("hookstream.processor", processor=processor.name)
    health = Health()
    server = serve(health, settings.processor_http_port, settings.processor_http_host)
    log.info("processor.http", port=server.server_address[1], paths=["/healthz", "/metrics"])
    runtime = Runtime(processor, settings, health=health, settle_heap=True)

    def on_signal(signum: int, _frame: Any) -> None:
        if runtime._stopping:
            log.warning("processor.forced_exit", signal=signal.Signals(signum).name)
            os._exit(EXIT_DRAIN_TIMEOUT)
        log.info("processor.stopping", signal=signal.Signals(signum).name,
                 timeout_s=settings.processor_shutdown_timeout_s)
        runtime.stop()
        # The bound: a handler stuck past it is abandoned; its offset is not committed, so the
        # record is redelivered to another process (at least once).
        timer = threading.Timer(settings.processor_shutdown_timeout_s, _drain_timeout, (log,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return runtime.run()
    finally:
        server.shutdown()
        tracing.shutdown()  # the last spans (and the dispatcher's) leave before the process does


def _check_start(processor: Any, settings: Any) -> None:
    """Refuse to start what would fail every event later (a missing API key dead-letters each one as 401)."""
    if processor.needs_api() and not settings.api_key.get_secret_value():
        raise ConfigError(f"processor {processor.name} calls the CryptoMate API: set HOOKSTREAM_API_KEY "
                          f"(and HOOKSTREAM_API_BASE_URL, now {settings.api_base_url})")


def _drain_timeout(log: Any) -> None:
    log.error("processor.drain_timeout")
    os._exit(EXIT_DRAIN_TIMEOUT)
