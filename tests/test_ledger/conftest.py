"""A ledger per test, on each backend (see `ledger_url` in fixtures/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from hookstream.ledger import Ledger


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    books = Ledger(ledger_url, auto_upgrade=True)
    try:
        yield books
    finally:
        books.close()


@pytest.fixture
def funded(ledger: Ledger) -> Ledger:
    """Account "acct" with card "card-1" linked and 1,000.00 credited."""
    with ledger.unit_of_work() as uow:
        uow.link_card("card-1", "acct", "WEBHOOK")
        uow.credit("acct", Decimal("1000.00"), "deposit-1")
    return ledger
