"""Event processors: the runtime that runs them and the contract they implement."""

from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.errors import PermanentError, TransientError, classify_error

__all__ = ["Context", "Event", "Processor", "PermanentError", "TransientError", "classify_error"]
