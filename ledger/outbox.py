"""The outbox: API commands stored with the event that decided them, claimed and settled by dispatchers.

`enqueue` runs inside the event's claim transaction (so a command exists if and only if the event's
effects committed). Dispatchers claim due commands under a lease in short transactions of their own,
never across an HTTP call; a dispatcher that dies leaves its lease to run out, and the command is sent
again with the same Idempotency-Key. A dispatcher's round (`exchange`) records outcomes and claims the next
commands with send times read from one row per API key, so every dispatcher sharing the key shares one schedule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hookstream.ledger.schema import api_rate_slots, outbox, utcnow


@dataclass(frozen=True, slots=True)
class OutboxCommand:
    """A claimed command, as a dispatcher sends it."""

    id: int
    processor: str
    kind: str
    args: dict[str, Any]
    idempotency_key: str
    order_key: str | None
    deadline: float | None
    attempts: int  # including this one
    first_failed_at: float | None
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    dedup_key: str | None
    traceparent: str | None = None  # the processor span that wrote it: the API call continues that trace


def _insert(dialect_name: str) -> Any:
    return pg_insert if dialect_name == "postgresql" else sqlite_insert


def enqueue(uow: Any, rows: list[dict[str, Any]]) -> None:
    """Write commands (dicts of outbox columns) in the caller's transaction; a known key is kept as is."""
    if not rows:
        return
    conn = uow.connection
    statement = _insert(conn.dialect.name)(outbox).on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
    conn.execute(statement, [{"status": "pending", "attempts": 0, "created_at": utcnow(), **r} for r in rows])


_CLAIM = """
UPDATE outbox SET lease_owner = :owner, lease_until = :until, attempts = attempts + 1
WHERE id IN (
  SELECT o.id FROM outbox o
  WHERE o.processor = :processor AND o.status = 'pending' AND o.due_at <= :now
    AND (o.lease_until IS NULL OR o.lease_until < :now)
    AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.order_key = o.order_key AND e.status = 'pending'
                    AND e.id < o.id)
  ORDER BY o.id LIMIT :limit {lock}
)
RETURNING id, processor, kind, payload, idempotency_key, order_key, deadline, attempts, first_failed_at,
          origin_topic, origin_partition, origin_offset, dedup_key, traceparent
"""


SETTLED = ("sent", "expired", "dead")
RELEASED = "released"  # in `finish_many`/`exchange`: given back unsent (not a status a command keeps)


