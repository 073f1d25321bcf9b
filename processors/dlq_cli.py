"""`hookstream dlq`: list, show and replay a processor's dead letters."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from hookstream.settings import get_settings

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> int:
    """Epoch milliseconds for `--since`: ISO 8601 (naive = UTC) or a relative age like 30m, 2h, 1d."""
    now = now or datetime.now(UTC)
    found = _RELATIVE.match(value.strip())
    if found:
        moment = now - timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: use ISO 8601 (2026-01-31T12:00Z) or an age (30m, 2h)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _ms(value: str | int | None) -> str:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="seconds")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"


def _redacted_body(value: bytes) -> str:
    """The body as indented JSON with secret fields masked (3DS codes, keys); raw text if not JSON."""
    from hookstream.logs import redact

    try:
        body = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return value.decode("utf-8", "replace")
    return json.dumps(redact(None, "", {"body": body})["body"], indent=2, sort_keys=True)


@click.group()
def dlq() -> None:
    """Inspect and replay a processor's dead-letter topic hookstream.NAME.dlq."""


def _open(name: str) -> tuple[Any, Any, list[Any], dict[Any, int], dict[Any, int]]:
    from kafka import TopicPartition

    from hookstream.kafka import TOOL_BOOTSTRAP_TIMEOUT_MS, make_consumer
    from hookstream.processors.dlq import dlq_name

    settings = get_settings()
    topic = settings.topic(dlq_name(name))
    consumer = make_consumer(settings, group_id=None, role="dlq-cli",  # type: ignore[arg-type]
                             bootstrap_timeout_ms=TOOL_BOOTSTRAP_TIMEOUT_MS)
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        consumer.close()
        raise click.ClickException(f"no dead-letter topic {topic}")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    return settings, consumer, tps, consumer.beginning_offsets(tps), consumer.end_offsets(tps)


@dlq.command("list")
@click.argument("name")
@click.option("--limit", type=int, default=100, show_default=True, help="Show at most this many (newest).")
def list_(name: str, limit: int) -> None:
    """List the dead letters of processor NAME: offset, origin, error, attempts, replays, when."""
    from hookstream.processors import dlq as dead
    from hookstream.schemas import headers as h

    _settings, consumer, tps, begin, end = _open(name)
    try:
        start = {tp: max(begin[tp], end[tp] - limit) for tp in tps}
        letters = list(dead.read(consumer, start, end))
    finally:
        consumer.close()
    total = sum(end[tp] - begin[tp] for tp in tps)
    click.echo(f"{total} dead letter(s) in {tps[0].topic}" + (f", newest {len(letters)} shown" if total > len(letters) else ""))
    click.echo(f"{'offset':>8}  {'dead-lettered':25} {'origin':45} {'attempts':>8} {'replays':>7}  error")
    for d in sorted(letters, key=lambda d: (d.partition, d.offset)):
        origin = d.origin
        where = f"{origin[0]}:{origin[1]}@{origin[2]}" if origin else "-"
        offset = f"{d.partition}:{d.offset}" if len(tps) > 1 else str(d.offset)
        click.echo(f"{offset:>8}  {_ms(d.headers.get(h.DEAD_LETTERED_AT)):25} {where:45} "
                   f"{d.headers.get(h.ATTEMPTS, '-'):>8} {d.replays:>7}  "
                   f"{d.headers.get(h.ERROR_TYPE, '-')}: {d.headers.get(h.ERROR_MESSAGE, '')}")


@dlq.command("show")
@click.argument("name")
@click.option("--offset", type=int, required=True, help="The dead letter's offset (from `dlq list`).")
@click.option("--partition", type=int, default=0, show_default=True,
              help="Its partition (dead-letter topics made by hookstream have one).")
@click.option("--raw", is_flag=True, help="Print the body byte for byte, secrets included.")
def show(name: str, offset: int, partition: int, raw: bool) -> None:
    """Show one dead letter: every header, then the body (secret fields masked unless --raw)."""
    from kafka import TopicPartition

    from hookstream.processors import dlq as dead

    _settings, consumer, tps, begin, end = _open(name)
    try:
        tp = TopicPartition(tps[0].topic, partition)
        if tp not in end or not begin[tp] <= offset < end[tp]:
            raise click.ClickException(f"no dead letter at {partition}:{offset} "
                                       f"(partition {partition} holds {begin.get(tp, 0)}..{end.get(tp, 0) - 1})")
        letter = next(dead.read(consumer, {tp: offset}, {tp: offset + 1}))
    finally:
        consumer.close()
    click.echo(f"dead letter {partition}:{offset} at {_ms(letter.timestamp_ms)}")
    click.echo(f"key: {letter.key.decode('utf-8', 'replace') if letter.key else '-'}")
    for k, v in letter.raw_headers:
        click.echo(f"{k}: {v.decode('utf-8', 'replace') if v is not None else ''}")
    click.echo("")
    if raw:
        sys.stdout.buffer.write(letter.value + b"\n")
    else:
        click.echo(_redacted_body(letter.value))


@dlq.command("replay")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed or refused; publish nothing.")
@click.option("--since", "since", default=None,
              help="Read dead letters from this time (ISO 8601 or an age: 30m, 2h) instead of where the "
                   "last replay stopped.")
@click.option("--limit", type=int, default=None, help="Replay at most this many.")
@click.option("--rate", type=float, default=None, help="At most this many per second.")
def replay(name: str, dry_run: bool, since: str | None, limit: int | None, rate: float | None) -> None:
    """Re-publish dead letters of NAME to their origin topic and partition.

    Each replayed record carries hs-replay-count; a dead letter already replayed
    HOOKSTREAM_DLQ_MAX_REPLAYS times is refused (it keeps failing: look at it first). Replay is
    safe to repeat: the processor's inbox turns a second delivery into a `duplicate`.
    """
    from hookstream.processors.replay import ReplayReport
    from hookstream.processors.replay import replay as run_replay

    settings = get_settings()
    since_ms = parse_since(since) if since else None
    last = [0.0]

    def progress(report: ReplayReport) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or report.seen == report.total:
            last[0] = now
            click.echo(f"… {report.seen}/{report.total} read, {report.replayed} "
                       f"{'to replay' if dry_run else 'replayed'}, {len(report.refused)} refused", err=True)

    try:
        report = run_replay(settings, name, since_ms=since_ms, limit=limit, rate=rate, dry_run=dry_run,
                            progress=progress)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    for partition, offset, why in report.refused:
        click.echo(f"refused {partition}:{offset}: {why}")
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {report.replayed}, refused {len(report.refused)}, of {report.seen} read "
               f"({report.total} in range)")
