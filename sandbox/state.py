"""The sandbox platform's in-memory world: company, keys, cards, wallets, challenges, transactions."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

COMPANY_ID = "5f0c2b6e-9d3a-4c1e-8b7a-0a1b2c3d4e5f"
USDC_POLYGON = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"

# What `hookstream sandbox` serves when no --seed is given. Keys are sandbox-only values.
DEFAULT_SEED: dict[str, Any] = {
    "company": {"id": COMPANY_ID, "name": "Sandbox Company", "email": "ops@sandbox.test",
                "webhook_url": None, "webhook_key": "sandbox-webhook-key"},
    "api_keys": [
        {"key": "sandbox-key-level-1", "level": 1},
        {"key": "sandbox-key-level-2", "level": 2},
        {"key": "sandbox-key-level-3", "level": 3},
    ],
    "cards": [
        {"id": "crd_webhook", "card_holder_name": "Webhook Holder", "approval_method": "WEBHOOK",
         "forwarded_3ds_type": "FORWARDED", "last4": "4242", "metadata": {"account": "acct-1"},
         "email": "holder@sandbox.test", "phone_country_code": 1, "phone": "5550100"},
        {"id": "crd_topup", "card_holder_name": "TopUp Holder", "approval_method": "TOP_UP",
         "virtual_balance": "100.00", "last4": "1111", "metadata": {"account": "acct-2"}},
        {"id": "crd_defi", "card_holder_name": "DeFi Holder", "approval_method": "DEFI", "last4": "0005",
         "metadata": {"account": "0xabc0000000000000000000000000000000000001"}},
    ],
    "virtual_wallets": [
        {"id": "wlt_1", "alias": "main", "blockchain": "POLYGON",
         "wallet_address": "0x1111111111111111111111111111111111111111",
         "balances": [{"name": "USD Coin", "symbol": "USDC", "balance": "1000.00", "token_address": USDC_POLYGON}]},
    ],
    "holding_wallets": [
        {"id": "hld_polygon", "alias": "holding", "blockchain": "POLYGON",
         "wallet_address": "0x2222222222222222222222222222222222222222",
         "balances": [{"name": "USD Coin", "symbol": "USDC", "balance": "5000.00", "token_address": USDC_POLYGON}]},
    ],
    "treasury_wallets": [
        {"account_id": "acc_1", "id": "twl_1", "blockchain": "POLYGON",
         "wallet_address": "0x3333333333333333333333333333333333333333",
         "balances": [{"name": "USD Coin", "symbol": "USDC", "balance": "10000.00", "token_address": USDC_POLYGON},
                      {"name": "Polygon", "symbol": "POL", "balance": "50.00", "token_address": ""}]},
    ],
    "card_holding": {"warranty_balance": "5000.00", "blockchain": "POLYGON",
                     "deposit_address": "0x4444444444444444444444444444444444444444",
                     "deposit_tokens": {"USDC": USDC_POLYGON}},
    "velocity_rules": [],
}


class SeedError(ValueError):
    """A seed document that cannot be loaded."""


def dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except Exception:
        raise SeedError(f"not an amount: {value!r}") from None


@dataclass
class Card:
    id: str
    card_holder_name: str = "Card Holder"
    type: str = "VIRTUAL"
    last4: str = "0000"
    status: str = "ACTIVE"
    approval_method: str = "WEBHOOK"
    daily_limit: Decimal | None = None
    weekly_limit: Decimal | None = None
    monthly_limit: Decimal | None = None
    forwarded_3ds_type: str = "AUTOMATIC"
    email: str | None = None
    phone_country_code: int | None = None
    phone: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    virtual_balance: Decimal = Decimal("0")

    def to_api(self) -> dict[str, Any]:
        """The GET /cards/virtual-cards/{cardId} shape (platform §5.3)."""
        return {
            "id": self.id, "card_holder_name": self.card_holder_name, "type": self.type, "last4": self.last4,
            "status": self.status, "approval_method": self.approval_method,
            "daily_limit": self.daily_limit, "weekly_limit": self.weekly_limit,
            "monthly_limit": self.monthly_limit, "forwarded_3ds_type": self.forwarded_3ds_type,
            "meta": {"email": self.email,
                     "otp_phone_number": {"dial_code": self.phone_country_code, "phone_number": self.phone}},
        }


@dataclass
class Wallet:
    """A virtual, holding or treasury wallet; `balances` is the platform's token list."""

    id: str
    blockchain: str = "POLYGON"
    wallet_address: str = ""
    alias: str | None = None
    client_id: str | None = None
    enabled: bool = True
    account_id: str | None = None
    balances: list[dict[str, Any]] = field(default_factory=list)
    virtual_balance: Decimal = Decimal("0")

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "alias": self.alias, "client_id": self.client_id,
                "wallet_address": self.wallet_address, "blockchain": self.blockchain, "enabled": self.enabled}

    def token(self, token_address: str | None) -> dict[str, Any]:
        """The balance entry of a token (created at zero when unknown)."""
        address = (token_address or "").lower()
        for entry in self.balances:
            if (entry.get("token_address") or "").lower() == address:
                return entry
        entry = {"name": None, "symbol": None, "balance": Decimal("0"), "token_address": token_address or ""}
        self.balances.append(entry)
        return entry


