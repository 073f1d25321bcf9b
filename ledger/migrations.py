"""Versioned schema migrations: an ordered list of steps and the `schema_version` table recording them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, inspect, select, text

from hookstream.ledger import closed, decide_pg, decisions, schema


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=schema.V1_TABLES)


def _v2(conn: Connection) -> None:
    schema.treasury_movements.create(conn)


def _v3(conn: Connection) -> None:
    decisions.create(conn)
    decide_pg.install(conn)


def _v4(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.outbox, schema.api_rate_slots])


def _v5(conn: Connection) -> None:
    schema.unmatched_events.create(conn)


def _v6(conn: Connection) -> None:
    # Step 4 creates the outbox from today's table definition, which has the column already.
    if "traceparent" not in {c["name"] for c in inspect(conn).get_columns(schema.outbox.name)}:
        conn.execute(text("ALTER TABLE outbox ADD COLUMN traceparent TEXT"))


def _v7(conn: Connection) -> None:
    closed.create(conn)
    decide_pg.install(conn)  # the function now refuses a hold for a closed operation


def _v8(conn: Connection) -> None:
    # Step 4 creates the outbox from today's table definition, which has the index already.
    next(i for i in schema.outbox.indexes if i.name == "ix_outbox_claim").create(conn, checkfirst=True)


# Append only: a released step is never edited, a change is a new step.
MIGRATIONS: list[Migration] = [
    Migration(1, "create accounts, card_links, wallet_links, holds, postings, inbox", _v1),
    Migration(2, "create treasury_movements", _v2),
    Migration(3, "create authorization_decisions; install hookstream_authorize (Postgres)", _v3),
    Migration(4, "create outbox, api_rate_slots", _v4),
    Migration(5, "create unmatched_events", _v5),
    Migration(6, "add outbox.traceparent", _v6),
    Migration(7, "create closed_operations; reinstall hookstream_authorize (Postgres)", _v7),
    Migration(8, "index outbox claims by (processor, status, id)", _v8),
]
LATEST = MIGRATIONS[-1].version

# Serializes concurrent `upgrade` runs on Postgres (e.g. several pods starting at once).
_PG_LOCK_KEY = 0x686F6F6B  # "hook"


def outdated(version: int) -> str | None:
    """The one-line problem when a schema at `version` is older than this code, else None."""
    if version >= LATEST:
        return None
    return f"ledger schema is at version {version}, this code needs {LATEST}: run `hookstream db upgrade`"


def current_version(conn: Connection) -> int:
    """The applied schema version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return conn.execute(select(func.coalesce(func.max(schema.schema_version.c.version), 0))).scalar_one()


def upgrade(conn: Connection) -> list[Migration]:
    """Apply every pending migration inside the caller's transaction; returns what was applied."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    schema.schema_version.create(conn, checkfirst=True)
    version = current_version(conn)
    applied = []
    for migration in MIGRATIONS:
        if migration.version > version:
            migration.apply(conn)
            conn.execute(insert(schema.schema_version).values(
                version=migration.version, description=migration.description))
            applied.append(migration)
    return applied
