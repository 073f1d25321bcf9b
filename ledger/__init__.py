"""The client's books: accounts, card/wallet links, holds, postings and the inbox of processed events."""

from hookstream.ledger.errors import (
    InvalidAmount,
    LedgerError,
    LedgerTransientError,
    SchemaNotReady,
    UnknownAccount,
    is_transient_db_error,
)
from hookstream.ledger.models import (
    Balance,
    CardState,
    HoldResult,
    InboxEntry,
    Posting,
    PostingResult,
    SettlementResult,
)
from hookstream.ledger.store import Ledger, UnitOfWork

__all__ = [
    "Balance", "CardState", "HoldResult", "InboxEntry", "InvalidAmount", "Ledger", "LedgerError",
    "LedgerTransientError", "Posting", "PostingResult", "SchemaNotReady", "SettlementResult",
    "UnitOfWork", "UnknownAccount", "is_transient_db_error",
]
