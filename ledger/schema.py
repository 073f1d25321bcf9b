"""The ledger's tables (SQLAlchemy Core metadata); money columns hold integer cents."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

POSTING_KINDS = ("credit", "hold", "capture", "release", "refund", "debit")
HOLD_STATUSES = ("held", "captured", "released")

# SQLite only auto-increments an INTEGER PRIMARY KEY; Postgres gets a BIGSERIAL.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UtcDateTime(), nullable=False, default=utcnow),
)

# Running totals live on the account row so a hold is one conditional UPDATE (row-locked on
# Postgres, serialized by BEGIN IMMEDIATE on SQLite); postings are the audit trail they derive from.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("currency", String(3), nullable=False, default="USD"),
    Column("balance_cents", BigInteger, nullable=False, default=0),  # credits + refunds - captures - debits
    Column("held_cents", BigInteger, nullable=False, default=0),  # sum of holds in status 'held'
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    CheckConstraint("held_cents >= 0", name="held_not_negative"),
)

card_links = Table(
    "card_links",
    metadata,
    Column("card_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("approval_method", Text, nullable=True),
    Column("frozen", Boolean, nullable=False, default=False),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
)

wallet_links = Table(
    "wallet_links",
    metadata,
    Column("wallet_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
)

holds = Table(
    "holds",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("card_id", Text, nullable=False),
    Column("operation_id", Text, nullable=False),  # the card transaction's operation id
    Column("amount_cents", BigInteger, nullable=False),
    Column("captured_cents", BigInteger, nullable=True),  # final amount, may differ from the hold
    Column("status", String(16), nullable=False, default="held"),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    UniqueConstraint("card_id", "operation_id"),
    CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
    CheckConstraint(f"status IN {HOLD_STATUSES!r}", name="status_known"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("dedup_key", Text, nullable=False),
    Column("hold_id", Id, ForeignKey("holds.id"), nullable=True),
    Column("memo", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    # One posting per (kind, event): a redelivered event cannot post twice.
    UniqueConstraint("kind", "dedup_key"),
    CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
    CheckConstraint(f"kind IN {POSTING_KINDS!r}", name="kind_known"),
    Index(None, "account_id", "id"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("processor", Text, primary_key=True),
    Column("dedup_key", Text, primary_key=True),
    Column("topic", Text, nullable=True),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
    Column("outcome", Text, nullable=True),
    Column("processed_at", UtcDateTime(), nullable=False, default=utcnow),
)

# The tables migration 1 creates; later migrations alter explicitly, never via create_all.
V1_TABLES = [accounts, card_links, wallet_links, holds, postings, inbox]

# Treasury movements (transfers, withdrawals) as the platform reported them: one row per event, so
# an operation's status history (pending → success / failed / manual_check) is queryable. Not money
# in the books: amounts are kept as sent (tokens carry up to 6 decimals), never posted.
treasury_movements = Table(
    "treasury_movements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedup_key", Text, nullable=False, unique=True),
    Column("product", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("operation_id", Text, nullable=False, index=True),
    Column("status", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("wallet_id", Text, nullable=True, index=True),
    Column("card_id", Text, nullable=True),
    Column("amount", Text, nullable=True),  # decimal string as sent
    Column("transaction_hash", Text, nullable=True),
    Column("to_wallet_address", Text, nullable=True),
    Column("alert", Boolean, nullable=False, default=False),
    Column("occurred_at", UtcDateTime(), nullable=True),  # data.created_at
    Column("recorded_at", UtcDateTime(), nullable=False, default=utcnow),
)

# The transactional outbox: API commands written in the claim transaction of the event that decided
# them, sent by the dispatcher after commit. Times the dispatchers of several processes compare
# (due, lease, deadline) are epoch seconds. `order_key` keeps one target's commands in order.
OUTBOX_STATUSES = ("pending", "sent", "expired", "dead")
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("processor", Text, nullable=False),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON arguments of the call
    Column("order_key", Text, nullable=True),
    Column("deadline", Float, nullable=True),  # epoch seconds; past it the command expires unsent
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", Float, nullable=False),  # epoch seconds: next attempt no earlier than this
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", Float, nullable=True),  # a dispatcher is sending it until then
    Column("first_failed_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("origin_topic", Text, nullable=True),
    Column("origin_partition", Integer, nullable=True),
    Column("origin_offset", BigInteger, nullable=True),
    Column("dedup_key", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
    Column("finished_at", UtcDateTime(), nullable=True),
    # W3C traceparent of the processor span that wrote the command (migration 6): the API call's parent
    Column("traceparent", Text, nullable=True),
    CheckConstraint(f"status IN {OUTBOX_STATUSES!r}", name="status_known"),
    Index(None, "processor", "status", "due_at"),
    Index(None, "order_key", "status"),
    # The claim's order (migration 8): oldest pending first, read in index order up to the claim's LIMIT
    # instead of sorting every pending command of the processor (a backlog of thousands made each claim ~10 ms).
    Index("ix_outbox_claim", "processor", "status", "id"),
)

# One row per API key (by digest): the next instant a request may leave, shared by every dispatcher.
api_rate_slots = Table(
    "api_rate_slots",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("next_free", Float, nullable=False),
)

# Events that matched nothing (no hold under their identity, no linked card): kept for an operator,
# never applied to a look-alike. One row per (processor, event).
unmatched_events = Table(
    "unmatched_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("processor", Text, nullable=False),
    Column("dedup_key", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("operation_id", Text, nullable=False),
    Column("card_id", Text, nullable=True),
    Column("amount", Text, nullable=True),  # decimal string as sent
    Column("reason", Text, nullable=False),  # unmatched | unknown_card
    Column("posted", Boolean, nullable=False, default=False),  # money still moved (a settlement: debit)
    Column("recorded_at", UtcDateTime(), nullable=False, default=utcnow),
    UniqueConstraint("processor", "dedup_key"),
)
