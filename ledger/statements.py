"""The ledger's hot SQL, compiled once per dialect from Core and run on the DB-API cursor.

Building, cache-keying and executing a Core statement costs ~5x the SQL itself on SQLite; the
benchmark wants thousands of events/s, so the per-event statements skip that layer. Table and
column names still come from `schema`, and every statement here is plain SQL both backends run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, and_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hookstream.ledger.schema import accounts, card_links, holds, inbox, postings, wallet_links

# Bind names must differ from column names in INSERT/UPDATE, hence the `p_` prefix.
P = bindparam


@dataclass(frozen=True, slots=True)
class Prepared:
    """SQL text plus how to lay out its parameters for the driver."""

    text: str
    order: tuple[str, ...] | None  # positional drivers (sqlite3 qmark); None: pass a mapping
    defaults: Mapping[str, Any]  # values compiled into the statement (LIMIT 1, literal(1))

    def params(self, given: Mapping[str, Any]) -> Any:
        merged = {**self.defaults, **given} if self.defaults else given
        if self.order is None:
            return merged
        return tuple(merged.get(name) for name in self.order)


def _prepare(statement: Any, dialect: Dialect, column_keys: Iterable[str] | None = None) -> Prepared:
    compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
    defaults = {name: value for name, value in compiled.params.items()
                if not compiled.binds[name].required and value is not None}
    order = tuple(compiled.positiontup or ()) if dialect.positional else None
    return Prepared(str(compiled), order, defaults)


@dataclass(frozen=True)
class Statements:
    claim: Prepared
    set_outcome: Prepared
    ensure_account: Prepared
    account_exists: Prepared
    account_for_card: Prepared
    account_for_wallet: Prepared
    card_state: Prepared
    cards_for_account: Prepared
    set_frozen: Prepared
    set_blocked: Prepared
    find_hold: Prepared
    find_hold_for_update: Prepared
    lock_card_account: Prepared
    reserve: Prepared
    available: Prepared
    insert_hold: Prepared
    settle_hold: Prepared
    post: Prepared
    posted: Prepared
    move: Prepared
    balance: Prepared
    link_card: Any  # Core (not per-event): upserts
    link_wallet: Any


CARD_COLUMNS = (card_links.c.card_id, card_links.c.account_id, card_links.c.approval_method,
                card_links.c.frozen, card_links.c.blocked)

INBOX_KEYS = ("processor", "dedup_key", "topic", "partition", "offset", "outcome", "processed_at")
ACCOUNT_KEYS = ("id", "currency", "balance_cents", "held_cents", "created_at", "updated_at")
HOLD_KEYS = ("account_id", "card_id", "operation_id", "amount_cents", "captured_cents", "status",
             "created_at", "updated_at")
POSTING_KEYS = ("account_id", "kind", "amount_cents", "dedup_key", "memo", "hold_id", "created_at")

_cache: dict[tuple[str, str], Statements] = {}


def statements_for(dialect: Dialect) -> Statements:
    """The prepared statements for this dialect (SQLite or Postgres), built on first use."""
    key = (dialect.name, dialect.driver)
    if key not in _cache:
        _cache[key] = _build(dialect)
    return _cache[key]


def _build(dialect: Dialect) -> Statements:
    ins: Any = pg_insert if dialect.name == "postgresql" else sqlite_insert

    def prep(statement: Any, column_keys: Iterable[str] | None = None) -> Prepared:
        return _prepare(statement, dialect, column_keys)

    link_card = ins(card_links)
    link_card = link_card.on_conflict_do_update(
        index_elements=[card_links.c.card_id],
        set_={"account_id": link_card.excluded.account_id,
              # a relink without approval_method keeps the stored one (the platform never changes it)
              "approval_method": func.coalesce(link_card.excluded.approval_method,
                                               card_links.c.approval_method),
              "updated_at": link_card.excluded.updated_at},
    )
    link_wallet = ins(wallet_links)
    link_wallet = link_wallet.on_conflict_do_update(
        index_elements=[wallet_links.c.wallet_id], set_={"account_id": link_wallet.excluded.account_id})
    find_hold = select(holds.c.id, holds.c.account_id, holds.c.amount_cents, holds.c.status).where(
        and_(holds.c.card_id == P("p_card_id"), holds.c.operation_id == P("p_operation_id")))
    return Statements(
        claim=prep(ins(inbox).on_conflict_do_nothing(index_elements=[inbox.c.processor, inbox.c.dedup_key])
                   .returning(inbox.c.processor), INBOX_KEYS),
        set_outcome=prep(update(inbox).where(inbox.c.processor == P("p_processor"),
                                             inbox.c.dedup_key == P("p_dedup_key"))
                         .values(outcome=P("p_outcome"))),
        ensure_account=prep(ins(accounts).on_conflict_do_nothing(index_elements=[accounts.c.id])
                            .returning(accounts.c.id), ACCOUNT_KEYS),
        account_exists=prep(select(literal(1)).where(accounts.c.id == P("p_account_id"))),
        account_for_card=prep(select(card_links.c.account_id).where(card_links.c.card_id == P("p_card_id"))),
        account_for_wallet=prep(select(wallet_links.c.account_id)
                                .where(wallet_links.c.wallet_id == P("p_wallet_id"))),
        card_state=prep(select(*CARD_COLUMNS).where(card_links.c.card_id == P("p_card_id"))),
        cards_for_account=prep(select(*CARD_COLUMNS).where(card_links.c.account_id == P("p_account_id"))
                               .order_by(card_links.c.card_id)),
        set_frozen=prep(update(card_links).where(card_links.c.card_id == P("p_card_id"))
                        .values(frozen=P("p_flag"), updated_at=P("p_now"))),
        set_blocked=prep(update(card_links).where(card_links.c.card_id == P("p_card_id"))
                         .values(blocked=P("p_flag"), updated_at=P("p_now"))),
        find_hold=prep(find_hold),
        # FOR UPDATE renders nothing on SQLite, where BEGIN IMMEDIATE already serializes writers.
        find_hold_for_update=prep(find_hold.with_for_update()),
        lock_card_account=prep(select(accounts.c.id).where(
            accounts.c.id == select(card_links.c.account_id).where(card_links.c.card_id == P("p_card_id"))
            .scalar_subquery()).with_for_update()),
        # The whole overspending guard: one conditional UPDATE, atomic on both backends.
        reserve=prep(update(accounts)
                     .where(accounts.c.id == P("p_account_id"),
                            accounts.c.balance_cents - accounts.c.held_cents >= P("p_cents"))
                     .values(held_cents=accounts.c.held_cents + P("p_cents"), updated_at=P("p_now"))
                     .returning(accounts.c.balance_cents - accounts.c.held_cents)),
        available=prep(select(accounts.c.balance_cents - accounts.c.held_cents)
                       .where(accounts.c.id == P("p_account_id"))),
        insert_hold=prep(ins(holds).on_conflict_do_nothing(index_elements=[holds.c.card_id,
                                                                          holds.c.operation_id])
                         .returning(holds.c.id), HOLD_KEYS),
        settle_hold=prep(update(holds).where(holds.c.id == P("p_hold_id"))
                         .values(status=P("p_status"), captured_cents=P("p_captured"), updated_at=P("p_now"))),
        post=prep(ins(postings).on_conflict_do_nothing(index_elements=[postings.c.kind, postings.c.dedup_key])
                  .returning(postings.c.id), POSTING_KEYS),
        posted=prep(select(literal(1)).where(postings.c.dedup_key == P("p_dedup_key"),
                                             or_(postings.c.kind == P("p_kind1"),
                                                 postings.c.kind == P("p_kind2"))).limit(1)),
        move=prep(update(accounts).where(accounts.c.id == P("p_account_id"))
                  .values(balance_cents=accounts.c.balance_cents + P("p_balance"),
                          held_cents=accounts.c.held_cents + P("p_held"), updated_at=P("p_now"))),
        balance=prep(select(accounts.c.balance_cents, accounts.c.held_cents)
                     .where(accounts.c.id == P("p_account_id"))),
        link_card=link_card,
        link_wallet=link_wallet,
    )
