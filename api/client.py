"""The CryptoMate API client: one attempt per call, rate limit, idempotency, typed results.

A request is built once (`request`, and the outbox commands' own builders), sent by a transport — the
synchronous `CryptoMateClient` here (httpx, for scripts and tools) or `hookstream.api.aio.AsyncCryptoMateClient`
(aiohttp, the outbox dispatcher's) — and its answer read once (`reply_or_raise`): both clients send the same
bytes and raise the same typed errors."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from hookstream import metrics, tracing
from hookstream.api.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    PendingApiError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    error_from_response,
    parse_error_body,
)
from hookstream.api.models import (
    Card,
    CardHoldingBalance,
    CardVirtualBalances,
    HoldingWallet,
    Pending,
    ThreeDSResponse,
    TokenBalance,
    TransferResult,
    UnblockResult,
    VirtualWallet,
)
from hookstream.api.ratelimit import TokenBucket
from hookstream.logs import get_logger, register_secrets
from hookstream.settings import Settings, get_settings

SANDBOX_URL = "https://api.sandbox.cryptomate.me"
PRODUCTION_URL = "https://api.cryptomate.me"

M = TypeVar("M", bound=BaseModel)
_balances = TypeAdapter(list[TokenBalance])
_cards = TypeAdapter(list[Card])
_wallets = TypeAdapter(list[VirtualWallet])

log = get_logger("hookstream.api")


class Reply:
    """A successful answer: status and raw body, or the pending marker of a 302 WARNING."""

    __slots__ = ("status", "content", "pending")

    def __init__(self, status: int, content: bytes, pending: Pending | None = None) -> None:
        self.status, self.content, self.pending = status, content, pending

    def json(self) -> Any:
        return json.loads(self.content) if self.content.strip() else None


class Request(NamedTuple):
    """One API request, ready for either transport."""

    method: str
    path: str  # the template filled in, each parameter percent-encoded
    template: str  # the path template: the metrics label, the span name, the error's endpoint
    headers: dict[str, str]
    content: bytes | None
    params: dict[str, Any] | None = None
    pending_ok: bool = False  # a 302 WARNING is a Pending result, not an error


def request(method: str, template: str, idempotency_key: str | None = None, body: Any = None, *,
            params: dict[str, Any] | None = None, path_params: Mapping[str, str] | None = None,
            pending_ok: bool = False) -> Request:
    """The request for `method template`; mutating calls carry the caller's Idempotency-Key or a fresh one."""
    path = template.format(**{k: quote(str(v), safe="") for k, v in (path_params or {}).items()})
    headers: dict[str, str] = {}
    if method != "GET":
        # The caller repeats the key on a retry: a request the platform already applied is not applied again.
        headers["Idempotency-Key"] = idempotency_key or f"hs-{uuid.uuid4().hex}"
    content = json.dumps(body).encode() if body is not None else None
    if content is not None:
        headers["content-type"] = "application/json"
    return Request(method, path, template, headers, content, params, pending_ok)


def respond_3ds_request(card_id: str, code: str, approve: bool, idempotency_key: str | None = None) -> Request:
    """POST /cards/virtual-cards/{cardId}/3ds-authorization `{code, approve}` (level 2)."""
    return request("POST", "/cards/virtual-cards/{cardId}/3ds-authorization", idempotency_key,
                   {"code": code, "approve": approve}, path_params={"cardId": card_id})


def override_card_virtual_balance_request(card_id: str, virtual_balance: Decimal | int | str,
                                          idempotency_key: str | None = None) -> Request:
    """PATCH /cards/virtual-cards/{cardId}/virtual-balance (level 2)."""
    return request("PATCH", "/cards/virtual-cards/{cardId}/virtual-balance", idempotency_key,
                   {"virtual_balance": _number(virtual_balance)}, path_params={"cardId": card_id})


def unblock_card_request(card_id: str, idempotency_key: str | None = None) -> Request:
    """PATCH /cards/virtual-cards/{cardId}/unblock (level 2)."""
    return request("PATCH", "/cards/virtual-cards/{cardId}/unblock", idempotency_key, None,
                   path_params={"cardId": card_id})


