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
from typing import Any, NamedTuple

from hookstream.ledger.errors import UnknownAccount
from hookstream.ledger.store import HoldRow

SQLITE_CHUNK = 400  # rows per multi-row statement: 6 parameters each, far below SQLite's variable limit


def post_many(uow: Any, rows: list[tuple[str, str, int, str, str | None]],
              hold_ids: list[int] | None = None) -> set[tuple[str, str]]:
    """Insert postings `(account_id, kind, cents, dedup_key, memo)` (with the holds they settle, when given);
    the `(kind, dedup_key)` pairs inserted.

    A pair already posted (by an earlier delivery or another processor) is left as it is.
    """
    if not rows:
        return set()
    now = uow.now_value()
    holds = hold_ids if hold_ids is not None else [None] * len(rows)
    inserted: set[tuple[str, str]] = set()
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql(
            "INSERT INTO postings (account_id, kind, amount_cents, dedup_key, memo, hold_id, created_at) "
            "SELECT a, k, c, d, m, h, %(now)s FROM unnest(%(a)s::text[], %(k)s::text[], %(c)s::bigint[], "
            "%(d)s::text[], %(m)s::text[], %(h)s::bigint[]) AS t(a, k, c, d, m, h) "
            "ON CONFLICT (kind, dedup_key) DO NOTHING RETURNING kind, dedup_key",
            {"now": now, "a": [r[0] for r in rows], "k": [r[1] for r in rows], "c": [r[2] for r in rows],
             "d": [r[3] for r in rows], "m": [r[4] for r in rows], "h": holds})
        inserted.update((k, d) for k, d in cursor.fetchall())
        return inserted
    for chunk in _chunks(list(zip(rows, holds, strict=True)), SQLITE_CHUNK):
        values = ",".join(["(?,?,?,?,?,?,?)"] * len(chunk))
        params = [v for r, hold in chunk for v in (*r, hold, now)]
        cursor = uow.execute_sql(
            "INSERT INTO postings (account_id, kind, amount_cents, dedup_key, memo, hold_id, created_at) "
            f"VALUES {values} ON CONFLICT (kind, dedup_key) DO NOTHING RETURNING kind, dedup_key", params)
        inserted.update((k, d) for k, d in cursor.fetchall())
    return inserted


def move_balances(uow: Any, deltas: dict[str, int], held: dict[str, int] | None = None) -> None:
    """Add each account's delta (cents) to its balance, and `held`'s to its held amount; UnknownAccount when
    one does not exist. On Postgres the accounts are locked in id order first."""
    held = held or {}
    moves = sorted((a, deltas.get(a, 0), held.get(a, 0)) for a in {*deltas, *held}
                   if deltas.get(a, 0) or held.get(a, 0))
    if not moves:
        return
    now = uow.now_value()
    ids = [a for a, _, _ in moves]
    if uow.dialect_name == "postgresql":
        uow.execute_sql("SELECT id FROM accounts WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE",
                        {"ids": ids})
        cursor = uow.execute_sql(
            "UPDATE accounts SET balance_cents = accounts.balance_cents + v.d, held_cents = accounts.held_cents + v.h, "
            "updated_at = %(now)s FROM unnest(%(ids)s::text[], %(d)s::bigint[], %(h)s::bigint[]) AS v(id, d, h) "
            "WHERE accounts.id = v.id",
            {"now": now, "ids": ids, "d": [d for _, d, _ in moves], "h": [h for _, _, h in moves]})
        updated = cursor.rowcount
    else:  # one writer holds the database (BEGIN IMMEDIATE): the C loop of executemany is the cheap way
        cursor = uow.execute_sql(
            "UPDATE accounts SET balance_cents = balance_cents + ?, held_cents = held_cents + ?, updated_at = ? "
            "WHERE id = ?", [(d, h, now, a) for a, d, h in moves], many=True)
        updated = cursor.rowcount
    if updated != len(moves):
        missing = _missing_accounts(uow, ids)
        raise UnknownAccount(", ".join(missing) or "an account")


class Settlement(NamedTuple):
    """A held hold to capture (`cents` leave the balance) or release, posted under `dedup_key`."""

    card_id: str
    operation_id: str
    action: str  # "capture" | "release"
    cents: int | None  # the capture's final amount; None for a release (the hold's amount is released)
    dedup_key: str
    memo: str | None


class NotAllHeld(Exception):
    """A hold of the set was not held any more, or a settlement's posting was there already."""


