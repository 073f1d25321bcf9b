"""Event processors: the runtime that runs them and the contract they implement."""

from hookstream.domain.effects import Effects
from hookstream.processors.base import Context, Event, Processor
from hookstream.processors.errors import PermanentError, TransientError, classify_error
from hookstream.processors.view import LedgerView

__all__ = ["Context", "Effects", "Event", "LedgerView", "Processor", "PermanentError", "TransientError",
           "classify_error"]