@dataclass
class Transaction:
    """One card transaction's lifecycle as the sandbox tracks it."""

    id: str
    card_id: str
    bill_amount: Decimal
    merchant: dict[str, Any]
    channel: str
    created_at: str
    at: float  # sandbox clock when authorized (velocity and limit windows)
    status: str = "pending"  # pending | approved | declined | cleared | reversed | refunded
    response_code: str | None = None
    decline_reason: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "card_id": self.card_id, "bill_amount": self.bill_amount,
                "status": self.status, "response_code": self.response_code,
                "decline_reason": self.decline_reason, "created_at": self.created_at,
                "merchant": self.merchant, "channel": self.channel}


@dataclass
class Challenge:
    code: str
    card_id: str
    at: float
    data: dict[str, Any]
    answer: bool | None = None


@dataclass
class Company:
    id: str = COMPANY_ID
    name: str = "Sandbox Company"
    email: str | None = None
    webhook_url: str | None = None
    webhook_key: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "email": self.email, "webhook_url": self.webhook_url,
                "webhook_key": self.webhook_key}


class State:
    """Everything the emulated platform knows. Mutated only from the sandbox's event loop."""

    def __init__(self) -> None:
        self.company = Company()
        self.api_keys: dict[str, int] = {}
        self.cards: dict[str, Card] = {}
        self.virtual_wallets: dict[str, Wallet] = {}
        self.holding_wallets: dict[str, Wallet] = {}  # by blockchain
        self.treasury_wallets: dict[tuple[str, str], Wallet] = {}  # (account_id, wallet_id)
        self.card_holding: dict[str, Any] = {}
        self.velocity_rules: list[dict[str, int]] = []
        self.transactions: list[Transaction] = []
        self.challenges: dict[str, Challenge] = {}
        self.velocity_reset_at: dict[str, float] = {}  # card → clock of its last unblock

    # --- seeding -----------------------------------------------------------------------------------
    def load(self, seed: dict[str, Any], *, replace: bool = True) -> None:
        """Load a seed document (see docs/sandbox.md). `replace` starts from an empty world."""
        if not isinstance(seed, dict):
            raise SeedError("seed must be a mapping")
        seed = copy.deepcopy(seed)
        if replace:
            self.__init__()  # type: ignore[misc]
        if "company" in seed:
            c = seed["company"] or {}
            self.company = Company(id=c.get("id", COMPANY_ID), name=c.get("name", "Sandbox Company"),
                                   email=c.get("email"), webhook_url=c.get("webhook_url"),
                                   webhook_key=c.get("webhook_key"))
        for entry in seed.get("api_keys", []):
            level = int(entry.get("level", 0))
            if not entry.get("key") or level not in (1, 2, 3):
                raise SeedError("api_keys entries need a key and a level 1, 2 or 3")
            self.api_keys[str(entry["key"])] = level
        for raw in seed.get("cards", []):
            card = self.card_from(raw)
            self.cards[card.id] = card
        for raw in seed.get("virtual_wallets", []):
            wallet = _wallet(raw)
            self.virtual_wallets[wallet.id] = wallet
        for raw in seed.get("holding_wallets", []):
            wallet = _wallet(raw)
            self.holding_wallets[wallet.blockchain.upper()] = wallet
        for raw in seed.get("treasury_wallets", []):
            wallet = _wallet(raw)
            if not wallet.account_id:
                raise SeedError("treasury_wallets entries need account_id")
            self.treasury_wallets[(wallet.account_id, wallet.id)] = wallet
        if "card_holding" in seed:
            holding = dict(seed["card_holding"] or {})
            holding["warranty_balance"] = dec(holding.get("warranty_balance")) or Decimal("0")
            self.card_holding = holding
        if "velocity_rules" in seed:
            self.velocity_rules = [
                {"max_authorizations": int(r["max_authorizations"]),
                 "time_window_seconds": int(r["time_window_seconds"])} for r in seed["velocity_rules"]]

    @staticmethod
    def card_from(raw: dict[str, Any]) -> Card:
        if not raw.get("id"):
            raise SeedError("cards need an id")
        known = {k: raw[k] for k in ("card_holder_name", "type", "last4", "status", "approval_method",
                                     "forwarded_3ds_type", "email", "phone") if raw.get(k) is not None}
        return Card(
            id=str(raw["id"]), **known,
            daily_limit=dec(raw.get("daily_limit")), weekly_limit=dec(raw.get("weekly_limit")),
            monthly_limit=dec(raw.get("monthly_limit")),
            phone_country_code=int(raw["phone_country_code"]) if raw.get("phone_country_code") else None,
            metadata=dict(raw.get("metadata") or {}),
            virtual_balance=dec(raw.get("virtual_balance")) or Decimal("0"),
        )

    # --- queries -------------------------------------------------------------------------------------
    def last_transaction(self, card_id: str, statuses: set[str]) -> Transaction | None:
        for txn in reversed(self.transactions):
            if txn.card_id == card_id and txn.status in statuses:
                return txn
        return None

    def snapshot(self) -> dict[str, Any]:
        """Everything, for GET /_sandbox/state (API keys shown masked with their level)."""
        return {
            "company": {**self.company.to_api(), "id": self.company.id,
                        "webhook_key": _mask(self.company.webhook_key)},
            "api_keys": [{"key": _mask(k), "level": v} for k, v in self.api_keys.items()],
            "cards": [{**c.to_api(), "virtual_balance": c.virtual_balance, "metadata": c.metadata}
                      for c in self.cards.values()],
            "virtual_wallets": [{**w.to_api(), "balances": w.balances, "virtual_balance": w.virtual_balance}
                                for w in self.virtual_wallets.values()],
            "holding_wallets": [{**w.to_api(), "balances": w.balances} for w in self.holding_wallets.values()],
            "treasury_wallets": [{**w.to_api(), "account_id": w.account_id, "balances": w.balances}
                                 for w in self.treasury_wallets.values()],
            "card_holding": self.card_holding,
            "velocity_rules": self.velocity_rules,
            "transactions": [t.to_json() for t in self.transactions],
            "challenges": [{"card_id": c.card_id, "answer": c.answer, **{k: v for k, v in c.data.items() if k != "code"}}
                           for c in self.challenges.values()],
        }

    def balances(self) -> dict[str, Any]:
        return {
            "cards": {c.id: {"virtual_balance": c.virtual_balance, "status": c.status} for c in self.cards.values()},
            "virtual_wallets": {w.id: {"balances": w.balances, "virtual_balance": w.virtual_balance}
                                for w in self.virtual_wallets.values()},
            "holding_wallets": {w.blockchain: w.balances for w in self.holding_wallets.values()},
            "treasury_wallets": {f"{a}/{i}": w.balances for (a, i), w in self.treasury_wallets.items()},
            "card_holding": self.card_holding,
        }


def _wallet(raw: dict[str, Any]) -> Wallet:
    if not raw.get("id"):
        raise SeedError("wallets need an id")
    balances = []
    for entry in raw.get("balances", []):
        balances.append({"name": entry.get("name"), "symbol": entry.get("symbol"),
                         "balance": dec(entry.get("balance")) or Decimal("0"),
                         "token_address": entry.get("token_address", "")})
    return Wallet(id=str(raw["id"]), blockchain=str(raw.get("blockchain", "POLYGON")).upper(),
                  wallet_address=raw.get("wallet_address") or f"0x{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}",
                  alias=raw.get("alias"), client_id=raw.get("client_id"), enabled=bool(raw.get("enabled", True)),
                  account_id=raw.get("account_id"), balances=balances,
                  virtual_balance=dec(raw.get("virtual_balance")) or Decimal("0"))


def _mask(secret: str | None) -> str | None:
    if not secret:
        return secret
    return f"{secret[:4]}…({len(secret)} chars)"
