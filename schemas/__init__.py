"""Pure data contracts: envelopes, event data models, routing, dedup keys, record headers. No I/O."""

from hookstream.schemas.envelope import Envelope, EnvelopeError, parse_envelope
from hookstream.schemas.routing import ROUTES, Route, TOPICS, dedup_key, route_for

__all__ = ["Envelope", "EnvelopeError", "parse_envelope", "ROUTES", "Route", "TOPICS", "dedup_key", "route_for"]
