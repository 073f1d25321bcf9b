"""The parse step: a Kafka record becomes the processor's `Event` (or None when the processor ignores its type)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hookstream.processors.base import Event
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key, loggable_operation_id, parse_data, route_for


def parse_record(record: Any, headers: dict[str, str], event_types: frozenset[str] | None,
                 log: Any) -> tuple[Event | None, Any]:
    """The record's Event (None: a type this processor does not handle) and `log` bound to its identity.

    Raises on a body that is not a valid event (classified permanent by `classify_error`).
    """
    envelope = parse_envelope(record.value)
    loggable_id = loggable_operation_id(envelope)
    if event_types is not None and envelope.event_type not in event_types:
        return None, log.bind(operation_id=loggable_id, event_type=envelope.event_type)
    route = route_for(envelope)
    event = Event(
        envelope=envelope, data=parse_data(envelope, route), dedup_key=dedup_key(envelope, loggable_id),
        topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
        value=record.value, headers=headers, received_at=received_at(headers),
    )
    # One bind (a copy of the logger's context) per record: a record that fails to parse raises before it,
    # and is logged with the caller's `log` (topic, partition, offset).
    return event, log.bind(operation_id=loggable_id, event_type=envelope.event_type, dedup_key=event.dedup_key)


def received_at(headers: dict[str, str]) -> datetime | None:
    value = headers.get(h.RECEIVED_AT)
    if value is None or not value.isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)
