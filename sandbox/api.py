"""The emulated CryptoMate API: the §5 endpoint subset and the §6 simulate endpoints, exact paths."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from hookstream.sandbox.flows import now_iso
from hookstream.sandbox.gateway import Call, Endpoint, PlatformError, Reply
from hookstream.sandbox.state import Card, Wallet

BLOCKCHAINS = ("ETHEREUM", "POLYGON", "BSC", "ARBITRUM", "OPTIMISM", "BASE", "AVALANCHE")
APPROVAL_METHODS = ("NONE", "WEBHOOK", "TOP_UP", "DEFI")
THREE_DS_TYPES = ("AUTOMATIC", "FORWARDED", "DISABLED")
_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)


# --- input helpers -------------------------------------------------------------------------------------
def _body(call: Call) -> dict[str, Any]:
    if call.body is None:
        return {}
    if not isinstance(call.body, dict):
        raise PlatformError(400, "BAD_REQUEST", "Request body must be a JSON object")
    return call.body


def _required(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        raise PlatformError(400, "BAD_REQUEST", f"{name} is required")
    return value


def _amount(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise PlatformError(400, "BAD_REQUEST", f"{name} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PlatformError(400, "BAD_REQUEST", f"{name} must be a number") from None
    if not amount.is_finite():
        raise PlatformError(400, "BAD_REQUEST", f"{name} must be a number")
    return amount


def _card(call: Call, *, val: bool = False) -> Card:
    card = call.sandbox.state.cards.get(call.params.get("cardId", ""))
    if card is None:
        if val:
            raise PlatformError(412, "VAL", "Card not found")
        raise PlatformError(404, "NOT_FOUND", f"Card with id '{call.params.get('cardId')}' was not found.")
    return card


def _wallet(call: Call) -> Wallet:
    wallet = call.sandbox.state.virtual_wallets.get(call.params["walletId"])
    if wallet is None:
        raise PlatformError(404, "NOT_FOUND", f"Wallet with id `{call.params['walletId']}` was not found.")
    return wallet


def _blockchain(call: Call, value: Any) -> str:
    chain = str(value or "").upper()
    if chain == "SOLANA":
        raise PlatformError(401, "DENIED", "Solana blockchain is not supported for virtual wallet.")
    if chain not in BLOCKCHAINS:
        raise PlatformError(400, "BAD_REQUEST", f"blockchain must be one of {', '.join(BLOCKCHAINS)}")
    return chain


def _tx_hash() -> str:
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex


def _debit(wallet: Wallet, token_address: str | None, amount: Decimal) -> dict[str, Any]:
    entry = wallet.token(token_address)
    if entry["balance"] < amount:
        raise PlatformError(412, "VAL", "Insufficient balance")
    entry["balance"] -= amount
    return entry


def _decimals_ok(amount: Decimal, places: int = 6, integer_digits: int = 9) -> bool:
    sign, digits, exponent = amount.as_tuple()
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return decimals <= places and len(digits) - decimals <= integer_digits


# --- cards (§5.3) --------------------------------------------------------------------------------------
async def list_cards(call: Call) -> Reply:
    return Reply([c.to_api() for c in call.sandbox.state.cards.values()])


async def get_card(call: Call) -> Reply:
    return Reply(_card(call).to_api())


async def create_card(call: Call) -> Reply:
    body = _body(call)
    method = str(_required(body, "approval_method")).upper()
    if method not in APPROVAL_METHODS:
        raise PlatformError(400, "BAD_REQUEST", f"approval_method must be one of {', '.join(APPROVAL_METHODS)}")
    try:
        dial = int(_required(body, "phone_country_code"))
    except (TypeError, ValueError):
        raise PlatformError(400, "BAD_REQUEST", "phone_country_code must be an integer") from None
    card = call.sandbox.state.card_from({
        "id": uuid.uuid4().hex, "card_holder_name": _required(body, "card_holder_name"), "approval_method": method,
        "phone_country_code": dial, "phone": str(_required(body, "phone")), "email": body.get("email"),
        "daily_limit": body.get("daily_limit"), "weekly_limit": body.get("weekly_limit"),
        "monthly_limit": body.get("monthly_limit"), "metadata": body.get("metadata") or {},
        "last4": f"{uuid.uuid4().int % 10000:04d}",
    })
    call.sandbox.state.cards[card.id] = card
    return Reply(card.to_api())


async def delete_card(call: Call) -> Reply:
    card = _card(call)
    card.status = "DELETED"
    return Reply(card.to_api())


async def set_frozen(call: Call) -> Reply:
    card = _card(call, val=True)  # [OLD-T]: 412 "Card not found"
    freeze = _body(call).get("freeze")
    if not isinstance(freeze, bool):
        raise PlatformError(400, "BAD_REQUEST", "freeze must be a boolean")
    if freeze and card.status == "ACTIVE":
        card.status = "FROZEN"
    elif not freeze and card.status == "FROZEN":
        card.status = "ACTIVE"
    return Reply(empty=True)


def _virtual_balance(call: Call) -> Any:
    """The body's `virtual_balance` (§5.3/§5.4: a number ≥ 0, else 412 VAL)."""
    amount = _amount(_required(_body(call), "virtual_balance"), "virtual_balance")
    if amount < 0:
        raise PlatformError(412, "VAL", "The virtual balance cannot be negative.")
    return amount


