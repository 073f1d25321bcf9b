"""Dead-letter replay: re-publish dead letters to their origin partition, with a replay-loop guard.

Replay is safe to repeat because effects are deduplicated by the processor's inbox. A consumer group
`hookstream.<processor>.dlq-replay` remembers how far replay got, so a plain `replay` only takes dead
letters it has not replayed yet; `--since` reads again from a point in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from hookstream.kafka import TOOL_BOOTSTRAP_TIMEOUT_MS, make_consumer, make_producer
from hookstream.processors import dlq
from hookstream.settings import Settings


@dataclass
class ReplayReport:
    total: int = 0  # dead letters in range
    seen: int = 0
    replayed: int = 0
    refused: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, offset, why)
    dry_run: bool = False


Progress = Callable[[ReplayReport], None]


def replay_group(processor: str, settings: Settings) -> str:
    return settings.topic(f"hookstream.{processor}.dlq-replay")


def replay(
    settings: Settings, processor: str, *, since_ms: int | None = None, limit: int | None = None,
    rate: float | None = None, dry_run: bool = False, progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> ReplayReport:
    """Replay the dead letters of `processor`; see the module docstring for which ones."""
    topic = settings.topic(dlq.dlq_name(processor))
    consumer = make_consumer(settings, replay_group(processor, settings), role="dlq-replay",
                             bootstrap_timeout_ms=TOOL_BOOTSTRAP_TIMEOUT_MS)
    producer = None if dry_run else make_producer(settings, role="dlq-replay")
    report = ReplayReport(dry_run=dry_run)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LookupError(f"no dead-letter topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        end = consumer.end_offsets(tps)
        if since_ms is not None:
            found = consumer.offsets_for_times({tp: since_ms for tp in tps})
            start = {tp: (found[tp].offset if found.get(tp) else end[tp]) for tp in tps}
        else:
            begin = consumer.beginning_offsets(tps)
            start = {tp: max(consumer.committed(tp) or 0, begin[tp]) for tp in tps}
        report.total = sum(max(0, end[tp] - start[tp]) for tp in tps)
        reached = dict(start)
        next_send = clock()
        sent = []
        for letter in dlq.read(consumer, start, end):
            if limit is not None and report.replayed >= limit:
                break
            report.seen += 1
            tp = TopicPartition(topic, letter.partition)
            reached[tp] = letter.offset + 1
            origin = letter.origin
            if origin is None:
                report.refused.append((letter.partition, letter.offset, "no origin headers"))
            elif dlq.COMMAND in letter.headers:
                # A refused API command, not an event: replaying its origin would be a duplicate.
                report.refused.append((letter.partition, letter.offset, "an API command, not an event"))
            elif letter.replays >= settings.dlq_max_replays:
                # Loop guard: it failed again after each of its replays; a person has to look.
                report.refused.append(
                    (letter.partition, letter.offset, f"replayed {letter.replays} times already"))
            else:
                if producer is not None:
                    if rate:
                        sleep(max(0.0, next_send - clock()))
                        next_send = max(next_send, clock()) + 1.0 / rate
                    origin_topic, origin_partition, _ = origin
                    sent.append(producer.send(origin_topic, value=letter.value, key=letter.key,
                                  partition=origin_partition,
                                  headers=dlq.replay_headers(letter.raw_headers, letter.replays + 1)))
                report.replayed += 1
            if progress:
                progress(report)
        if producer is not None:
            producer.flush(timeout=dlq.SEND_TIMEOUT_S)
            for future in sent:
                future.get(timeout=dlq.SEND_TIMEOUT_S)  # raises if the broker refused one
            # Only after every replayed record is acked: move the replay marker forward.
            committed = {tp: consumer.committed(tp) or 0 for tp in tps}
            moved = {tp: OffsetAndMetadata(off, "", -1) for tp, off in reached.items() if off > committed[tp]}
            if moved:
                consumer.commit(moved)
        return report
    finally:
        if producer is not None:
            producer.close(timeout=dlq.SEND_TIMEOUT_S)
        consumer.close(autocommit=False)
