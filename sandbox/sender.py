"""The webhook sender: the platform's delivery schedule, run as asyncio tasks in the sandbox process."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from hookstream.logs import get_logger
from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.envelope import headers_for
from hookstream.sandbox.state import Company

log = get_logger("hookstream.sandbox.sender")

# regular: 30 s timeout, up to 10 attempts, 1 s doubling; authorization: one attempt within the
# deadline, timeout = decline; no_retry: informational events such as 3DS challenges (§1.5).
Policy = Literal["regular", "authorization", "no_retry"]


@dataclass(frozen=True)
class AuthorizationAnswer:
    """What the customer's endpoint answered to an authorization (or that it did not in time)."""

    approved: bool
    response_code: str | None  # None: no usable answer (timeout, error, non-200, no body)
    outcome: str  # ok | timeout | http_error | connection_error | no_url | bad_body


class WebhookSender:
    """Delivers envelopes to the company's webhook URL and records every attempt and its answer."""

    def __init__(self, config: SandboxConfig, company: Callable[[], Company],
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._company = company
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._event_ids = itertools.count(1)
        self.deliveries: list[dict[str, Any]] = []

    # --- public ---------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any], policy: Policy = "regular", *, duplicate: int | None = None,
               delay_s: float | None = None) -> int:
        """Deliver in the background (regular or no_retry); returns the event's sandbox id."""
        event_id = next(self._event_ids)
        copies = 1 + (self.config.duplicate if duplicate is None else duplicate)
        delay = self.config.delivery_delay_s if delay_s is None else delay_s
        self.spawn(self._deliver(event_id, body, policy, copies, delay))
        return event_id

    async def authorize(self, body: dict[str, Any], *, duplicate: int | None = None,
                        delay_s: float | None = None) -> AuthorizationAnswer:
        """Send one authorization and wait for the decision; never retried (platform §3)."""
        event_id = next(self._event_ids)
        delay = self.config.delivery_delay_s if delay_s is None else delay_s
        if delay:
            await asyncio.sleep(delay)
        answer = await self._authorization_attempt(event_id, body, copy=1)
        extra = self.config.duplicate if duplicate is None else duplicate
        if extra:
            # A redelivered authorization: its answer is recorded but no longer decides anything.
            self.spawn(self._duplicates(event_id, body, extra))
        return answer

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def pending(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- delivery ---------------------------------------------------------------------------------
    async def _deliver(self, event_id: int, body: dict[str, Any], policy: Policy, copies: int,
                       delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        for copy in range(1, copies + 1):
            if policy == "authorization":
                await self._authorization_attempt(event_id, body, copy)
            elif policy == "no_retry":
                await self._attempt(event_id, body, policy, 1, copy, self.config.regular_timeout_s)
            else:
                await self._regular(event_id, body, copy)

    async def _duplicates(self, event_id: int, body: dict[str, Any], extra: int) -> None:
        for copy in range(2, extra + 2):
            await self._authorization_attempt(event_id, body, copy)

    async def _regular(self, event_id: int, body: dict[str, Any], copy: int) -> None:
        for attempt in range(1, self.config.max_attempts + 1):
            record = await self._attempt(event_id, body, "regular", attempt, copy, self.config.regular_timeout_s)
            if record["delivered"] or record["outcome"] == "no_url":
                return
            if attempt < self.config.max_attempts:
                await asyncio.sleep(self.config.retry_base_s * 2 ** (attempt - 1))
        log.warning("sandbox.delivery.gave_up", event_id=event_id, attempts=self.config.max_attempts,
                    event_type=_event_type(body))

    async def _authorization_attempt(self, event_id: int, body: dict[str, Any], copy: int) -> AuthorizationAnswer:
        record = await self._attempt(event_id, body, "authorization", 1, copy, self.config.authorization_timeout_s)
        code: str | None = None
        outcome = record["outcome"]
        if outcome == "ok":
            try:
                answer = json.loads(record["answer"] or "null")
                code = str(answer["response_code"]) if isinstance(answer, dict) and "response_code" in answer else None
            except ValueError:
                code = None
            if code is None:
                outcome = "bad_body"
        approved = code in ("00", "SUCCESS")
        record["decision"] = "approved" if approved else "declined"
        return AuthorizationAnswer(approved=approved, response_code=code, outcome=outcome)

    async def _attempt(self, event_id: int, body: dict[str, Any], policy: Policy, attempt: int, copy: int,
                       timeout_s: float) -> dict[str, Any]:
        company = self._company()  # read per attempt: a rotated key applies to the very next delivery
        record: dict[str, Any] = {
            "id": len(self.deliveries) + 1, "event_id": event_id, "policy": policy, "attempt": attempt,
            "copy": copy, "operation_id": body.get("operation_id"), "event_type": _event_type(body),
            "product": body.get("product", body.get("operation")), "status": body.get("status"),
            "url": company.webhook_url, "sent_at": datetime.now(UTC).isoformat(), "sent_at_epoch": time.time(),
            "http_status": None, "answer": None, "latency_ms": None, "outcome": None, "delivered": False,
            "body": body,
        }
        self.deliveries.append(record)
        if not company.webhook_url:
            record["outcome"] = "no_url"
            return record
        content = json.dumps(body).encode()
        started = time.monotonic()
        try:
            response = await self._post(company.webhook_url, content,
                                        headers_for(self.config, company.webhook_key), timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            record["outcome"] = "timeout"
        except httpx.HTTPError as exc:
            record["outcome"] = "connection_error"
            record["answer"] = type(exc).__name__
        else:
            record["http_status"] = response.status_code
            record["answer"] = response.text[:2000]
            ok = response.status_code == 200 or (self.config.generation == "A" and 200 <= response.status_code < 300)
            record["outcome"] = "ok" if ok else "http_error"
            record["delivered"] = ok
        record["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
        log.info("sandbox.delivery", event_id=event_id, event_type=record["event_type"], attempt=attempt,
                 policy=policy, outcome=record["outcome"], http_status=record["http_status"],
                 latency_ms=record["latency_ms"])
        return record

    async def _post(self, url: str, content: bytes, headers: dict[str, str], timeout_s: float) -> httpx.Response:
        """The answer within `timeout_s`, else TimeoutError — without ever cancelling the request.

        httpcore 1.0 leaks a pool slot when a request waiting for a connection is cancelled (encode/httpcore#1093):
        the 20,000-event chaos run ended with 96 of the 100 connections in CLOSE-WAIT, held by the pool, and
        every later delivery waiting for a slot until its deadline. So no request waits for a slot (`_http`:
        no connection limit; the platform's emission rate and the deadlines bound them), and the attempt stops
        waiting at its deadline while the request ends on its own, in the background, by httpx's timeouts
        (connect, write, read: each at most `timeout_s`); its late answer is dropped.
        """
        request = self.spawn(self._http().post(url, content=content, headers=headers,
                                               timeout=httpx.Timeout(timeout_s)))
        request.add_done_callback(_consume)
        done, _ = await asyncio.wait({request}, timeout=timeout_s)
        if not done:
            raise TimeoutError(f"no answer within {timeout_s}s")
        return request.result()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, transport=self._transport,
                                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))
        return self._client


def _consume(task: asyncio.Task[Any]) -> None:
    """A request whose attempt stopped waiting: its outcome is not needed (and must not be reported unretrieved)."""
    if not task.cancelled():
        task.exception()


def _event_type(body: dict[str, Any]) -> Any:
    return body.get("event_type", body.get("sub_operation"))
