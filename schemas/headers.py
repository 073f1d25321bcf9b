"""Kafka record header names: normalised metadata travels here, the body stays byte for byte."""

from __future__ import annotations

import hashlib

GENERATION = "hs-generation"
PRODUCT = "hs-product"
EVENT_TYPE = "hs-event-type"
STATUS = "hs-status"
OPERATION_ID = "hs-operation-id"
DEDUP_KEY = "hs-dedup-key"
RECEIVED_AT = "hs-received-at"  # epoch milliseconds at the receiver
REQUEST_TIMESTAMP = "hs-request-timestamp"  # X-Request-Timestamp as sent (epoch ms)
TRACE_ID = "hs-trace-id"
CONTENT_TYPE = "hs-content-type"
SPOOLED = "hs-spooled"  # "1" when the record went through the receiver's spool
ERROR = "hs-error"  # quarantine: why the body was refused (no input values)

# authorization decision
RESPONSE_CODE = "hs-response-code"
DECISION_REASON = "hs-decision-reason"
DECISION_MS = "hs-decision-ms"
HOLD_ID = "hs-hold-id"

# dead letters
ORIGIN_TOPIC = "hs-origin-topic"
ORIGIN_PARTITION = "hs-origin-partition"
ORIGIN_OFFSET = "hs-origin-offset"
ERROR_TYPE = "hs-error-type"
ERROR_MESSAGE = "hs-error-message"
ATTEMPTS = "hs-attempts"
PROCESSOR = "hs-processor"
DEAD_LETTERED_AT = "hs-dead-lettered-at"
REPLAY_COUNT = "hs-replay-count"


# A header value taken from the request (trace id, timestamp, ids) never exceeds this: the record
# must stay under the producer's max.request.size (1 MiB) whatever the sender puts in metadata.
MAX_VALUE_BYTES = 512
_DIGEST_BYTES = 32  # hex characters of sha256 kept after a cut, so cut values stay distinct


def fit(value: bytes, limit: int = MAX_VALUE_BYTES) -> bytes:
    """`value`, or for a longer one its head + "~" + a digest of the whole (bounded, still unique)."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value).hexdigest()[:_DIGEST_BYTES].encode()
    head = value[: limit - _DIGEST_BYTES - 1].decode("utf-8", "ignore").encode()  # whole characters only
    return head + b"~" + digest


def to_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Record headers as a str → str mapping (last one wins)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or []) if v is not None}