async def override_card_balance(call: Call) -> Reply:
    card = _card(call)
    card.virtual_balance = _virtual_balance(call)
    return Reply(card.virtual_balance)


async def card_balances(call: Call) -> Reply:
    card = _card(call)
    if card.approval_method != "TOP_UP":
        raise PlatformError(400, "APP_ERROR", "The virtual balances does not apply to this card.")
    return Reply({"available_credit": card.virtual_balance})


async def update_limits(call: Call) -> Reply:
    card = _card(call)
    body = _body(call)
    for name in ("daily_limit", "weekly_limit", "monthly_limit"):
        if name in body:
            value = None if body[name] is None else _amount(body[name], name)
            if value is not None and value < 0:
                raise PlatformError(412, "VAL", f"{name} cannot be negative.")
            setattr(card, name, value)
    return Reply({"id": card.id, "card_holder_name": card.card_holder_name, "status": card.status,
                  "daily_limit": card.daily_limit, "weekly_limit": card.weekly_limit,
                  "monthly_limit": card.monthly_limit})


async def unblock(call: Call) -> Reply:
    card = _card(call)
    if card.status == "BLOCKED":
        card.status = "ACTIVE"
    call.sandbox.state.velocity_reset_at[card.id] = call.sandbox.clock()  # also resets the velocity counter
    return Reply({"blocked": False})


async def configure_3ds(call: Call) -> Reply:
    card = _card(call)
    kind = str(_required(_body(call), "type")).upper()
    if kind not in THREE_DS_TYPES:
        raise PlatformError(400, "BAD_REQUEST", f"type must be one of {', '.join(THREE_DS_TYPES)}")
    card.forwarded_3ds_type = kind
    return Reply({"type": kind})


async def respond_3ds(call: Call) -> Reply:
    sandbox = call.sandbox
    card = _card(call)
    body = _body(call)
    code = str(_required(body, "code"))
    approve = body.get("approve")
    if not isinstance(approve, bool):
        raise PlatformError(400, "BAD_REQUEST", "approve must be a boolean")
    entry: dict[str, Any] = {"card_id": card.id, "code": code, "approve": approve,
                             "idempotency_key": call.idempotency_key, "at": sandbox.clock(), "outcome": None}
    sandbox.three_ds_responses.append(entry)
    # The real platform documents no errors for this call; these are the sandbox's own (docs/sandbox.md).
    challenge = sandbox.state.challenges.get(code)
    try:
        if challenge is None or challenge.card_id != card.id:
            raise PlatformError(404, "NOT_FOUND", "3DS authorization not found")
        if sandbox.clock() - challenge.at > sandbox.config.three_ds_ttl_s:
            raise PlatformError(412, "VAL", "3DS authorization expired")
        if challenge.answer is not None:
            raise PlatformError(412, "VAL", "3DS authorization already answered")
    except PlatformError as exc:
        entry["outcome"] = exc.code
        raise
    challenge.answer = approve
    entry["outcome"] = "ACCEPTED"
    return Reply({"code": code, "approve": approve})


async def card_holding_balance(call: Call) -> Reply:
    holding = call.sandbox.state.card_holding
    if not holding:
        raise PlatformError(404, "NOT_FOUND", "Holding wallet not found")
    return Reply(holding)


async def card_holding_withdraw(call: Call) -> Reply:
    # Documented as not implemented: the platform answers 500 (cryptomate.md §5.3).
    raise PlatformError(500, "SERVER_ERROR", "Not implemented")


async def get_velocity(call: Call) -> Reply:
    return Reply({"rules": call.sandbox.state.velocity_rules})