def command_request(kind: str, args: Mapping[str, Any], idempotency_key: str) -> Request:
    """The request an outbox command is carried out with (`ValueError` for a kind no builder knows)."""
    if kind == "respond_3ds":
        return respond_3ds_request(args["card_id"], args["code"], bool(args["approve"]), idempotency_key)
    if kind == "override_card_virtual_balance":
        return override_card_virtual_balance_request(args["card_id"], Decimal(args["virtual_balance"]),
                                                     idempotency_key)
    if kind == "unblock_card":
        return unblock_card_request(args["card_id"], idempotency_key)
    raise ValueError(f"unknown API command {kind!r}")


def reply_or_raise(status: int, content: bytes, headers: Any, req: Request) -> Reply:
    """A response read once, by either transport: the reply, or the typed error (`headers`: case-insensitive)."""
    if 200 <= status < 300:
        return Reply(status, content)
    if status == 302:
        code, message, _ = parse_error_body(content)
        if code == "WARNING" and req.pending_ok:
            return Reply(status, content, Pending(message=message, endpoint=req.template))
    raise error_from_response(status, content, headers, req.template)


def observe(template: str, status: str, seconds: float) -> None:
    """The call's metrics: by endpoint template and status (`timeout`, `connection_error` without a response)."""
    metrics.api_calls.labels(endpoint=template, status=status).inc()
    metrics.api_call_seconds.labels(endpoint=template).observe(max(0.0, seconds))


@contextmanager
def request_span(tracer: Any, req: Request, host: str) -> Iterator[Any]:
    """A CLIENT span around one attempt when exporting (else None), child of the caller's current span; the
    platform gets it as `traceparent`. The caller records the reply's status; a failure's type only is recorded,
    never its message: a platform message may echo what was sent."""
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(f"{req.method} {req.template}", kind=tracing.kind("CLIENT"), attributes={
        "http.request.method": req.method, "url.template": req.template, "server.address": host,
    }, record_exception=False, set_status_on_exception=False) as span:
        req.headers[tracing.TRACEPARENT] = tracing.traceparent(span)
        try:
            yield span
        except ApiError as exc:
            if exc.status is not None:
                span.set_attribute("http.response.status_code", exc.status)
            span.set_attribute("error.type", type(exc).__name__)
            tracing.fail(span, type(exc).__name__)
            raise


