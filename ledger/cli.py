"""`hookstream db …` and `hookstream ledger …`: schema upgrades and operator access to the books."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from hookstream.ledger.errors import LedgerError
from hookstream.ledger.money import to_cents
from hookstream.ledger.store import Ledger
from hookstream.settings import get_settings

APPROVAL_METHODS = ("TOP_UP", "WEBHOOK", "DEFI", "NONE", "TOPUP")

database_url_option = click.option(
    "--database-url", metavar="URL", default=None,
    help="SQLAlchemy URL of the ledger (sqlite:///path.db or postgresql+psycopg://…). "
         "Default: HOOKSTREAM_DATABASE_URL.")


@contextmanager
def _ledger(database_url: str | None, *, auto_upgrade: bool | None = None) -> Iterator[Ledger]:
    url = database_url or get_settings().database_url
    try:
        books = Ledger(url, auto_upgrade=auto_upgrade)
    except (ValueError, ImportError) as exc:  # bad URL, driver missing
        raise click.ClickException(f"cannot open ledger database: {exc}") from None
    try:
        yield books
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        books.close()


class DecimalAmount(click.ParamType):
    """A money amount: a plain decimal with at most two places, e.g. 100 or 42.50."""

    name = "AMOUNT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a decimal amount (example: 42.50)", param, ctx)
        try:
            to_cents(amount)
        except LedgerError as exc:
            self.fail(str(exc), param, ctx)
        if amount <= 0:
            self.fail("amount must be greater than zero", param, ctx)
        return amount


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


# --- db ----------------------------------------------------------------------------------------------
@click.group()
def db() -> None:
    """The ledger database schema."""


@db.command("upgrade")
@database_url_option
def db_upgrade(database_url: str | None) -> None:
    """Create the ledger schema or migrate it to the latest version. Safe to run repeatedly."""
    with _ledger(database_url, auto_upgrade=False) as ledger:
        before = ledger.schema_version()
        applied = ledger.upgrade()
        for migration in applied:
            click.echo(f"applied {migration.version}: {migration.description}")
        after = applied[-1].version if applied else before
        state = f"upgraded from version {before}" if applied else "already up to date"
        click.echo(f"ledger schema at version {after} ({state})")


@db.command("version")
@database_url_option
def db_version(database_url: str | None) -> None:
    """Print the applied schema version and the version this code expects."""
    from hookstream.ledger.migrations import LATEST

    with _ledger(database_url, auto_upgrade=False) as ledger:
        click.echo(f"applied {ledger.schema_version()}, expected {LATEST}")


# --- ledger ------------------------------------------------------------------------------------------
@click.group()
def ledger() -> None:
    """The client's books: link cards and wallets to accounts, read balances and statements."""


@ledger.command("link")
@click.option("--card", "card_id", metavar="CARD_ID", help="CryptoMate card id to link.")
@click.option("--wallet", "wallet_id", metavar="WALLET_ID", help="CryptoMate wallet id to link.")
@click.option("--account", "account_id", required=True, metavar="ACCOUNT",
              help="Ledger account id; created if it does not exist.")
@click.option("--approval-method", type=click.Choice(APPROVAL_METHODS, case_sensitive=False),
              default=None, help="The card's approval method (cards only).")
@database_url_option
def ledger_link(card_id: str | None, wallet_id: str | None, account_id: str,
                approval_method: str | None, database_url: str | None) -> None:
    """Link a card (--card) or a deposit wallet (--wallet) to an account.

    Card events then move that account's money; deposits to the wallet credit it.
    """
    if bool(card_id) == bool(wallet_id):
        raise click.UsageError("give exactly one of --card or --wallet")
    if approval_method and not card_id:
        raise click.UsageError("--approval-method applies to --card only")
    if not account_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--account")
    method = approval_method.upper().replace("TOPUP", "TOP_UP") if approval_method else None
    with _ledger(database_url) as books, books.unit_of_work() as uow:
        if card_id:
            state = uow.link_card(card_id, account_id, method)
            click.echo(f"card {state.card_id} → account {state.account_id}"
                       f" (approval method {state.approval_method or 'unknown'})")
        else:
            assert wallet_id is not None
            uow.link_wallet(wallet_id, account_id)
            click.echo(f"wallet {wallet_id} → account {account_id}")


