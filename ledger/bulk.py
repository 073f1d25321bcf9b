"""Set-based ledger writes: a whole lane batch's postings and balance moves in a few statements.

A processor that decides (`Processor.decide` → `Effects`) has its ledger intents applied here at the
end of its batch, in the batch's transaction, instead of statement by statement per event: one
multi-row INSERT of postings (a posting already there is skipped, never posted twice), then the
balance moves of the postings that went in, summed per account, one statement per batch. On Postgres
the accounts are locked in id order first (the order the authorization decision locks them in), so
a batch and a decision never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hookstream.ledger.errors import UnknownAccount

SQLITE_CHUNK = 400  # rows per multi-row statement: 6 parameters each, far below SQLite's variable limit


def post_many(uow: Any, rows: list[tuple[str, str, int, str, str | None]]) -> set[tuple[str, str]]:
    """Insert postings `(account_id, kind, cents, dedup_key, memo)`; the `(kind, dedup_key)` pairs inserted.

    A pair already posted (by an earlier delivery or another processor) is left as it is.
    """
    if not rows:
        return set()
    now = uow.now_value()
    inserted: set[tuple[str, str]] = set()
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql(
            "INSERT INTO postings (account_id, kind, amount_cents, dedup_key, memo, created_at) "
            "SELECT a, k, c, d, m, %(now)s FROM unnest(%(a)s::text[], %(k)s::text[], %(c)s::bigint[], "
            "%(d)s::text[], %(m)s::text[]) AS t(a, k, c, d, m) "
            "ON CONFLICT (kind, dedup_key) DO NOTHING RETURNING kind, dedup_key",
            {"now": now, "a": [r[0] for r in rows], "k": [r[1] for r in rows], "c": [r[2] for r in rows],
             "d": [r[3] for r in rows], "m": [r[4] for r in rows]})
        inserted.update((k, d) for k, d in cursor.fetchall())
        return inserted
    for chunk in _chunks(rows, SQLITE_CHUNK):
        values = ",".join(["(?,?,?,?,?,?)"] * len(chunk))
        params = [v for r in chunk for v in (*r, now)]
        cursor = uow.execute_sql(
            f"INSERT INTO postings (account_id, kind, amount_cents, dedup_key, memo, created_at) VALUES {values} "
            "ON CONFLICT (kind, dedup_key) DO NOTHING RETURNING kind, dedup_key", params)
        inserted.update((k, d) for k, d in cursor.fetchall())
    return inserted


def move_balances(uow: Any, deltas: dict[str, int]) -> None:
    """Add each account's delta (cents) to its balance; UnknownAccount when one does not exist."""
    moves = sorted((a, d) for a, d in deltas.items() if d != 0)
    if not moves:
        return
    now = uow.now_value()
    ids = [a for a, _ in moves]
    if uow.dialect_name == "postgresql":
        uow.execute_sql("SELECT id FROM accounts WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE",
                        {"ids": ids})
        cursor = uow.execute_sql(
            "UPDATE accounts SET balance_cents = accounts.balance_cents + v.d, updated_at = %(now)s "
            "FROM unnest(%(ids)s::text[], %(d)s::bigint[]) AS v(id, d) WHERE accounts.id = v.id",
            {"now": now, "ids": ids, "d": [d for _, d in moves]})
        updated = cursor.rowcount
    else:  # one writer holds the database (BEGIN IMMEDIATE): the C loop of executemany is the cheap way
        cursor = uow.execute_sql(
            "UPDATE accounts SET balance_cents = balance_cents + ?, updated_at = ? WHERE id = ?",
            [(d, now, a) for a, d in moves], many=True)
        updated = cursor.rowcount
    if updated != len(moves):
        missing = _missing_accounts(uow, ids)
        raise UnknownAccount(", ".join(missing) or "an account")


def claimed_among(uow: Any, processor: str, keys: list[str]) -> set[str]:
    """Which of `keys` the inbox already holds for `processor` (one statement per chunk)."""
    found: set[str] = set()
    if not keys:
        return found
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql("SELECT dedup_key FROM inbox WHERE processor = %(p)s AND dedup_key = ANY(%(k)s::text[])",
                                 {"p": processor, "k": keys})
        found.update(r[0] for r in cursor.fetchall())
        return found
    for chunk in _chunks(keys, SQLITE_CHUNK * 2):
        marks = ",".join("?" * len(chunk))
        cursor = uow.execute_sql(f"SELECT dedup_key FROM inbox WHERE processor = ? AND dedup_key IN ({marks})",
                                 [processor, *chunk])
        found.update(r[0] for r in cursor.fetchall())
    return found


def claim_many(uow: Any, processor: str, rows: list[tuple[str, str, int, int, str]]) -> set[str]:
    """Claim `(dedup_key, topic, partition, offset, outcome)` rows; the dedup keys this call inserted."""
    if not rows:
        return set()
    now = uow.now_value()
    inserted: set[str] = set()
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql(
            'INSERT INTO inbox (processor, dedup_key, topic, "partition", "offset", outcome, processed_at) '
            "SELECT %(p)s, d, t, n, o, c, %(now)s FROM unnest(%(d)s::text[], %(t)s::text[], %(n)s::int[], "
            "%(o)s::bigint[], %(c)s::text[]) AS v(d, t, n, o, c) "
            "ON CONFLICT (processor, dedup_key) DO NOTHING RETURNING dedup_key",
            {"p": processor, "now": now, "d": [r[0] for r in rows], "t": [r[1] for r in rows],
             "n": [r[2] for r in rows], "o": [r[3] for r in rows], "c": [r[4] for r in rows]})
        inserted.update(r[0] for r in cursor.fetchall())
        return inserted
    for chunk in _chunks(rows, SQLITE_CHUNK):
        values = ",".join(["(?,?,?,?,?,?,?)"] * len(chunk))
        params = [v for r in chunk for v in (processor, *r, now)]
        cursor = uow.execute_sql(
            'INSERT INTO inbox (processor, dedup_key, topic, "partition", "offset", outcome, processed_at) '
            f"VALUES {values} ON CONFLICT (processor, dedup_key) DO NOTHING RETURNING dedup_key", params)
        inserted.update(r[0] for r in cursor.fetchall())
    return inserted


def unclaim(uow: Any, processor: str, dedup_key: str) -> None:
    """Take back an inbox claim whose effects will not be applied (its decision failed)."""
    if uow.dialect_name == "postgresql":
        uow.execute_sql("DELETE FROM inbox WHERE processor = %(p)s AND dedup_key = %(d)s",
                        {"p": processor, "d": dedup_key})
    else:
        uow.execute_sql("DELETE FROM inbox WHERE processor = ? AND dedup_key = ?", (processor, dedup_key))


def set_outcomes(uow: Any, processor: str, outcomes: Iterable[tuple[str, str]]) -> None:
    """Note `(dedup_key, outcome)` on claimed events (when not "ok", the outcome the claim was made with)."""
    rows = list(outcomes)
    if not rows:
        return
    if uow.dialect_name == "postgresql":
        uow.execute_sql("UPDATE inbox SET outcome = %(o)s WHERE processor = %(p)s AND dedup_key = %(d)s",
                        [{"o": o, "p": processor, "d": d} for d, o in rows], many=True)
    else:
        uow.execute_sql("UPDATE inbox SET outcome = ? WHERE processor = ? AND dedup_key = ?",
                        [(o, processor, d) for d, o in rows], many=True)


def _missing_accounts(uow: Any, ids: list[str]) -> list[str]:
    return [a for a in ids if not uow.account_exists(a)]


def _chunks(rows: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