def settle_many(uow: Any, items: list[Settlement], deltas: dict[str, int], held: dict[str, int]) -> bool:
    """Settle a set of held holds at once: one UPDATE of the holds, one multi-row INSERT of their postings;
    the balance and held moves are added to `deltas` and `held` for the batch's one `move_balances`.

    All or nothing: False, with nothing written, when any hold is not held any more or any posting is there
    already (the caller settles them one by one, which tells a duplicate from a hold that changed). Each
    (card, operation) at most once in `items`.
    """
    if not items:
        return True
    try:
        with uow.savepoint("hs_settle"):
            rows = _settle_holds(uow, items)
            if len(rows) != len(items):
                raise NotAllHeld
            postings, hold_ids = [], []
            for item in items:
                hold_id, account, amount = rows[(item.card_id, item.operation_id)]
                cents = item.cents if item.action == "capture" else amount
                assert cents is not None
                postings.append((account, item.action, cents, item.dedup_key, item.memo))
                hold_ids.append(hold_id)
            if len(post_many(uow, postings, hold_ids)) != len(postings):
                raise NotAllHeld
    except NotAllHeld:
        return False
    for (account, action, cents, _, _), item in zip(postings, items, strict=True):
        amount = rows[(item.card_id, item.operation_id)][2]
        held[account] = held.get(account, 0) - amount
        if action == "capture":
            deltas[account] = deltas.get(account, 0) - cents
    return True


def holds_among(uow: Any, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The holds of these (card, operation) pairs that exist: pair → HoldRow (id, account, cents, status)."""
    found: dict[tuple[str, str], Any] = {}
    if not pairs:
        return found
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql(
            "SELECT h.card_id, h.operation_id, h.id, h.account_id, h.amount_cents, h.status FROM holds h "
            "JOIN unnest(%(card)s::text[], %(op)s::text[]) AS v(card, op) "
            "ON h.card_id = v.card AND h.operation_id = v.op",
            {"card": [c for c, _ in pairs], "op": [o for _, o in pairs]})
        rows = cursor.fetchall()
    else:
        rows = []
        for chunk in _chunks(pairs, SQLITE_CHUNK):
            values = ",".join(["(?,?)"] * len(chunk))
            # CROSS JOIN keeps the pairs the outer loop: one index search each (a row-value IN scans the table).
            rows += uow.execute_sql(
                "SELECT h.card_id, h.operation_id, h.id, h.account_id, h.amount_cents, h.status "
                f"FROM (VALUES {values}) AS v CROSS JOIN holds h "
                "ON h.card_id = v.column1 AND h.operation_id = v.column2",
                [v for pair in chunk for v in pair]).fetchall()
    for card, op, *row in rows:
        found[(card, op)] = HoldRow(*row)
    return found


def _settle_holds(uow: Any, items: list[Settlement]) -> dict[tuple[str, str], tuple[int, str, int]]:
    """Set the held ones of these holds captured/released; (card, operation) → (hold id, account, amount)."""
    now = uow.now_value()
    status = {"capture": "captured", "release": "released"}
    if uow.dialect_name == "postgresql":
        cursor = uow.execute_sql(
            "UPDATE holds SET status = v.s, captured_cents = v.c, updated_at = %(now)s "
            "FROM unnest(%(card)s::text[], %(op)s::text[], %(s)s::text[], %(c)s::bigint[]) AS v(card, op, s, c) "
            "WHERE holds.card_id = v.card AND holds.operation_id = v.op AND holds.status = 'held' "
            "RETURNING holds.card_id, holds.operation_id, holds.id, holds.account_id, holds.amount_cents",
            {"now": now, "card": [i.card_id for i in items], "op": [i.operation_id for i in items],
             "s": [status[i.action] for i in items], "c": [i.cents if i.action == "capture" else None for i in items]})
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in cursor.fetchall()}
    found: dict[tuple[str, str], tuple[int, str, int]] = {}
    for chunk in _chunks(items, SQLITE_CHUNK):
        values = ",".join(["(?,?,?,?)"] * len(chunk))
        cursor = uow.execute_sql(
            "UPDATE holds SET status = v.column3, captured_cents = v.column4, updated_at = ? "
            f"FROM (VALUES {values}) AS v WHERE holds.card_id = v.column1 AND holds.operation_id = v.column2 "
            "AND holds.status = 'held' RETURNING holds.card_id, holds.operation_id, holds.id, holds.account_id, "
            "holds.amount_cents",
            [now, *(v for i in chunk for v in (i.card_id, i.operation_id, status[i.action],
                                               i.cents if i.action == "capture" else None))])
        found.update({(r[0], r[1]): (r[2], r[3], r[4]) for r in cursor.fetchall()})
    return found


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
