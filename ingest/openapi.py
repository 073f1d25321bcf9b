"""The OpenAPI 3 document of the webhook endpoint, served at /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hookstream.schemas.envelope import MAX_NAME_CHARS
from hookstream.schemas.routing import ROUTES
from hookstream.settings import Settings

_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
         "description": "Case-insensitive; '-', '.', ' ' and '_' are one separator."}
_OPERATION_ID = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}],
                 "description": "The platform's idempotency key; for 3DS challenges it equals data.code."}
_COMMON = {
    "operation_id": _OPERATION_ID,
    "status": {**_NAME, "nullable": True},
    "reason": {"type": "string", "nullable": True},
    "company_id": {"type": "string", "nullable": True},
    "client_id": {"type": "string", "nullable": True},
    "data": {"type": "object", "nullable": True, "additionalProperties": True,
             "description": "The event's payload; routed events are validated against their model "
                            "(`hookstream schemas export`). Amounts: decimal strings or numbers, finite, "
                            "|amount| < 1e37, at most 36 decimal places."},
}


def _answer(code: str, description: str, **extra: Any) -> dict[str, Any]:
    properties = {"response_code": {"type": "string", "example": code}, **extra}
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["response_code"], "properties": properties}}}}


def openapi_document(settings: Settings, path: str) -> dict[str, Any]:
    """The document for this receiver's configuration (body limit, key header, routes)."""
    routes = sorted(f"{product}/{event_type}" for product, event_type in ROUTES)
    return {
        "openapi": "3.0.3",
        "info": {"title": "hookstream receiver", "version": "1",
                 "description": "Receives CryptoMate webhooks and makes them durable in Kafka."},
        "paths": {path: {"post": {
            "operationId": "receiveWebhook",
            "summary": "A CryptoMate webhook of either envelope generation",
            "description": "Routed events: " + ", ".join(routes) + ". Other authentic events are kept "
                           "on the unrouted topic (200); invalid ones on the quarantine topic (400). "
                           "Card authorizations are answered with the decision's response_code.",
            "security": [{"webhookKey": []}],
            "parameters": [
                {"name": "X-Request-Timestamp", "in": "header", "required": False,
                 "description": "Epoch milliseconds; refused (401) outside the freshness window when enabled.",
                 "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"}},
                {"name": "X-Trace-Id", "in": "header", "required": False,
                 "description": "Carried in the record headers (cut to a bounded length, never refused).",
                 "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"anyOf": [
                {"$ref": "#/components/schemas/EnvelopeB"}, {"$ref": "#/components/schemas/EnvelopeA"},
            ]}}}},
            "responses": {
                "200": _answer("OK", "Durable in Kafka (or, for events the platform never retries, in the "
                                     "receiver's fsync'd spool). Authorizations carry their decision, e.g. 00."),
                "400": _answer("INVALID", "Not a valid envelope or event; the body is kept in quarantine.",
                               error={"type": "string"}, fields={"type": "array", "items": {"type": "string"}}),
                "401": {"description": "Missing or wrong X-Webhook-Key, or a stale X-Request-Timestamp. "
                                       "Empty body; nothing is published."},
                "413": _answer("PAYLOAD_TOO_LARGE", f"Body over {settings.max_body_bytes} bytes; not published."),
                "503": {**_answer("UNAVAILABLE", "Kafka did not acknowledge in time; retry later."),
                        "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                    "description": "Seconds before retrying."}}},
            },
        }}},
        "components": {
            "securitySchemes": {"webhookKey": {"type": "apiKey", "in": "header", "name": "X-Webhook-Key"}},
            "schemas": {
                "EnvelopeB": {"type": "object", "description": "Generation B (current): product / event_type.",
                              "required": ["product", "event_type", "operation_id"], "additionalProperties": True,
                              "properties": {"product": _NAME, "event_type": _NAME, **_COMMON}},
                "EnvelopeA": {"type": "object", "description": "Generation A (older): operation / sub_operation.",
                              "required": ["operation", "sub_operation", "operation_id"],
                              "additionalProperties": True,
                              "properties": {"operation": _NAME, "sub_operation": _NAME, **_COMMON}},
            },
        },
    }


def openapi_route(settings: Settings, path: str) -> Callable[[Request], Awaitable[Response]]:
    """The /openapi.json endpoint: the document of the webhook at `path`, rendered once."""
    body = json.dumps(openapi_document(settings, path), separators=(",", ":")).encode()

    async def openapi_json(_: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi_json
