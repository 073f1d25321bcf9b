"""/openapi.json: an OpenAPI 3 document of the webhook endpoint that the bodies we accept conform to."""

from __future__ import annotations

import json

import httpx
import jsonschema

from test_ingest.payloads import CATALOG, VARIANTS, envelope

WEBHOOK = "/webhooks/cryptomate"


def _request_schema(doc: dict) -> dict:
    schema = doc["paths"][WEBHOOK]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def test_openapi_document_describes_both_generations_headers_and_every_answer(settings, start_receiver):
    receiver = start_receiver(settings)
    response = httpx.get(f"{receiver.base}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"][WEBHOOK]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "413", "503"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert {p["name"] for p in post["parameters"] if p["in"] == "header"} == {"X-Request-Timestamp", "X-Trace-Id"}
    [requirement] = post["security"]
    scheme = doc["components"]["securitySchemes"][next(iter(requirement))]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Webhook-Key")
    assert str(settings.max_body_bytes) in post["responses"]["413"]["description"]

    # every catalog body in every generation/casing/amount form conforms; a body of neither does not
    schema = _request_schema(doc)
    for product, event_type, status, op, data, _, _ in CATALOG:
        for variant in VARIANTS:
            jsonschema.validate(json.loads(envelope(product, event_type, status, op, data, **variant)), schema)
    for wrong in ({"kind": "deposit", "operation_id": "x"}, {"product": "cards", "operation_id": "x"}, []):
        assert not jsonschema.Draft7Validator(schema).is_valid(wrong)
