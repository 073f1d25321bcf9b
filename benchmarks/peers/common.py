"""What the Python peers share: their settings from the environment, the key check and the routing lookup."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

KEY = os.environ.get("PEER_KEY", "").encode()
BOOTSTRAP = os.environ.get("PEER_BOOTSTRAP", "127.0.0.1:9092")
# "product/event_type" → [topic, field of data that keys the record]; written by benchmarks/ingest.py
ROUTES: dict[str, list[str]] = json.loads(os.environ.get("PEER_ROUTES", "{}"))
OK = b'{"response_code":"OK"}'


def key_ok(presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), KEY)


def route(body: bytes) -> tuple[str, bytes] | None:
    """(topic, record key) of a webhook body (generation A or B, any casing), None when unknown or invalid."""
    try:
        doc: Any = json.loads(body)
        product = (doc.get("product") or doc.get("operation") or "").lower()
        event = (doc.get("event_type") or doc.get("sub_operation") or "").lower()
        topic, field = ROUTES[f"{product}/{event}"]
        return topic, str(doc["data"][field]).encode()
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
