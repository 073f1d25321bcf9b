"""Finding processors: the `hookstream.processors` entry-point group, or a `module:Class` spec."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from hookstream.processors.base import Processor

GROUP = "hookstream.processors"


class ProcessorNotFound(LookupError):
    """No registered processor by that name, and not an importable `module:Class`."""


def registered() -> dict[str, str]:
    """Registered processor names → `module:Class`."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def _check(cls: object, spec: str) -> type[Processor]:
    if not isinstance(cls, type):
        raise ProcessorNotFound(f"{spec} is not a class")
    missing = [a for a in ("name", "topics", "handle") if not hasattr(cls, a)]
    if missing:
        raise ProcessorNotFound(f"{spec} is not a processor: missing {', '.join(missing)}")
    return cls  # type: ignore[return-value]


def load(name_or_spec: str) -> type[Processor]:
    """The processor class for a registered name or a `module:Class` spec."""
    for ep in entry_points(group=GROUP):
        if ep.name == name_or_spec:
            return _check(ep.load(), f"{ep.name} ({ep.value})")
    if ":" not in name_or_spec:
        known = ", ".join(sorted(registered())) or "none registered"
        raise ProcessorNotFound(f"unknown processor {name_or_spec!r} (known: {known})")
    module_name, _, attr = name_or_spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProcessorNotFound(f"cannot import {module_name}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ProcessorNotFound(f"{module_name} has no attribute {attr}")
    return _check(cls, name_or_spec)