@ledger.command("balance")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (amounts as strings).")
@database_url_option
def ledger_balance(account_id: str, as_json: bool, database_url: str | None) -> None:
    """Print an account's balance, held amount and available amount."""
    with _ledger(database_url) as books, books.unit_of_work(read_only=True) as uow:
        b = uow.balance(account_id)
    if as_json:
        click.echo(json.dumps({"account": account_id, "balance": _money(b.balance),
                               "held": _money(b.held), "available": _money(b.available)}))
    else:
        click.echo(f"account   {account_id}\nbalance   {_money(b.balance)}\n"
                   f"held      {_money(b.held)}\navailable {_money(b.available)}")


@ledger.command("statement")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one posting each.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the most recent N postings.")
@database_url_option
def ledger_statement(account_id: str, as_json: bool, limit: int | None, database_url: str | None) -> None:
    """Print an account's postings, oldest first."""
    with _ledger(database_url) as books, books.unit_of_work(read_only=True) as uow:
        lines = uow.statement(account_id, limit=limit)
    for p in lines:
        if as_json:
            click.echo(json.dumps({"id": p.id, "created_at": p.created_at.isoformat(), "kind": p.kind,
                                   "amount": _money(p.amount), "balance_effect": _money(p.balance_effect),
                                   "dedup_key": p.dedup_key, "memo": p.memo, "hold_id": p.hold_id}))
        else:
            click.echo(f"{p.created_at:%Y-%m-%d %H:%M:%S} {p.kind:8} {_money(p.amount):>12}  "
                       f"{p.dedup_key}{'  ' + p.memo if p.memo else ''}")
    if not lines and not as_json:
        click.echo("(no postings)")


@ledger.command("credit")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("amount", type=DecimalAmount())
@click.option("--ref", required=True, help="Operator reference; crediting the same ref twice is a no-op.")
@click.option("--memo", default=None, help="Free text stored on the posting.")
@click.option("--create", is_flag=True, help="Create the account if it does not exist.")
@database_url_option
def ledger_credit(account_id: str, amount: Decimal, ref: str, memo: str | None, create: bool,
                  database_url: str | None) -> None:
    """Credit AMOUNT to ACCOUNT, for manual adjustments and demo seeding.

    AMOUNT is a decimal in USD with at most two places, for example 100 or 42.50.
    """
    with _ledger(database_url) as books, books.unit_of_work() as uow:
        if create:
            uow.ensure_account(account_id)
        elif not uow.account_exists(account_id):
            raise click.ClickException(
                f"unknown account {account_id!r}: link a card or wallet to it first, or pass --create")
        result = uow.credit(account_id, amount, f"operator:{ref}", memo=memo or f"operator credit {ref}")
        b = uow.balance(account_id)
    verb = "credited" if result.posted else "already credited (same --ref), nothing changed:"
    click.echo(f"{verb} {_money(result.amount)} to {account_id}; balance {_money(b.balance)}, "
               f"available {_money(b.available)}")


@ledger.command("card")
@click.argument("card_id", metavar="CARD_ID")
@click.option("--freeze/--unfreeze", "frozen", default=None, help="Set or clear the frozen flag.")
@click.option("--block/--unblock", "blocked", default=None, help="Set or clear the blocked flag.")
@database_url_option
def ledger_card(card_id: str, frozen: bool | None, blocked: bool | None, database_url: str | None) -> None:
    """Show a linked card; with flags, freeze/unfreeze or block/unblock it for authorizations."""
    with _ledger(database_url) as books, books.unit_of_work(read_only=frozen is None and blocked is None) as uow:
        state = uow.set_card_state(card_id, frozen=frozen, blocked=blocked)
    if state is None:
        raise click.ClickException(f"card {card_id!r} is not linked; use `hookstream ledger link --card`")
    click.echo(f"card {state.card_id} account {state.account_id} approval_method "
               f"{state.approval_method or '-'} frozen={str(state.frozen).lower()} "
               f"blocked={str(state.blocked).lower()} active={str(state.active).lower()}")
