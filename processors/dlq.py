"""Dead letters: the record a processor gives up on, written whole to `hookstream.<processor>.dlq`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hookstream.kafka import ensure_topics
from hookstream.schemas.routing import DLQ_PARTITIONS, dlq_topic
from hookstream.processors.errors import Failure
from hookstream.schemas import headers as h
from hookstream.settings import Settings
from hookstream.tracing import TRACEPARENT

# Headers the dead-letter and replay steps own; everything else on a record is carried unchanged.
DLQ_HEADERS = frozenset({
    h.ORIGIN_TOPIC, h.ORIGIN_PARTITION, h.ORIGIN_OFFSET, h.ERROR_TYPE, h.ERROR_MESSAGE, h.ATTEMPTS,
    h.PROCESSOR, h.DEAD_LETTERED_AT,
})
SEND_TIMEOUT_S = 30.0
COMMAND = "hs-command"  # on a dead-lettered API command: its kind (the value is the command, not an event)
IDEMPOTENCY_KEY = "hs-idempotency-key"


dlq_name = dlq_topic  # the logical dead-letter topic of a processor (pass it through `settings.topic()`)


def ensure_dlq(settings: Settings, processor: str) -> str:
    """Create the dead-letter topic if missing; returns its physical name.

    One partition: dead letters are few, and one partition gives them a total order, so an
    offset alone names a dead letter (`hookstream dlq show NAME --offset N`).
    """
    ensure_topics(settings, [dlq_name(processor)], partitions=DLQ_PARTITIONS)
    return settings.topic(dlq_name(processor))


def dead_letter_headers(
    original: list[tuple[str, bytes]] | None, *, topic: str, partition: int, offset: int,
    failure: Failure, attempts: int, processor: str, now_ms: int,
) -> list[tuple[str, bytes]]:
    """The original headers (minus any older dead-letter headers) plus where and why it failed."""
    kept = [(k, v) for k, v in (original or []) if k not in DLQ_HEADERS]
    return kept + [
        (h.ORIGIN_TOPIC, topic.encode()),
        (h.ORIGIN_PARTITION, str(partition).encode()),
        (h.ORIGIN_OFFSET, str(offset).encode()),
        (h.ERROR_TYPE, failure.error_type.encode()),
        (h.ERROR_MESSAGE, failure.message.encode("utf-8", "replace")),
        (h.ATTEMPTS, str(attempts).encode()),
        (h.PROCESSOR, processor.encode()),
        (h.DEAD_LETTERED_AT, str(now_ms).encode()),
    ]


def replay_headers(dead: list[tuple[str, bytes]] | None, replay_count: int) -> list[tuple[str, bytes]]:
    """Headers of a replayed record: the original ones, with the replay count set."""
    kept = [(k, v) for k, v in (dead or []) if k not in DLQ_HEADERS and k != h.REPLAY_COUNT]
    return kept + [(h.REPLAY_COUNT, str(replay_count).encode())]


def replay_count(headers: dict[str, str]) -> int:
    try:
        return max(0, int(headers.get(h.REPLAY_COUNT, "0")))
    except ValueError:
        return 0


class DeadLetters:
    """Writes dead letters and waits for the broker's ack: the origin offset is committed after."""

    def __init__(self, producer: KafkaProducer, topic: str, processor: str) -> None:
        self.producer, self.topic, self.processor = producer, topic, processor

    def send(self, record: Any, failure: Failure, attempts: int) -> int:
        """Publish `record` (a kafka ConsumerRecord) as a dead letter; returns the dead letter's offset."""
        headers = dead_letter_headers(
            record.headers, topic=record.topic, partition=record.partition, offset=record.offset,
            failure=failure, attempts=attempts, processor=self.processor, now_ms=int(time.time() * 1000),
        )
        future = self.producer.send(self.topic, value=record.value, key=record.key, headers=headers)
        return future.get(timeout=SEND_TIMEOUT_S).offset

    def send_command(self, command: Any, failure: Failure) -> int:
        """Publish an outbox command the platform refused for good, with the event it came from as origin."""
        value, headers = command_letter(command, failure, self.processor, int(time.time() * 1000))
        key = command.order_key.encode() if command.order_key else None
        future = self.producer.send(self.topic, value=value, key=key, headers=headers)
        return future.get(timeout=SEND_TIMEOUT_S).offset


def command_letter(command: Any, failure: Failure, processor: str,
                   now_ms: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead letter of a refused outbox command: value and headers.

    The value is the command (kind, key, arguments minus secrets), for an operator to act on; it is not an
    event, so `dlq replay` does not apply to it. The headers name its origin event (topic, partition, offset,
    dedup key) and carry the trace the command was decided in, so the letter joins that trace.
    """
    from hookstream.domain.effects import SECRET_ARGS

    args = {k: ("<redacted>" if k in SECRET_ARGS else v) for k, v in command.args.items()}
    value = json.dumps({"command": command.kind, "idempotency_key": command.idempotency_key,
                        "args": args}).encode()
    origin = [(h.DEDUP_KEY, command.dedup_key.encode())] if command.dedup_key else []
    if command.traceparent:
        origin.append((TRACEPARENT, command.traceparent.encode()))
    headers = dead_letter_headers(
        origin, topic=command.origin_topic or "", partition=command.origin_partition or 0,
        offset=command.origin_offset or 0, failure=failure, attempts=command.attempts,
        processor=processor, now_ms=now_ms,
    ) + [(COMMAND, command.kind.encode()), (IDEMPOTENCY_KEY, command.idempotency_key.encode())]
    return value, headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as read back from its topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    raw_headers: list[tuple[str, bytes]]
    headers: dict[str, str]

    @property
    def origin(self) -> tuple[str, int, int] | None:
        try:
            return (self.headers[h.ORIGIN_TOPIC], int(self.headers[h.ORIGIN_PARTITION]),
                    int(self.headers[h.ORIGIN_OFFSET]))
        except (KeyError, ValueError):
            return None

    @property
    def replays(self) -> int:
        return replay_count(self.headers)


def to_dead_letter(record: Any) -> DeadLetter:
    raw = list(record.headers or [])
    return DeadLetter(record.partition, record.offset, record.timestamp, record.key, record.value, raw,
                      h.to_dict(raw))


def read(consumer: KafkaConsumer, start: dict[TopicPartition, int], end: dict[TopicPartition, int],
         timeout_s: float = 30.0) -> Iterator[DeadLetter]:
    """Dead letters from `start` up to (not including) `end`, per partition in offset order."""
    todo = {tp: off for tp, off in start.items() if off < end.get(tp, 0)}
    if not todo:
        return
    consumer.assign(list(todo))
    for tp, off in todo.items():
        consumer.seek(tp, off)
    deadline = time.monotonic() + timeout_s
    while todo and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if tp not in todo or record.offset >= end[tp]:
                    break
                yield to_dead_letter(record)
                deadline = time.monotonic() + timeout_s  # progress: the bound is on silence
                if record.offset + 1 >= end[tp]:
                    todo.pop(tp, None)
                    consumer.pause(tp)
    if todo:
        raise TimeoutError(f"dead-letter topic stopped answering before its end: {sorted(todo)}")
