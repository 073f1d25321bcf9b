"""The scripted dev scenario as data: what to seed and link, the steps to play, what must then be true."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hookstream.dev.summary import Snapshot

ACCOUNT = "acct-dev"
CARD = "crd_dev_main"  # WEBHOOK card: the receiver answers its authorizations from the ledger
TOPUP_CARD = "crd_dev_topup"  # TOP_UP card: deposits set its virtual balance to the ledger balance
VELOCITY_CARD = "crd_dev_velocity"  # blocked by velocity, so the main card stays usable
WALLET = "wlt_dev"
TREASURY_ACCOUNT, TREASURY_WALLET = "acc_dev", "twl_dev"
SIMULATE_KEY = "sandbox-key-level-2"  # simulate endpoints need level 2 (built-in sandbox key)
API_KEY = "sandbox-key-level-3"  # what the processors call the API with (built-in sandbox key)
USDC = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"

# Merged into the sandbox's built-in seed (POST /_sandbox/seed?replace=false): keys and company stay.
SEED: dict[str, Any] = {
    "cards": [
        {"id": CARD, "card_holder_name": "Dev Main", "approval_method": "WEBHOOK", "forwarded_3ds_type": "FORWARDED",
         "last4": "4000", "metadata": {"account": ACCOUNT}},
        {"id": TOPUP_CARD, "card_holder_name": "Dev TopUp", "approval_method": "TOP_UP", "virtual_balance": "0",
         "last4": "4001", "metadata": {"account": ACCOUNT}},
        {"id": VELOCITY_CARD, "card_holder_name": "Dev Velocity", "approval_method": "WEBHOOK",
         "last4": "4002", "metadata": {"account": ACCOUNT}},
    ],
    "virtual_wallets": [
        {"id": WALLET, "alias": "dev", "blockchain": "POLYGON",
         "wallet_address": "0x5555555555555555555555555555555555555555",
         "balances": [{"name": "USD Coin", "symbol": "USDC", "balance": "0", "token_address": USDC}]},
    ],
    "treasury_wallets": [
        {"account_id": TREASURY_ACCOUNT, "id": TREASURY_WALLET, "blockchain": "POLYGON",
         "wallet_address": "0x6666666666666666666666666666666666666666",
         "balances": [{"name": "USD Coin", "symbol": "USDC", "balance": "1000", "token_address": USDC}]},
    ],
}

# `hookstream ledger link` arguments, run once the schema exists.
LINKS: list[list[str]] = [
    ["--card", CARD, "--account", ACCOUNT, "--approval-method", "WEBHOOK"],
    ["--card", TOPUP_CARD, "--account", ACCOUNT, "--approval-method", "TOP_UP"],
    ["--card", VELOCITY_CARD, "--account", ACCOUNT, "--approval-method", "WEBHOOK"],
    ["--wallet", WALLET, "--account", ACCOUNT],
]


@dataclass(frozen=True)
class Check:
    """One promise about the stack, read from a snapshot: `actual(snapshot)` must equal `expected`."""

    label: str
    expected: str
    actual: Callable[[Snapshot], str]

    def holds(self, snap: Snapshot) -> bool:
        return self.actual(snap) == self.expected


def _balance(field_name: str, account: str = ACCOUNT) -> Callable[[Snapshot], str]:
    def read(snap: Snapshot) -> str:
        b = snap.balances.get(account)
        return "-" if b is None else f"{getattr(b, field_name):.2f}"
    return read


def _response_code(n: int, card: str = CARD) -> Callable[[Snapshot], str]:
    """The response code of the n-th (0-based) transaction of `card`, once decided."""
    def read(snap: Snapshot) -> str:
        txns = [t for t in snap.transactions if t.get("card_id") == card]
        if len(txns) <= n or txns[n].get("status") == "pending":
            return "-"
        return str(txns[n].get("response_code"))
    return read


def _processed(processor: str, outcome: str) -> Callable[[Snapshot], str]:
    return lambda snap: str(snap.processed.get(processor, {}).get(outcome, 0))


def _at_least(n: int, read: Callable[[Snapshot], int]) -> Callable[[Snapshot], str]:
    return lambda snap: f">={n}" if read(snap) >= n else str(read(snap))


def balance_is(amount: str, held: str = "0.00") -> list[Check]:
    return [Check(f"{ACCOUNT} balance", amount, _balance("balance")),
            Check(f"{ACCOUNT} held", held, _balance("held"))]


def _three_ds_approved(snap: Snapshot) -> int:
    return sum(1 for r in snap.three_ds
               if r.get("card_id") == CARD and r.get("approve") is True and r.get("outcome") == "ACCEPTED")


def _card_blocked(snap: Snapshot) -> str:
    return str(snap.cards.get(VELOCITY_CARD, {}).get("blocked", "-")).lower()


def _topup_balance(snap: Snapshot) -> str:
    value = snap.sandbox_cards.get(TOPUP_CARD, {}).get("virtual_balance")
    return "-" if value is None else f"{Decimal(str(value)):.2f}"


def _dead_letters(snap: Snapshot) -> str:
    return str(sum(snap.dlq.values()))


@dataclass(frozen=True)
class Step:
    """One thing the platform does, and what must be true before the next step (bounded wait)."""

    title: str
    action: str  # "simulate/<authorize|clearing|refund|reversal>", "trigger/<kind>", "expired_3ds"
    body: dict[str, Any]
    until: list[Check] = field(default_factory=list)


STEPS: list[Step] = [
    Step("deposit 100.00 to the linked wallet", "trigger/deposit",
         {"product": "virtual_wallets", "wallet_id": WALLET, "amount": "100.00", "net_amount": "100.00"},
         balance_is("100.00") + [Check(f"{TOPUP_CARD} virtual balance (sandbox)", "100.00", _topup_balance)]),
    Step("authorization 42.50 → approved 00", "simulate/authorize", {"card_id": CARD, "bill_amount": 42.50},
         [Check("authorization 42.50 response_code", "00", _response_code(0))] + balance_is("100.00", "42.50")),
    Step("clearing at 42.50 → captured", "simulate/clearing", {"card_id": CARD, "bill_amount": 42.50},
         balance_is("57.50")),
    Step("authorization 60.00 → declined 51", "simulate/authorize", {"card_id": CARD, "bill_amount": 60.00},
         [Check("authorization 60.00 response_code", "51", _response_code(1))] + balance_is("57.50")),
    Step("authorization 10.00 → approved 00", "simulate/authorize", {"card_id": CARD, "bill_amount": 10.00},
         [Check("authorization 10.00 response_code", "00", _response_code(2))] + balance_is("57.50", "10.00")),
    Step("reversal 10.00 → hold released", "simulate/reversal", {"card_id": CARD, "bill_amount": 10.00},
         balance_is("57.50")),
    Step("refund 12.50 of the cleared purchase → credited", "simulate/refund", {"card_id": CARD, "bill_amount": 12.50},
         balance_is("70.00")),
    Step("3DS challenge 25.00 → answered approve", "trigger/3ds",
         {"card_id": CARD, "transaction_amount": "25.00", "merchant_name": "Dev Books"},
         [Check("3DS challenges approved (sandbox)", ">=1", _at_least(1, _three_ds_approved))]),
    Step("3DS challenge older than the TTL → expired", "expired_3ds",
         {"card_id": CARD, "transaction_amount": "30.00", "age_s": 600},
         [Check("three-ds expired", ">=1",
                _at_least(1, lambda s: s.processed.get("three-ds", {}).get("expired", 0)))]),
    Step("treasury transfer FAILED → alert", "trigger/transfer",
         {"wallet_id": TREASURY_WALLET, "amount": "250.00", "status": "failed", "reason": "Insufficient gas"},
         [Check("treasury alerts", ">=1", _at_least(1, lambda s: s.treasury_alerts))]),
    Step("velocity block → card-status records it", "trigger/velocity_block",
         {"card_id": VELOCITY_CARD, "max_authorizations": 3, "time_window_seconds": 60},
         [Check(f"{VELOCITY_CARD} blocked (ledger)", "true", _card_blocked)]),
]

# What must hold at the end of the scenario (checked once more after the last step).
EXPECTED: list[Check] = [
    Check(f"{ACCOUNT} balance", "70.00", _balance("balance")),
    Check(f"{ACCOUNT} held", "0.00", _balance("held")),
    Check(f"{ACCOUNT} available", "70.00", _balance("available")),
    Check(f"{TOPUP_CARD} virtual balance (sandbox)", "100.00", _topup_balance),
    Check("authorizations approved 00", "2", lambda s: str(s.decisions.get("00", 0))),
    Check("authorizations declined 51", "1", lambda s: str(s.decisions.get("51", 0))),
    Check("3DS challenges approved (sandbox)", "1", lambda s: str(_three_ds_approved(s))),
    Check("three-ds expired", "1", _processed("three-ds", "expired")),
    Check("treasury alerts", "1", lambda s: str(s.treasury_alerts)),
    Check(f"{VELOCITY_CARD} blocked (ledger)", "true", _card_blocked),
    Check("dead letters", "0", _dead_letters),
]

ACCOUNTS = [ACCOUNT]
CARDS = [CARD, TOPUP_CARD, VELOCITY_CARD]
