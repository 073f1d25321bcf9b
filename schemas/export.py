"""JSON Schema export of the envelope and every routed event's data model."""

from __future__ import annotations

import json
from pathlib import Path

from hookstream.schemas.envelope import Envelope
from hookstream.schemas.routing import ROUTES


def export_schemas(directory: Path) -> list[Path]:
    """Write envelope.json and one <product>.<event_type>.json per route; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    docs = {"envelope": Envelope.model_json_schema()}
    for (product, event_type), route in sorted(ROUTES.items()):
        schema = route.model.model_json_schema(mode="validation")
        schema["title"] = f"{product}/{event_type} data"
        schema["x-topic"] = route.topic
        schema["x-partition-key"] = f"data.{route.key_field}"
        docs[f"{product}.{event_type}"] = schema
    for name, schema in docs.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
