"""The read-only ledger port a deciding processor sees: `decide(event, view) -> Effects`.

It reads through the lane batch's transaction, and a balance or a hold includes what the batch's
earlier decisions staged (they commit together), so two deposits to one account in one batch see each
other, and a clearing after a reversal in one batch sees the hold released. It cannot write: what a
decision wants done it returns as `Effects`. Its one lock (`find_hold`) is taken so that what it read
still holds when the batch applies it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hookstream.domain.card_events import Hold
from hookstream.ledger import bulk
from hookstream.ledger.models import Balance, CardState
from hookstream.ledger.money import from_cents


class LedgerView:
    """What a decision may read: links, cards, balances (as of this batch)."""

    def __init__(self, batch: Any, known_accounts: set[str]) -> None:
        self._batch = batch
        self._known = known_accounts  # accounts are never deleted: once seen, always there (per process)
        self._wallets: dict[str, str | None] = {}  # links can change between batches: per batch only
        self._cards: dict[str, CardState | None] = {}
        self._account_cards: dict[str, list[CardState]] = {}
        self._holds: dict[tuple[str, str], Any] = {}  # (card, operation) → hold row or None, read ahead

    def account_exists(self, account_id: str) -> bool:
        if account_id in self._known:
            return True
        found = self._batch.unit().account_exists(account_id)
        if found:
            self._known.add(account_id)
        return found

    def account_for_wallet(self, wallet_id: str) -> str | None:
        if wallet_id not in self._wallets:
            self._wallets[wallet_id] = self._batch.unit().account_for_wallet(wallet_id)
        return self._wallets[wallet_id]

    def card_state(self, card_id: str) -> CardState | None:
        """The card's link and flags, as the batch's staged decisions leave them."""
        if card_id not in self._cards:
            self._cards[card_id] = self._batch.unit().card_state(card_id)
        state = self._cards[card_id]
        staged = self._batch.flags.get(card_id)
        if state is None or staged is None:
            return state
        frozen, blocked = staged
        return replace(state, frozen=state.frozen if frozen is None else frozen,
                       blocked=state.blocked if blocked is None else blocked)

    def account_for_card(self, card_id: str) -> str | None:
        state = self.card_state(card_id)
        return state.account_id if state is not None else None

    def cards_for_account(self, account_id: str) -> list[CardState]:
        if account_id not in self._account_cards:
            self._account_cards[account_id] = self._batch.unit().cards_for_account(account_id)
        return list(self._account_cards[account_id])

    def balance(self, account_id: str) -> Balance:
        """The account's balance as it will be once the batch's staged postings commit."""
        stored = self._batch.unit().balance(account_id)
        delta = self._batch.deltas.get(account_id, 0)
        if not delta:
            return stored
        balance = stored.balance + from_cents(delta)
        return Balance(balance, stored.held, balance - stored.held)

    def find_hold(self, card_id: str, operation_ids: tuple[str, ...], *, lock_on_miss: bool) -> Hold | None:
        """The first of `operation_ids` with a held hold, else the first id's settled hold, else None.

        With `lock_on_miss`, a miss takes the card account's row lock (Postgres; on SQLite the batch holds
        the write lock already) and looks again: a decision placing a hold takes that lock first, so one
        committing right now is waited for and seen, and a miss then stays a miss until the batch commits
        (a follow-up closes the operation on it). A found hold's row is locked when the batch settles it.
        """
        for lock in (False, True) if lock_on_miss else (False,):
            unit = self._batch.unit()
            if lock:
                unit.lock_card_account(card_id)
            for operation in operation_ids:
                pair = (card_id, operation)
                row = self._holds[pair] if not lock and pair in self._holds else unit.hold(card_id, operation)
                if row is None:
                    continue
                status = self._batch.holds.get((card_id, operation), row.status)
                if status == "held" or operation == operation_ids[0]:
                    return Hold(operation, status, row.account_id, from_cents(row.amount_cents))
        return None

    def preload_holds(self, pairs: list[tuple[str, str]]) -> None:
        """Read these (card, operation) holds in one statement; `find_hold`'s first look uses them."""
        wanted = [p for p in dict.fromkeys(pairs) if p not in self._holds]
        if wanted:
            found = bulk.holds_among(self._batch.unit(), wanted)
            for pair in wanted:
                self._holds[pair] = found.get(pair)

    def recorded_answer(self, dedup_key: str) -> str | None:
        """The response code the receiver recorded for this authorization's first answer (None: none)."""
        return self._batch.unit().recorded_answer(dedup_key)