async def put_velocity(call: Call) -> Reply:
    rules = _body(call).get("rules")
    if not isinstance(rules, list):
        raise PlatformError(400, "VALIDATION_ERROR", "rules must be an array")
    if len(rules) > 5:
        raise PlatformError(400, "VELOCITY_RULES_LIMIT_EXCEEDED", "At most 5 velocity rules are allowed")
    clean: list[dict[str, int]] = []
    for rule in rules:
        try:
            item = {"max_authorizations": int(rule["max_authorizations"]),
                    "time_window_seconds": int(rule["time_window_seconds"])}
        except (KeyError, TypeError, ValueError):
            raise PlatformError(400, "VALIDATION_ERROR", "Each rule needs max_authorizations and time_window_seconds") from None
        if item["max_authorizations"] < 1 or item["time_window_seconds"] < 1:
            raise PlatformError(400, "VALIDATION_ERROR", "Rule values must be at least 1")
        if any(r["time_window_seconds"] == item["time_window_seconds"] for r in clean):
            raise PlatformError(400, "VELOCITY_RULES_DUPLICATE_WINDOW", "Duplicate time_window_seconds")
        clean.append(item)
    call.sandbox.state.velocity_rules = clean
    return Reply({"rules": clean})


async def delete_velocity(call: Call) -> Reply:
    call.sandbox.state.velocity_rules = []
    return Reply(status=204, empty=True)


# --- virtual wallets (§5.4) ------------------------------------------------------------------------------
async def list_wallets(call: Call) -> Reply:
    chain = call.query.get("blockchain")
    wallets = call.sandbox.state.virtual_wallets.values()
    return Reply([w.to_api() for w in wallets if not chain or w.blockchain == chain.upper()])


async def aggregated_balances(call: Call) -> Reply:
    chain = call.query.get("blockchain")
    totals: dict[str, dict[str, Any]] = {}
    for wallet in call.sandbox.state.virtual_wallets.values():
        if chain and wallet.blockchain != chain.upper():
            continue
        for entry in wallet.balances:
            slot = totals.setdefault(entry["token_address"], {**entry, "balance": Decimal("0")})
            slot["balance"] += entry["balance"]
    return Reply(list(totals.values()))


def _holding(call: Call, chain: str | None) -> Wallet:
    wallet = call.sandbox.state.holding_wallets.get((chain or "").upper())
    if wallet is None:
        raise PlatformError(404, "NOT_FOUND", f"Holding wallet not found for companyId "
                                              f"'{call.sandbox.state.company.id}' and blockchain '{chain}'")
    return wallet


async def holding_wallet(call: Call) -> Reply:
    wallet = _holding(call, call.query.get("blockchain"))
    return Reply({"id": wallet.id, "alias": wallet.alias, "wallet_address": wallet.wallet_address,
                  "blockchain": wallet.blockchain})


async def holding_balance(call: Call) -> Reply:
    return Reply(_holding(call, call.query.get("blockchain")).balances)


async def holding_withdraw(call: Call) -> Reply:
    wallet = _holding(call, call.params["blockchain"])
    return Reply(_withdraw(call, wallet, product=None))


