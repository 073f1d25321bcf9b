"""The sandbox's own `/_sandbox/...` API: inspection, seeding, settings, faults and event triggers."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookstream.sandbox.config import ConfigError
from hookstream.sandbox.flows import now_iso
from hookstream.sandbox.gateway import to_json
from hookstream.sandbox.runtime import Sandbox
from hookstream.sandbox.state import SeedError

# Deposits below these are not notified (cryptomate.md §2.3: CARDS 10 USD, VIRTUAL WALLETS 1, TREASURY 1).
DEPOSIT_MINIMUM = {"cards": Decimal("10"), "virtual_wallets": Decimal("1"), "treasury": Decimal("1")}


class BadInput(ValueError):
    pass


def _reply(payload: Any, status: int = 200) -> Response:
    return Response(to_json(payload), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _reply({"error": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        if "yaml" in request.headers.get("content-type", ""):
            value = yaml.safe_load(raw)
        else:
            value = json.loads(raw)
    except (ValueError, yaml.YAMLError):
        raise BadInput("body is not valid JSON/YAML") from None
    if not isinstance(value, dict):
        raise BadInput("body must be an object")
    return value


def _amount(body: dict[str, Any], name: str, default: str | None = None) -> Decimal:
    value = body.get(name, default)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BadInput(f"{name} must be a number") from None


def build_routes(sandbox: Sandbox) -> list[Route]:
    """The /_sandbox routes bound to one sandbox."""

    def handler(fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except (BadInput, ConfigError, SeedError) as exc:
                return _error(400, str(exc))

        return endpoint

    # --- inspection ------------------------------------------------------------------------------
    async def healthz(_: Request) -> Response:
        return _reply({"status": "ok"})

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.calls.clear()
            return _reply({"cleared": True})
        path = request.query_params.get("path")
        return _reply([c for c in sandbox.calls if not path or path in c["path"]])

    async def deliveries(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.sender.deliveries.clear()
            return _reply({"cleared": True})
        event_type = (request.query_params.get("event_type") or "").lower()
        return _reply([d for d in sandbox.sender.deliveries
                       if not event_type or str(d["event_type"]).lower() == event_type])

    async def three_ds(_: Request) -> Response:
        return _reply(sandbox.three_ds_responses)

    async def state(_: Request) -> Response:
        return _reply({**sandbox.state.snapshot(), "config": sandbox.config.to_json(),
                       "pending_deliveries": sandbox.sender.pending()})

    async def balances(_: Request) -> Response:
        return _reply(sandbox.state.balances())

    async def transactions(request: Request) -> Response:
        card = request.query_params.get("card_id")
        return _reply([t.to_json() for t in sandbox.state.transactions if not card or t.card_id == card])

    # --- setup -----------------------------------------------------------------------------------
    async def seed(request: Request) -> Response:
        body = await _body(request)
        replace = request.query_params.get("replace", "true").lower() != "false"
        sandbox.load(body, replace=replace)
        return _reply({"cards": len(sandbox.state.cards), "api_keys": len(sandbox.state.api_keys)})

    async def reset(_: Request) -> Response:
        sandbox.load(sandbox.seed)
        sandbox.calls.clear()
        sandbox.sender.deliveries.clear()
        sandbox.three_ds_responses.clear()
        sandbox.faults.clear()
        return _reply({"reset": True})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request)
            webhook = {k: body.pop(k) for k in ("webhook_url", "webhook_key") if k in body}
            sandbox.config.update(body)
            sandbox.configure_limiter()
            sandbox.set_webhook(url=webhook.get("webhook_url"), key=webhook.get("webhook_key"))
        return _reply({**sandbox.config.to_json(), "webhook_url": sandbox.state.company.webhook_url})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.faults.clear()
            return _reply({"cleared": True})
        if request.method == "POST":
            body = await _body(request)
            status = int(body.get("status", 500))
            delay_s = body.get("delay_s")
            if delay_s is not None and not (isinstance(delay_s, (int, float)) and 0 < delay_s <= 60):
                raise BadInput("delay_s must be a number of seconds in (0, 60]")
            if status == 200 and delay_s is None:
                raise BadInput("status 200 (a slow but real answer) needs delay_s")
            if status not in (200, 302, 400, 401, 404, 412, 429, 500, 502, 503, 504):
                raise BadInput("status must be one of 200 (with delay_s), 302, 400, 401, 404, 412, 429, 500, 502, 503, 504")
            seconds, count = body.get("seconds"), body.get("count")
            if seconds is None and count is None:
                raise BadInput("give seconds or count")
            paths = body.get("paths")
            if paths is not None and not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
                raise BadInput("paths must be a list of path templates or prefixes")
            fault = {"id": uuid.uuid4().hex[:8], "status": status, "paths": paths,
                     "until": None if seconds is None else sandbox.clock() + float(seconds),
                     "remaining": None if count is None else int(count),
                     "retry_after": body.get("retry_after"), "message": body.get("message"), "hits": 0,
                     "delay_s": delay_s}
            sandbox.faults.append(fault)
            return _reply(fault, 201)
        return _reply(sandbox.faults)

    # --- triggers ----------------------------------------------------------------------------------
    def card_or_fail(body: dict[str, Any]) -> Any:
        card = sandbox.state.cards.get(str(body.get("card_id")))
        if card is None:
            raise BadInput("card_id: card not found")
        return card

    async def trigger(request: Request) -> Response:
        kind = request.path_params["kind"]
        body = await _body(request)
        delivery = body.get("delivery")
        platform = sandbox.platform
        if kind == "authorization":
            # Like simulate/authorize, but answers with the decided transaction.
            txn = await platform.authorize(card_or_fail(body), _amount(body, "bill_amount"),
                                           merchant=body.get("merchant_data"),
                                           channel=str(body.get("channel") or "POS"), delivery=delivery)
            return _reply(txn.to_json())
        if kind == "3ds":
            card = card_or_fail(body)
            if card.forwarded_3ds_type != "FORWARDED":
                raise BadInput("card 3DS type is not FORWARDED: the platform would not send the challenge")
            challenge = platform.challenge_3ds(
                card, _amount(body, "transaction_amount", "42.50"),
                merchant_name=str(body.get("merchant_name") or "Acme Coffee"),
                merchant_country_code=str(body.get("merchant_country_code") or "USA"),
                currency=str(body.get("transaction_currency") or "USD"), delivery=delivery)
            return _reply({"operation_id": challenge.code, "code": challenge.code}, 201)
        if kind == "velocity_block":
            card = card_or_fail(body)
            rule = {"max_authorizations": int(body.get("max_authorizations", 1)),
                    "time_window_seconds": int(body.get("time_window_seconds", 60))}
            sent = platform.block_by_velocity(card, rule, last_authorization_id=body.get("last_authorization_id"),
                                              delivery=delivery)
            return _reply({"operation_id": card.id, "sent": sent is not None}, 201)
        if kind == "deposit":
            return _reply(deposit(body, delivery), 201)
        if kind in ("withdraw", "transfer"):
            return _reply(movement(kind, body, delivery), 201)
        if kind == "client_status":
            client_id = str(body.get("client_id") or f"cli_{uuid.uuid4().hex[:10]}")
            data = {"id": client_id, "company_id": sandbox.state.company.id, "type": body.get("type", "individual"),
                    "email": body.get("email", "client@sandbox.test"), "first_name": body.get("first_name", "Jane"),
                    "last_name": body.get("last_name", "Doe"), "status": body.get("client_status", "rejected"),
                    "rejection_code": body.get("rejection_code", "REJECTED_BY_PROVIDER"),
                    "rejection_description": body.get("rejection_description", "Rejected by the ramp provider"),
                    "created_at": now_iso(), "updated_at": now_iso()}
            platform.emit("company_activity", "client_status", str(body.get("status", "failed")), client_id, data,
                          delivery=delivery)
            return _reply({"operation_id": client_id}, 201)
        if kind == "raw":
            envelope = body.get("body")
            if not isinstance(envelope, dict):
                raise BadInput("raw: give the envelope as `body`")
            policy = body.get("policy", "regular")
            if policy not in ("regular", "authorization", "no_retry"):
                raise BadInput("policy must be regular, authorization or no_retry")
            opts = delivery or {}
            event_id = sandbox.sender.submit(envelope, policy, duplicate=opts.get("duplicate"),
                                             delay_s=opts.get("delay_s"))
            return _reply({"event_id": event_id}, 201)
        return _error(404, f"unknown trigger {kind!r}")

    def deposit(body: dict[str, Any], delivery: Any) -> dict[str, Any]:
        product = str(body.get("product", "virtual_wallets")).lower()
        if product not in DEPOSIT_MINIMUM:
            raise BadInput("product must be cards, virtual_wallets or treasury")
        amount = _amount(body, "amount", "100.00")
        net = _amount(body, "net_amount", str(amount))
        wallet_id = str(body.get("wallet_id") or "wlt_1")
        token = str(body.get("token_address") or "0x2791bca1f2de4661ed88a30c99a7a9449aa84174")
        wallet = sandbox.state.virtual_wallets.get(wallet_id) or next(
            (w for (_, wid), w in sandbox.state.treasury_wallets.items() if wid == wallet_id), None)
        if wallet is not None:
            wallet.token(token)["balance"] += net
        card = sandbox.state.cards.get(str(body.get("card_id"))) if body.get("card_id") else None
        if card is not None and card.approval_method == "TOP_UP":
            card.virtual_balance += net
        tx = str(body.get("transaction_hash") or "0x" + uuid.uuid4().hex + uuid.uuid4().hex)
        if amount < DEPOSIT_MINIMUM[product]:
            return {"operation_id": tx, "sent": False, "reason": "below the product's notification minimum"}
        data: dict[str, Any] = {
            "wallet_id": wallet_id, "wallet_address": wallet.wallet_address if wallet else "0x" + "5" * 40,
            "blockchain": (wallet.blockchain if wallet else str(body.get("blockchain", "POLYGON"))),
            "transaction_hash": tx, "from_wallet_address": str(body.get("from_wallet_address") or "0x" + "d" * 40),
            "amount": amount, "net_amount": net, "token": {"address": token}, "created_at": now_iso(),
        }
        if card is not None:
            data["card_id"] = card.id
        sandbox.platform.emit(product, "deposit", "success", tx, data, delivery=delivery)  # operation_id = tx hash
        return {"operation_id": tx, "sent": True}

    def movement(kind: str, body: dict[str, Any], delivery: Any) -> dict[str, Any]:
        product = "virtual_wallets" if kind == "withdraw" else "treasury"
        status = str(body.get("status", "success")).lower()
        wallet_id = str(body.get("wallet_id") or ("wlt_1" if kind == "withdraw" else "twl_1"))
        operation_id = str(body.get("operation_id") or f"wf_{uuid.uuid4().hex[:12]}")
        data = {"wallet_id": wallet_id, "wallet_address": str(body.get("wallet_address") or "0x" + "1" * 40),
                "blockchain": str(body.get("blockchain", "POLYGON")),
                "transaction_hash": str(body.get("transaction_hash") or "0x" + uuid.uuid4().hex * 2),
                "to_wallet_address": str(body.get("to_wallet_address") or "0x" + "e" * 40),
                "amount": _amount(body, "amount", "100.00"),
                "token": {"address": str(body.get("token_address") or "0x2791bca1f2de4661ed88a30c99a7a9449aa84174")},
                "created_at": now_iso()}
        reason = body.get("reason") or ("Transfer failed" if status == "failed" else None)
        sandbox.platform.emit(product, kind, status, operation_id, data, delivery=delivery, reason=reason)
        return {"operation_id": operation_id}

    plain = [
        ("/_sandbox/healthz", healthz, ["GET"]),
        ("/_sandbox/calls", calls, ["GET", "DELETE"]),
        ("/_sandbox/deliveries", deliveries, ["GET", "DELETE"]),
        ("/_sandbox/3ds-responses", three_ds, ["GET"]),
        ("/_sandbox/state", state, ["GET"]),
        ("/_sandbox/balances", balances, ["GET"]),
        ("/_sandbox/transactions", transactions, ["GET"]),
        ("/_sandbox/seed", seed, ["POST"]),
        ("/_sandbox/reset", reset, ["POST"]),
        ("/_sandbox/config", config, ["GET", "POST"]),
        ("/_sandbox/faults", faults, ["GET", "POST", "DELETE"]),
        ("/_sandbox/trigger/{kind}", trigger, ["POST"]),
    ]
    return [Route(path, handler(fn), methods=methods) for path, fn, methods in plain]