class CryptoMateClient:
    """A synchronous, thread-safe CryptoMate API client; make one per process and share it.

    Every mutating call sends an `Idempotency-Key` (the caller's, or a fresh one), so retrying it after
    a timeout or a 5xx cannot apply it twice. Each call is one attempt: a failure raises a typed
    error (transient ones carry the platform's `Retry-After`), and the caller's one retry policy
    (`hookstream.processors.retry`, used by the outbox dispatcher) decides when to try again; a
    client that slept on Retry-After itself would hold whatever its caller holds.
    """

    def __init__(
        self,
        base_url: str = SANDBOX_URL,
        api_key: str = "",
        *,
        rate_limit_per_s: float = 15.0,
        rate_limit_margin: float = 0.1,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        register_secrets([api_key])
        self.base_url = base_url.rstrip("/")
        self._tracer = tracing.tracer("hookstream.api")  # None: not exporting
        self._clock = clock
        # Requests spaced exactly 1/15 s apart still trip the platform when network jitter bunches them
        # on arrival (the first one also pays for the TCP/TLS handshake): keep a margin below the limit.
        self._limiter = TokenBucket(rate_limit_per_s / (1 + rate_limit_margin), clock=clock, sleep=sleep)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"x-api-key": api_key, "accept": "application/json"},
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # A 302 from CryptoMate is a JSON "pending" answer, never a redirect (platform §5.6).
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> CryptoMateClient:
        """The client configured by HOOKSTREAM_API_* settings (overrides win)."""
        s = settings or get_settings()
        values: dict[str, Any] = dict(
            base_url=s.api_base_url,
            api_key=s.api_key.get_secret_value(),
            rate_limit_per_s=s.api_rate_limit_per_s,
            connect_timeout_s=s.api_connect_timeout_s,
            read_timeout_s=s.api_read_timeout_s,
        )
        values.update(overrides)
        return cls(**values)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CryptoMateClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- cards -----------------------------------------------------------------------------------
    def get_card(self, card_id: str) -> Card:
        """GET /cards/virtual-cards/{cardId} (level 1)."""
        return Card.model_validate(self._get("/cards/virtual-cards/{cardId}", cardId=card_id))

    def list_cards(self) -> list[Card]:
        """GET /cards/virtual-cards/list (level 1)."""
        return _cards.validate_python(self._get("/cards/virtual-cards/list") or [])

    def respond_3ds(self, card_id: str, code: str, approve: bool, *,
                    idempotency_key: str | None = None) -> ThreeDSResponse:
        """POST /cards/virtual-cards/{cardId}/3ds-authorization `{code, approve}` (level 2)."""
        return ThreeDSResponse.model_validate(self._send(respond_3ds_request(card_id, code, approve,
                                                                             idempotency_key)).json())

    def set_frozen(self, card_id: str, freeze: bool, *, idempotency_key: str | None = None) -> None:
        """PATCH /cards/virtual-cards/{cardId}/frozen `{freeze}` (level 3); the platform answers empty."""
        self._mutate("PATCH", "/cards/virtual-cards/{cardId}/frozen", idempotency_key,
                     {"freeze": freeze}, cardId=card_id)

    def freeze_card(self, card_id: str, *, idempotency_key: str | None = None) -> None:
        self.set_frozen(card_id, True, idempotency_key=idempotency_key)

    def unfreeze_card(self, card_id: str, *, idempotency_key: str | None = None) -> None:
        self.set_frozen(card_id, False, idempotency_key=idempotency_key)

    def unblock_card(self, card_id: str, *, idempotency_key: str | None = None) -> UnblockResult:
        """PATCH /cards/virtual-cards/{cardId}/unblock (level 2); also resets the velocity counter."""
        body = self._send(unblock_card_request(card_id, idempotency_key)).json()
        return UnblockResult.model_validate(body if body is not None else {"blocked": False})

    def override_card_virtual_balance(self, card_id: str, virtual_balance: Decimal | int | str, *,
                                      idempotency_key: str | None = None) -> Decimal:
        """PATCH /cards/virtual-cards/{cardId}/virtual-balance (level 2); the new balance (bare number)."""
        return _decimal(self._send(override_card_virtual_balance_request(card_id, virtual_balance,
                                                                          idempotency_key)).json())

    def get_card_virtual_balances(self, card_id: str) -> CardVirtualBalances:
        """GET /cards/virtual-cards/{cardId}/virtual-balances (level 1); 400 APP_ERROR if not TOP_UP."""
        return CardVirtualBalances.model_validate(
            self._get("/cards/virtual-cards/{cardId}/virtual-balances", cardId=card_id))

    def get_card_holding_balance(self) -> CardHoldingBalance:
        """GET /cards/holding/balance (level 1): the warranty balance behind card spending."""
        return CardHoldingBalance.model_validate(self._get("/cards/holding/balance"))

    # --- virtual wallets -------------------------------------------------------------------------
    def get_virtual_wallet(self, wallet_id: str) -> VirtualWallet:
        """GET /virtual-wallets/{walletId} (level 1)."""
        return VirtualWallet.model_validate(self._get("/virtual-wallets/{walletId}", walletId=wallet_id))

    def get_virtual_wallet_balance(self, wallet_id: str) -> list[TokenBalance]:
        """GET /virtual-wallets/{walletId}/balance (level 1)."""
        return _balances.validate_python(
            self._get("/virtual-wallets/{walletId}/balance", walletId=wallet_id) or [])

    def override_virtual_wallet_balance(self, wallet_id: str, virtual_balance: Decimal | int | str, *,
                                        idempotency_key: str | None = None) -> Decimal:
        """PATCH /virtual-wallets/{walletId}/virtual-balance (level 2); the new balance."""
        body = self._mutate("PATCH", "/virtual-wallets/{walletId}/virtual-balance", idempotency_key,
                            {"virtual_balance": _number(virtual_balance)}, walletId=wallet_id)
        return _decimal(body)

    def get_holding_wallet(self, blockchain: str) -> HoldingWallet:
        """GET /virtual-wallets/holding?blockchain= (level 1); 404 when the company has none there."""
        return HoldingWallet.model_validate(
            self._get("/virtual-wallets/holding", params={"blockchain": blockchain}))

    def get_holding_balance(self, blockchain: str) -> list[TokenBalance]:
        """GET /virtual-wallets/holding/balance?blockchain= (level 1)."""
        return _balances.validate_python(
            self._get("/virtual-wallets/holding/balance", params={"blockchain": blockchain}) or [])

    def withdraw_virtual_wallet(self, wallet_id: str, to_wallet_address: str, token_address: str,
                                amount: Decimal | int | str, *,
                                idempotency_key: str | None = None) -> TransferResult | Pending:
        """POST /virtual-wallets/{walletId}/withdraw (level 2); Pending on 302 WARNING."""
        body = {"to_wallet_address": to_wallet_address, "token_address": token_address,
                "amount": _number(amount)}
        reply = self._call("POST", "/virtual-wallets/{walletId}/withdraw", idempotency_key, body,
                           pending_ok=True, path_params={"walletId": wallet_id})
        return reply.pending or TransferResult.model_validate(reply.json())

    # --- treasury --------------------------------------------------------------------------------
    def treasury_transfer(self, account_id: str, wallet_id: str, to: str, amount: Decimal | int | str, *,
                          token_address: str | None = None,
                          idempotency_key: str | None = None) -> TransferResult | Pending:
        """POST /mpc/accounts/{accountId}/wallets/{walletId}/transfer (level 2); Pending on 302 WARNING.

        `token_address` None means the chain's native coin.
        """
        body: dict[str, Any] = {"to": to, "amount": _number(amount)}
        if token_address:
            body["token_address"] = token_address
        reply = self._call("POST", "/mpc/accounts/{accountId}/wallets/{walletId}/transfer", idempotency_key,
                           body, pending_ok=True, path_params={"accountId": account_id, "walletId": wallet_id})
        return reply.pending or TransferResult.model_validate(reply.json())

    def get_treasury_wallet_balance(self, account_id: str, wallet_id: str) -> list[TokenBalance]:
        """GET /mpc/accounts/{accountId}/wallets/{walletId}/balance (level 1)."""
        return _balances.validate_python(self._get("/mpc/accounts/{accountId}/wallets/{walletId}/balance",
                                                   accountId=account_id, walletId=wallet_id) or [])

    # --- plumbing --------------------------------------------------------------------------------
    def _get(self, template: str, params: dict[str, Any] | None = None, **path_params: str) -> Any:
        return self._call("GET", template, None, None, params=params, path_params=path_params).json()

    def _mutate(self, method: str, template: str, idempotency_key: str | None, body: Any,
                **path_params: str) -> Any:
        return self._call(method, template, idempotency_key, body, path_params=path_params).json()

    def _call(self, method: str, template: str, idempotency_key: str | None, body: Any, *,
              params: dict[str, Any] | None = None, path_params: dict[str, str] | None = None,
              pending_ok: bool = False) -> Reply:
        return self._send(request(method, template, idempotency_key, body, params=params,
                                  path_params=path_params, pending_ok=pending_ok))

    def _send(self, req: Request) -> Reply:
        """One attempt. Raises ApiError subclasses (TransientApiError: worth retrying); returns the reply."""
        with request_span(self._tracer, req, self._http.base_url.host) as span:
            reply = self._request(req)
            if span is not None:
                span.set_attribute("http.response.status_code", reply.status)
            return reply

    def _request(self, req: Request) -> Reply:
        self._limiter.acquire()
        started = self._clock()
        try:
            response = self._http.request(req.method, req.path, headers=req.headers, content=req.content,
                                          params=req.params)
        except httpx.TimeoutException as exc:
            observe(req.template, "timeout", self._clock() - started)
            raise ApiTimeoutError(f"{type(exc).__name__}", endpoint=req.template) from None
        except httpx.TransportError as exc:
            observe(req.template, "connection_error", self._clock() - started)
            raise ApiConnectionError(f"{type(exc).__name__}", endpoint=req.template) from None
        observe(req.template, str(response.status_code), self._clock() - started)
        return reply_or_raise(response.status_code, response.content, response.headers, req)


def _number(value: Decimal | int | str | float) -> float | int:
    """Amounts go out as JSON numbers (the API documents decimal numbers)."""
    dec = Decimal(str(value))
    return int(dec) if dec == dec.to_integral_value() and "." not in str(value) else float(dec)


def _decimal(value: Any) -> Decimal:
    if value is None:
        raise PermanentApiError("empty response where a balance was expected")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