class Outbox:
    """The dispatcher's side of the outbox, on a `Ledger` (each method is one short transaction)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        lock = "FOR UPDATE SKIP LOCKED" if ledger.dialect == "postgresql" else ""
        self._claim = text(_CLAIM.format(lock=lock))
        self._keys_seen: set[str] = set()  # api_rate_slots rows known to exist

    def claim(self, processor: str, owner: str, limit: int, lease_s: float, now: float) -> list[OutboxCommand]:
        """Up to `limit` due commands of `processor`, leased to `owner` until now + lease_s, oldest first.

        A command waits while an older pending command has the same order key.
        """
        if limit <= 0:
            return []
        with self.ledger.unit_of_work() as uow:
            return self._claim_in(uow.connection, processor, owner, limit, lease_s, now)

    def _claim_paced_in(self, conn: Any, processor: str, owner: str, limit: int, lease_s: float, now: float,
                        key_id: str, rate: float, horizon_s: float) -> list[tuple[OutboxCommand, float | None]]:
        first = self._next_free(conn, key_id, now)
        interval = 1.0 / rate
        room = min(limit, int((now + horizon_s - first) / interval) + 1) if first <= now + horizon_s else 0
        claimed = self._claim_in(conn, processor, owner, room, lease_s, now) if room > 0 else []
        out: list[tuple[OutboxCommand, float | None]] = []
        at = first
        for command in claimed:
            if command.deadline is not None and now >= command.deadline:
                out.append((command, None))
            else:
                out.append((command, at))
                at += interval
        if at != first:
            conn.execute(update(api_rate_slots).where(api_rate_slots.c.key_id == key_id).values(next_free=at))
        return out

    def _claim_in(self, conn: Any, processor: str, owner: str, limit: int, lease_s: float,
                  now: float) -> list[OutboxCommand]:
        rows = conn.execute(self._claim, {
            "owner": owner, "until": now + lease_s, "processor": processor, "now": now, "limit": limit,
        }).all()
        out = [OutboxCommand(r.id, r.processor, r.kind, json.loads(r.payload), r.idempotency_key, r.order_key,
                             r.deadline, r.attempts, r.first_failed_at, r.origin_topic, r.origin_partition,
                             r.origin_offset, r.dedup_key, r.traceparent) for r in rows]
        return sorted(out, key=lambda c: c.id)

    def finish(self, command_id: int, owner: str, status: str, error: str | None = None) -> bool:
        """Settle a command as sent, expired or dead; False when its lease was lost to another dispatcher."""
        with self.ledger.unit_of_work() as uow:
            return uow.connection.execute(
                update(outbox).where(outbox.c.id == command_id, outbox.c.lease_owner == owner,
                                     outbox.c.status == "pending")
                .values(status=status, last_error=error, lease_owner=None, lease_until=None,
                        finished_at=utcnow())).rowcount == 1

    def finish_many(self, settled: list[tuple[int, str, str | None]], owner: str) -> set[int]:
        """Settle many commands in one transaction: (id, status, error) each, status one of SETTLED or RELEASED
        (given back unsent: due again at once, the attempt not counted); the ids settled (a command whose lease was lost to another
        dispatcher is not among them)."""
        if not settled:
            return set()
        with self.ledger.unit_of_work() as uow:
            return self._finish_in(uow.connection, settled, owner)

    def exchange(self, settled: list[tuple[int, str, str | None]], owner: str, processor: str, limit: int,
                 lease_s: float, now: float, key_id: str, rate: float,
                 horizon_s: float = 1.0) -> tuple[set[int], list[tuple[OutboxCommand, float | None]]]:
        """A dispatcher's round in one transaction (one commit, one fsync): `finish_many(settled)`, then up to
        `limit` commands claimed, as many as the key's schedule has send times for within `horizon_s`, each with
        its send time, 1/rate after the previous one across all dispatchers sharing the key (None: its deadline
        has passed, to be expired unsent; it takes no send time). If it fails, nothing of it happened."""
        with self.ledger.unit_of_work() as uow:
            conn = uow.connection
            done = self._finish_in(conn, settled, owner) if settled else set()
            claimed = self._claim_paced_in(conn, processor, owner, limit, lease_s, now, key_id, rate,
                                           horizon_s) if limit > 0 else []
            return done, claimed

    @staticmethod
    def _finish_in(conn: Any, settled: list[tuple[int, str, str | None]], owner: str) -> set[int]:
        groups: dict[tuple[str, str | None], list[int]] = {}
        for command_id, status, error in settled:
            groups.setdefault((status, error), []).append(command_id)
        done: set[int] = set()
        finished_at = utcnow()
        for (status, error), ids in groups.items():
            if status == RELEASED:  # not attempted: due again at once, the attempt not counted
                values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "attempts": outbox.c.attempts - 1}
            else:
                values = {"status": status, "last_error": error, "lease_owner": None, "lease_until": None,
                          "finished_at": finished_at}
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit: chunks
                done.update(conn.execute(
                    update(outbox).where(outbox.c.id.in_(ids[start:start + 500]), outbox.c.lease_owner == owner,
                                         outbox.c.status == "pending")
                    .values(**values).returning(outbox.c.id)).scalars())
        return done

    def retry_at(self, command_id: int, owner: str, due_at: float, first_failed_at: float, error: str) -> bool:
        """Give the command back, due again at `due_at` (epoch seconds)."""
        with self.ledger.unit_of_work() as uow:
            return uow.connection.execute(
                update(outbox).where(outbox.c.id == command_id, outbox.c.lease_owner == owner,
                                     outbox.c.status == "pending")
                .values(due_at=due_at, first_failed_at=first_failed_at, last_error=error, lease_owner=None,
                        lease_until=None)).rowcount == 1

    def _next_free(self, conn: Any, key_id: str, now: float) -> float:
        """The key's next free send time (no earlier than now), read under the key row's lock."""
        # The row exists first, then is read under its row lock (Postgres; SQLite's BEGIN IMMEDIATE
        # already serializes): two dispatchers never read the same `next_free`. Rows are never deleted:
        # once seen, a key's row is only read (one statement a round instead of two).
        read = select(api_rate_slots.c.next_free).where(api_rate_slots.c.key_id == key_id).with_for_update()
        next_free = conn.execute(read).scalar_one_or_none() if key_id in self._keys_seen else None
        if next_free is None:
            conn.execute(_insert(conn.dialect.name)(api_rate_slots).values(key_id=key_id, next_free=now)
                         .on_conflict_do_nothing(index_elements=[api_rate_slots.c.key_id]))
            next_free = conn.execute(read).scalar_one()
            self._keys_seen.add(key_id)
        return max(now, next_free)

    def purge(self, processor: str, finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` of `processor`'s settled commands finished before `finished_before`.

        Pending commands are never touched; an event's redelivery is stopped by its inbox claim, so a
        purged command is not enqueued again.
        """
        settled = (select(outbox.c.id)
                   .where(outbox.c.processor == processor, outbox.c.status.in_(SETTLED),
                          outbox.c.finished_at < finished_before)
                   .order_by(outbox.c.id).limit(limit).scalar_subquery())
        with self.ledger.unit_of_work() as uow:
            return uow.connection.execute(delete(outbox).where(outbox.c.id.in_(settled))).rowcount

    def counts(self, processor: str | None = None) -> dict[str, int]:
        """Commands by status (for health and tests)."""
        with self.ledger.unit_of_work(read_only=True) as uow:
            query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
            if processor is not None:
                query = query.where(outbox.c.processor == processor)
            return {status: n for status, n in uow.connection.execute(query)}