async def create_wallet(call: Call) -> Reply:
    body = _body(call)
    chain = _blockchain(call, _required(body, "blockchain"))
    wallet = Wallet(id=uuid.uuid4().hex, blockchain=chain, alias=body.get("alias"),
                    wallet_address="0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8])
    call.sandbox.state.virtual_wallets[wallet.id] = wallet
    return Reply(wallet.to_api())


async def get_wallet(call: Call) -> Reply:
    return Reply(_wallet(call).to_api())


async def wallet_balance(call: Call) -> Reply:
    return Reply(_wallet(call).balances)


async def override_wallet_balance(call: Call) -> Reply:
    wallet = _wallet(call)
    wallet.virtual_balance = _virtual_balance(call)
    return Reply(wallet.virtual_balance)


async def set_enabled(call: Call) -> Reply:
    wallet = _wallet(call)
    enabled = _body(call).get("enabled")
    if not isinstance(enabled, bool):
        raise PlatformError(400, "BAD_REQUEST", "enabled must be a boolean")
    wallet.enabled = enabled
    return Reply(wallet.to_api())


async def wallet_withdraw(call: Call) -> Reply:
    return Reply(_withdraw(call, _wallet(call), product="virtual_wallets"))


def _withdraw(call: Call, wallet: Wallet, product: str | None) -> dict[str, Any]:
    body = _body(call)
    to = str(_required(body, "to_wallet_address"))
    token = str(body.get("token_address") or "")
    amount = _amount(_required(body, "amount"), "amount")
    if amount <= 0 or not _decimals_ok(amount):
        raise PlatformError(412, "VAL", "Amount must be positive with at most 6 decimals")
    if token and to.lower() == token.lower():
        raise PlatformError(412, "VAL", "Cannot transfer tokens to token contract address")
    entry = _debit(wallet, token, amount)
    tx = _tx_hash()
    if product:
        data = {"wallet_id": wallet.id, "wallet_address": wallet.wallet_address, "transaction_hash": tx,
                "blockchain": wallet.blockchain, "to_wallet_address": to, "amount": amount,
                "token": {"name": entry.get("name"), "symbol": entry.get("symbol"), "address": token},
                "created_at": now_iso()}
        call.sandbox.platform.emit(product, "withdraw", "success", f"wf_{uuid.uuid4().hex[:12]}", data)
    return {"transaction_hash": tx, "status": "PENDING"}


# --- treasury (§5.5) -----------------------------------------------------------------------------------
def _treasury(call: Call) -> Wallet:
    key = (call.params["accountId"], call.params["walletId"])
    wallet = call.sandbox.state.treasury_wallets.get(key)
    if wallet is None:
        raise PlatformError(404, "NOT_FOUND", f"Wallet with id `{key[1]}` was not found.")
    return wallet


async def treasury_transfer(call: Call) -> Reply:
    wallet = _treasury(call)
    body = _body(call)
    to = str(_required(body, "to"))
    if re.search(r"\s", to):
        raise PlatformError(412, "VAL", "Destination address must not contain spaces")
    amount = _amount(_required(body, "amount"), "amount")
    if amount <= 0 or not _decimals_ok(amount):
        raise PlatformError(412, "VAL", "Amount must be greater than 0 with at most 9 integer digits and 6 decimals")
    token = str(body.get("token_address") or "")
    entry = _debit(wallet, token, amount)
    tx = _tx_hash()
    data = {"wallet_id": wallet.id, "wallet_address": wallet.wallet_address, "blockchain": wallet.blockchain,
            "transaction_hash": tx, "to_wallet_address": to, "amount": amount,
            "token": {"address": token, "symbol": entry.get("symbol")}, "created_at": now_iso()}
    call.sandbox.platform.emit("treasury", "transfer", "success", f"wf_{uuid.uuid4().hex[:12]}", data)
    return Reply({"transaction_hash": tx, "status": "PENDING"})


async def treasury_balance(call: Call) -> Reply:
    return Reply(_treasury(call).balances)


# --- management: webhook configuration (§5.8) ------------------------------------------------------------
def _key_ok(key: Any) -> str:
    if not isinstance(key, str) or len(key) < 10:
        raise PlatformError(412, "VAL", "Webhook key must be at least 10 characters long")
    return key


async def subscribe_webhook(call: Call) -> Reply:
    body = _body(call)
    url = str(_required(body, "url"))
    if not _URL.match(url):
        raise PlatformError(400, "BAD_REQUEST", "url must be a valid HTTP or HTTPS URL")
    call.sandbox.set_webhook(url=url, key=_key_ok(_required(body, "webhook_key")))
    return Reply(call.sandbox.state.company.to_api())


async def webhook_key(call: Call) -> Reply:
    call.sandbox.set_webhook(key=_key_ok(_required(_body(call), "key")))
    return Reply(call.sandbox.state.company.to_api())


async def get_company(call: Call) -> Reply:
    return Reply(call.sandbox.state.company.to_api())


async def update_company(call: Call) -> Reply:
    body = _body(call)
    company = call.sandbox.state.company
    if "name" in body:
        company.name = str(body["name"])
    if "email" in body:
        company.email = body["email"]
    if body.get("webhook_url") is not None:
        if not _URL.match(str(body["webhook_url"])):
            raise PlatformError(400, "BAD_REQUEST", "webhook_url must be a valid HTTP or HTTPS URL")
        call.sandbox.set_webhook(url=str(body["webhook_url"]))
    if body.get("webhook_key") is not None:
        call.sandbox.set_webhook(key=_key_ok(body["webhook_key"]))
    return Reply(company.to_api())


# --- simulate (§6): 201 with an empty body ----------------------------------------------------------------
def _sim_card(call: Call) -> tuple[Card | None, str, dict[str, Any]]:
    body = _body(call)
    card_id = str(_required(body, "card_id"))
    return call.sandbox.state.cards.get(card_id), card_id, body


async def simulate_authorize(call: Call) -> Reply:
    card, _, body = _sim_card(call)
    amount = _amount(_required(body, "bill_amount"), "bill_amount")
    if card is None:
        raise PlatformError(412, "VAL", "Card not found")
    # Sandbox extensions (optional): merchant_data, channel, delivery {duplicate, delay_s}.
    call.sandbox.sender.spawn(call.sandbox.platform.authorize(
        card, amount, merchant=body.get("merchant_data"), channel=str(body.get("channel") or "POS"),
        delivery=body.get("delivery")))
    return Reply(status=201, empty=True)


async def simulate_clearing(call: Call) -> Reply:
    card, card_id, _ = _sim_card(call)  # bill_amount accepted but ignored
    if card is None or call.sandbox.platform.clear(card) is None:
        raise PlatformError(404, "NOT_FOUND", f"Authorization event not found for card {card_id}")
    return Reply(status=201, empty=True)


async def simulate_refund(call: Call) -> Reply:
    card, card_id, body = _sim_card(call)
    amount = _amount(_required(body, "bill_amount"), "bill_amount")
    if card is None or call.sandbox.platform.refund(card, amount) is None:
        raise PlatformError(404, "NOT_FOUND", f"Cleared transaction not found for card {card_id}")
    return Reply(status=201, empty=True)


async def simulate_reversal(call: Call) -> Reply:
    card, card_id, body = _sim_card(call)
    amount = _amount(_required(body, "bill_amount"), "bill_amount")
    if card is None or call.sandbox.platform.reverse(card, amount) is None:
        raise PlatformError(404, "NOT_FOUND", f"Authorization event not found for card {card_id}")
    return Reply(status=201, empty=True)


CARD = "/cards/virtual-cards/{cardId}"
VELOCITY = "/cards/account/configuration/velocity-rules"
WALLET = "/virtual-wallets/{walletId}"
MPC = "/mpc/accounts/{accountId}/wallets/{walletId}"

# Fixed paths before templated ones: "/cards/virtual-cards/list" must not match "{cardId}".
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/cards/virtual-cards/list", 1, list_cards),
    Endpoint("POST", "/cards/virtual-cards/create", 2, create_card),
    Endpoint("GET", CARD, 1, get_card),
    Endpoint("DELETE", CARD, 2, delete_card),
    Endpoint("PATCH", CARD + "/frozen", 3, set_frozen),
    Endpoint("PATCH", CARD + "/virtual-balance", 2, override_card_balance),
    Endpoint("GET", CARD + "/virtual-balances", 1, card_balances),
    Endpoint("PATCH", CARD + "/limits", 2, update_limits),
    Endpoint("PATCH", CARD + "/unblock", 2, unblock),
    Endpoint("POST", CARD + "/3ds-configuration", 2, configure_3ds),
    Endpoint("POST", CARD + "/3ds-authorization", 2, respond_3ds),
    Endpoint("GET", "/cards/holding/balance", 1, card_holding_balance),
    Endpoint("POST", "/cards/holding/withdraw", 3, card_holding_withdraw),
    Endpoint("GET", VELOCITY, 1, get_velocity),
    Endpoint("PUT", VELOCITY, 2, put_velocity),
    Endpoint("DELETE", VELOCITY, 2, delete_velocity),
    Endpoint("GET", "/virtual-wallets/list", 1, list_wallets),
    Endpoint("GET", "/virtual-wallets/virtual-balances", 1, aggregated_balances),
    Endpoint("GET", "/virtual-wallets/holding", 1, holding_wallet),
    Endpoint("GET", "/virtual-wallets/holding/balance", 1, holding_balance),
    Endpoint("POST", "/virtual-wallets/holding/withdraw/{blockchain}", 2, holding_withdraw),
    Endpoint("POST", "/virtual-wallets/create", 2, create_wallet),
    Endpoint("GET", WALLET, 1, get_wallet),
    Endpoint("GET", WALLET + "/balance", 1, wallet_balance),
    Endpoint("PATCH", WALLET + "/virtual-balance", 2, override_wallet_balance),
    Endpoint("PATCH", WALLET + "/set-enabled", 2, set_enabled),
    Endpoint("POST", WALLET + "/withdraw", 2, wallet_withdraw),
    Endpoint("POST", MPC + "/transfer", 2, treasury_transfer),
    Endpoint("GET", MPC + "/balance", 1, treasury_balance),
    Endpoint("POST", "/management/companies/webhook/subscribe", 3, subscribe_webhook),
    Endpoint("POST", "/management/companies/webhook/key", 3, webhook_key),
    Endpoint("GET", "/management/companies", 3, get_company),
    Endpoint("PUT", "/management/companies", 3, update_company),
    Endpoint("POST", "/cards/webhook/simulate/authorize", 2, simulate_authorize),
    Endpoint("POST", "/cards/webhook/simulate/clearing", 2, simulate_clearing),
    Endpoint("POST", "/cards/webhook/simulate/refund", 2, simulate_refund),
    Endpoint("POST", "/cards/webhook/simulate/reversal", 2, simulate_reversal),
]
