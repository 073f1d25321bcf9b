"""Finding processors: the `hookstream.processors` entry-point group, or a `module:Class` spec."""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from hookstream.processors.base import Processor
from hookstream.settings import ConfigError

GROUP = "hookstream.processors"


class ProcessorNotFound(LookupError):
    """No registered processor by that name, and not an importable `module:Class`."""


class DuplicateProcessor(ConfigError):
    """Two installed distributions register the same processor name: neither is loaded (every verb: exit 2)."""


def _entries() -> dict[str, EntryPoint]:
    """Registered entry points by name; a name registered twice is an error, never a silent shadow."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise DuplicateProcessor(f"processor {ep.name!r} is registered twice: {_origin(seen)} and {_origin(ep)}; "
                                     "rename one (entry-point group hookstream.processors)")
        found[ep.name] = ep
    return found


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{ep.value} (from {dist.name} {dist.version})" if dist is not None else ep.value


def registered() -> dict[str, str]:
    """Registered processor names → `module:Class`."""
    return {name: ep.value for name, ep in _entries().items()}


def load_all() -> dict[str, type[Processor]]:
    """Every registered processor class, by name."""
    return {name: _check(ep.load(), f"{name} ({ep.value})") for name, ep in sorted(_entries().items())}


def _check(cls: object, spec: str) -> type[Processor]:
    if not isinstance(cls, type):
        raise ProcessorNotFound(f"{spec} is not a class")
    missing = [a for a in ("name", "topics") if not hasattr(cls, a)]
    if getattr(cls, "decide", Processor.decide) is Processor.decide \
            and getattr(cls, "handle", Processor.handle) is Processor.handle:
        missing.append("decide (or handle)")
    if missing:
        raise ProcessorNotFound(f"{spec} is not a processor: missing {', '.join(missing)}")
    return cls  # type: ignore[return-value]


def load(name_or_spec: str) -> type[Processor]:
    """The processor class for a registered name or a `module:Class` spec."""
    ep = _entries().get(name_or_spec)
    if ep is not None:
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
