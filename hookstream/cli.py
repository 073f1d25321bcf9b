"""The `hookstream` command line: one entry point, each verb loaded only when it is used."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from hookstream.logs import configure_logging
from hookstream.settings import ConfigError, get_settings

EXIT_CONFIG = 2  # a HOOKSTREAM_* value or a start-up requirement is wrong: fix the environment
EXIT_UNAVAILABLE = 1  # a dependency (Kafka, the ledger database) cannot be reached


class OperatorError(click.ClickException):
    """A failure said as one line (`Error: …`) with a chosen exit status, never a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Verbs that run once and exit: their failure is their one `Error:` line, so kafka-python's own
# reconnect errors (one per attempt while the broker is down) are not printed for them.
ONE_SHOT = frozenset({"topics", "dlq", "lag", "schemas", "db", "ledger"})
HELP_ASKED = "hookstream.help_asked"  # ctx.meta key: some (sub)command's --help is on the line

# verb → "module:attribute" of a click command. Loaded lazily so `hookstream ingest` never imports
# the sandbox or SQLAlchemy, and a processor process never imports Starlette.
COMMANDS: dict[str, str] = {
    "ingest": "hookstream.ingest.cli:ingest",
    "kafka": "hookstream.cli:kafka",
    "topics": "hookstream.cli:topics",
    "schemas": "hookstream.cli:schemas",
    "process": "hookstream.processors.cli:process",
    "dlq": "hookstream.processors.dlq_cli:dlq",
    "db": "hookstream.ledger.cli:db",
    "ledger": "hookstream.ledger.cli:ledger",
    "sandbox": "hookstream.sandbox.cli:sandbox",
    "dev": "hookstream.dev:dev",
    "lag": "hookstream.lag:lag",
    "deploy": "hookstream.cli:deploy",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that part of hookstream is not installed in this build
            raise
        return getattr(module, attr)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[HELP_ASKED] = any(arg in ("-h", "--help") for arg in args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        """Every verb's expected failures become one line: bad configuration exits 2, an unreachable
        dependency exits 1. Anything else is a bug and keeps its traceback."""
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise OperatorError(str(exc), EXIT_CONFIG) from None
        except Exception as exc:
            message = _dependency_failure(exc)
            if message is None:
                raise
            raise OperatorError(message) from None


def _dependency_failure(exc: Exception) -> str | None:
    """The one-line reason when `exc` says Kafka or the database is unreachable, else None."""
    kafka_errors = sys.modules.get("kafka.errors")
    if kafka_errors is not None and isinstance(exc, kafka_errors.KafkaError):
        from hookstream.settings import get_settings as settings

        return f"Kafka at {settings().kafka_bootstrap} is unreachable or failing: {exc or type(exc).__name__}"
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.OperationalError):
        return f"ledger database unavailable: {str(exc.orig).strip().splitlines()[0]}"
    return None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hookstream")
def main() -> None:
    """hookstream: CryptoMate webhooks made durable in Kafka and processed exactly once in effect.

    Configuration comes from HOOKSTREAM_* environment variables (see the README).
    """
    ctx = click.get_current_context()
    if ctx.meta.get(HELP_ASKED):  # help works whatever the environment holds
        configure_logging()
        return
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if ctx.invoked_subcommand in ONE_SHOT:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


# --- kafka ---------------------------------------------------------------------------------------
@click.group()
def kafka() -> None:
    """Run a local Apache Kafka broker (KRaft, single node, loopback)."""


@kafka.command("run")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Keep the broker's data here (reused across runs). Default: a temporary directory.")
@click.option("--port", type=int, default=None, help="PLAINTEXT port on 127.0.0.1. Default: a free port.")
@click.option("--nodes", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Brokers: 3 starts a KRaft cluster (static quorum, replication 3, min.insync.replicas 2).")
@click.option("--heap", default=None, help="JVM maximum heap per node. Default: 512m, 384m in a cluster.")
def kafka_run(data_dir: Path | None, port: int | None, nodes: int, heap: str | None) -> None:
    """Fetch the Kafka jars with mvn (once), format storage, run the broker(s) in the foreground.

    Prints the bootstrap address once the brokers answer client calls. Ctrl-C or SIGTERM stops them.
    """
    from hookstream.broker import BrokerError, LocalBroker, LocalCluster

    if nodes > 1 and port is not None:
        raise click.UsageError("--port applies to one node; a cluster picks free ports (kept with --data-dir)")
    runner: LocalBroker | LocalCluster = (
        LocalCluster(nodes=nodes, data_dir=data_dir, heap=heap or "384m") if nodes > 1
        else LocalBroker(data_dir=data_dir, port=port, heap=heap or "512m")
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        bootstrap = runner.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    members = runner.brokers if isinstance(runner, LocalCluster) else [runner]
    pids = ",".join(str(b.pid) for b in members)
    click.echo(f"kafka ready: bootstrap={bootstrap} pid={pids} data_dir={runner.data_dir}", err=False)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            for broker in members:
                if broker._proc is None or broker._proc.poll() is not None:
                    raise click.ClickException(f"broker exited; see {broker.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop() if data_dir else runner.remove()
        click.echo("kafka stopped")


@kafka.command("check")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Give up after this many seconds.")
def kafka_check(timeout: float) -> None:
    """Connect with HOOKSTREAM_KAFKA_* (TLS/SASL included) and describe the cluster; one line either way."""
    from hookstream.kafka import KafkaUnavailable, check_connection

    settings = get_settings()
    try:
        brokers = check_connection(settings, timeout)
    except KafkaUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"kafka ok: {brokers} broker(s) at {settings.kafka_bootstrap} "
               f"({settings.kafka_security_protocol})")


@kafka.command("jars")
def kafka_jars() -> None:
    """Resolve the broker's jars with mvn into the cache (what `kafka run` does first), print the path."""
    from hookstream.broker import BrokerError, resolve_jars

    try:
        click.echo(str(resolve_jars()))
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


# --- topics --------------------------------------------------------------------------------------
@click.group()
def topics() -> None:
    """Manage hookstream's Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=int, default=None, help="Default: HOOKSTREAM_TOPIC_PARTITIONS (6).")
@click.option("--replication-factor", type=int, default=None,
              help="Default: HOOKSTREAM_TOPIC_REPLICATION_FACTOR (1).")
@click.option("--min-insync-replicas", type=int, default=None,
              help="min.insync.replicas of new topics. Default: HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS "
                   "(unset: the broker's default).")
@click.option("--processor", "processors", multiple=True,
              help="Also create this processor's dead-letter topic (repeatable).")
@click.option("--all-processors", is_flag=True,
              help="Also create the dead-letter topic of every registered processor.")
def topics_create(partitions: int | None, replication_factor: int | None, min_insync_replicas: int | None,
                  processors: tuple[str, ...], all_processors: bool) -> None:
    """Create every routed topic (plus unrouted, quarantine, dead-letter topics). Idempotent."""
    from kafka.errors import KafkaError

    from hookstream.kafka import ensure_topics
    from hookstream.processors.registry import registered
    from hookstream.schemas.routing import DLQ_PARTITIONS, TOPICS, dlq_topic

    if all_processors:
        processors = tuple(sorted({*processors, *registered()}))

    try:
        result = ensure_topics(get_settings(), list(TOPICS), partitions, replication_factor, min_insync_replicas)
        if processors:
            result |= ensure_topics(get_settings(), [dlq_topic(p) for p in processors], DLQ_PARTITIONS,
                                    replication_factor, min_insync_replicas)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaError as exc:
        raise click.ClickException(f"Kafka at {get_settings().kafka_bootstrap}: {exc}") from None
    for topic, state in sorted(result.items()):
        click.echo(f"{state:8} {topic}")


# --- deploy --------------------------------------------------------------------------------------
@click.group()
def deploy() -> None:
    """The deployment files: Kubernetes, compose and Prometheus, derived from the processor registry."""


@deploy.command("render")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("."),
              show_default=True, help="The checkout whose deploy/ folder to write.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming the files that are out of date.")
def deploy_render(root: Path, check: bool) -> None:
    """Write one Deployment, ScaledObject, scrape target and compose service per registered processor."""
    from hookstream import manifests
    from hookstream.processors.registry import load_all

    processors = load_all()
    try:
        if check:
            stale = manifests.stale(root, processors)
            if stale:
                raise click.ClickException(f"out of date with the processor registry: {', '.join(map(str, stale))} "
                                           "(run `hookstream deploy render`)")
            click.echo(f"up to date: {len(processors)} processors ({', '.join(processors)})")
            return
        rendered = manifests.render(root, processors)
    except manifests.RenderError as exc:
        raise click.ClickException(str(exc)) from None
    for path, text in rendered.items():
        (root / path).write_text(text)
        click.echo(str(path))


# --- schemas -------------------------------------------------------------------------------------
@click.group()
def schemas() -> None:
    """The event contracts."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(directory: Path) -> None:
    """Write JSON Schemas of the envelope and every routed event's data into DIRECTORY."""
    from hookstream.schemas.export import export_schemas

    for path in export_schemas(directory):
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    main()
