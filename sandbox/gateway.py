"""The platform API's front door: record the call, faults, rate limit, key level, idempotent replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookstream.sandbox.runtime import Sandbox

ACCESS_DENIED = "Access denied. The API Key is not authorized to do this operation."
FAULT_MESSAGES = {
    302: ("WARNING", "Transaction is pending. Please check the status later."),
    429: ("TOO_MANY_REQUESTS", None),
    500: ("SERVER_ERROR", "Internal server error"),
}


class PlatformError(Exception):
    """An error answer in the platform's model: `{code, message}` (429 uses `error_code`)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> tuple[int, bytes, dict[str, str]]:
        field = "error_code" if self.status == 429 else "code"
        return self.status, json.dumps({field: self.code, "message": self.message}).encode(), self.headers


@dataclass
class Call:
    """What a handler gets: the sandbox, path parameters, query and parsed JSON body."""

    sandbox: Sandbox
    params: dict[str, str]
    query: QueryParams
    body: Any
    idempotency_key: str | None


@dataclass
class Reply:
    payload: Any = None
    status: int = 200
    empty: bool = False  # the platform answers some calls with no body at all


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    level: int
    handler: Handler


def to_json(payload: Any) -> bytes:
    """API responses carry amounts as JSON numbers (the platform's "decimal numbers")."""
    return json.dumps(payload, default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def routes(sandbox: Sandbox, endpoints: list[Endpoint]) -> list[Route]:
    return [Route(ep.template, _endpoint(sandbox, ep), methods=[ep.method]) for ep in endpoints]


def _endpoint(sandbox: Sandbox, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        key = request.headers.get("x-api-key")
        idem = request.headers.get("idempotency-key") if ep.method != "GET" else None
        record: dict[str, Any] = {
            "id": len(sandbox.calls) + 1, "at": datetime.now(UTC).isoformat(), "method": ep.method,
            "path": request.url.path, "template": ep.template, "query": dict(request.query_params),
            "body": _parse_for_record(raw), "idempotency_key": idem,
            "traceparent": request.headers.get("traceparent"),  # W3C trace context, when the caller sent one
            "client_ip": request.client.host if request.client else None,
            "key_level": sandbox.state.api_keys.get(key or ""), "status": None, "response": None,
            "replayed": False, "fault": None,
        }
        sandbox.calls.append(record)
        status, content, headers = await _answer(sandbox, ep, request, raw, key, idem, record)
        record["status"] = status
        record["response"] = _parse_for_record(content)
        return Response(content, status_code=status, headers=headers,
                        media_type="application/json" if content else None)

    return endpoint


async def _answer(sandbox: Sandbox, ep: Endpoint, request: Request, raw: bytes, key: str | None,
                  idem: str | None, record: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    try:
        fault = _active_fault(sandbox, ep, request.url.path)
        slow = fault is not None and fault["status"] == 200  # a slow platform: the real answer, late
        if fault is not None and not slow:
            record["fault"] = fault["id"]
            if fault.get("delay_s"):
                await asyncio.sleep(fault["delay_s"])
            return _fault_answer(fault)
        if sandbox.config.rate_limit_enabled:  # counted when the request arrives, however long it then takes
            scopes = [f"ip:{request.client.host if request.client else '-'}"] + ([f"key:{key}"] if key else [])
            retry_after = sandbox.limiter.check(scopes)
            if retry_after is not None:
                raise PlatformError(429, "TOO_MANY_REQUESTS", f"Rate limit exceeded. Retry after {retry_after} seconds",
                                    {"Retry-After": str(retry_after)})
        if slow:
            record["fault"] = fault["id"]
            await asyncio.sleep(fault["delay_s"])
        level = sandbox.state.api_keys.get(key or "")
        if level is None or level < ep.level:
            raise PlatformError(401, "API_ERROR", ACCESS_DENIED)
        if idem and idem in sandbox.idempotent:
            # A repeated Idempotency-Key returns the original result and changes nothing.
            status, content, _ = sandbox.idempotent[idem]
            record["replayed"] = True
            return status, content, {"Idempotent-Replayed": "true"}
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise PlatformError(400, "BAD_REQUEST", "Malformed JSON request") from None
        reply = await ep.handler(Call(sandbox, dict(request.path_params), request.query_params, body, idem))
        result = (reply.status, b"" if reply.empty else to_json(reply.payload), {})
    except PlatformError as exc:
        result = exc.response()
    if idem and result[0] < 500 and result[0] not in (401, 429):
        sandbox.idempotent[idem] = (result[0], result[1], f"{ep.method} {ep.template}")
    return result


def _active_fault(sandbox: Sandbox, ep: Endpoint, path: str) -> dict[str, Any] | None:
    now = sandbox.clock()
    sandbox.faults[:] = [f for f in sandbox.faults
                         if (f["until"] is None or f["until"] > now) and (f["remaining"] is None or f["remaining"] > 0)]
    for fault in sandbox.faults:
        paths = fault["paths"]
        if paths and not any(p == ep.template or path.startswith(p) for p in paths):
            continue
        if fault["remaining"] is not None:
            fault["remaining"] -= 1
        fault["hits"] += 1
        return fault
    return None


def _fault_answer(fault: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    status = fault["status"]
    code, message = FAULT_MESSAGES.get(status, ("SERVER_ERROR" if status >= 500 else "APP_ERROR", "Injected fault"))
    headers: dict[str, str] = {}
    if status == 429:
        retry_after = int(fault.get("retry_after") or 1)
        headers["Retry-After"] = str(retry_after)
        message = f"Rate limit exceeded. Retry after {retry_after} seconds"
    return PlatformError(status, code, fault.get("message") or message or "", headers).response()


def _parse_for_record(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:2000].decode("utf-8", "replace")
