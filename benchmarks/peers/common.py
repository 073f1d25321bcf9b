"""What the Python peers share: settings from the environment, the key check, JSON parse and routing lookup."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

KEY = os.environ.get("PEER_KEY", "").encode()
BOOTSTRAP = os.environ.get("PEER_BOOTSTRAP", "127.0.0.1:9092")
LINGER_MS = int(os.environ.get("PEER_LINGER_MS", "0"))  # the harness passes hookstream's HOOKSTREAM_KAFKA_LINGER_MS
# "product/event_type" → [topic, field of data that keys the record]; written by benchmarks/ingest.py
ROUTES: dict[str, list[str]] = json.loads(os.environ.get("PEER_ROUTES", "{}"))
OK = b'{"response_code":"OK"}'


async def accept(request: Request) -> tuple[str, bytes, bytes] | Response:
    """(topic, record key, body) of an authentic, routable webhook, else the answer to give (401/400)."""
    presented = request.headers.get("x-webhook-key")
    if presented is None or not hmac.compare_digest(presented.encode(), KEY):
        return Response(status_code=401)
    body = await request.body()
    target = route(body)
    return Response(status_code=400) if target is None else (*target, body)


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
