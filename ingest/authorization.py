"""Authorization decisions: a pluggable policy answered within the budget, or the fallback code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hookstream import metrics
from hookstream.domain.authorization import APPROVED
from hookstream.logs import get_logger
from hookstream.schemas.envelope import Envelope
from hookstream.schemas.events import Authorization
from hookstream.schemas.routing import loggable_operation_id
from hookstream.settings import Settings

log = get_logger(__name__)

_ATTEMPTS = itertools.count()
_PROCESS = uuid.uuid4().hex[:12]


def _next_attempt() -> str:
    return f"{_PROCESS}-{next(_ATTEMPTS)}"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """One delivery of an authorization; `attempt` tells deliveries of the same event apart."""

    envelope: Envelope
    data: Authorization
    dedup_key: str
    attempt: str = field(default_factory=_next_attempt)


@dataclass(frozen=True, slots=True)
class Decision:
    response_code: str
    reason: str
    hold_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.response_code in APPROVED


class Policy(Protocol):
    """Called in a worker thread (it may block) for policies that keep no books."""

    def __call__(self, request: AuthorizationRequest) -> Decision: ...


class BookedPolicy(Protocol):
    """A policy whose answers have effects (holds) and are recorded: decided on the event loop.

    `decide` is cancelled when the budget runs out (a decision not sent yet must then never be made);
    `fallback` is told of every fallback answer, on the loop, and must only queue the work of making
    that answer the one on record (undoing a late decision's hold)."""

    def decide(self, request: AuthorizationRequest) -> Awaitable[Decision]: ...

    def fallback(self, request: AuthorizationRequest, decision: Decision) -> None: ...


def static_policy(settings: Settings) -> Policy:
    """The default policy (`HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.authorization:static_policy`):
    every authorization gets HOOKSTREAM_AUTHORIZATION_STATIC_CODE."""
    code = settings.authorization_static_code

    def decide(request: AuthorizationRequest) -> Decision:
        return Decision(code, "static")

    return decide


def load_policy(spec: str, settings: Settings) -> Policy | BookedPolicy:
    """Load `module:attr`. A class or a function taking `settings` builds the policy: a callable
    (called with an AuthorizationRequest in a worker thread: it may do blocking I/O) or a
    BookedPolicy (decided on the event loop)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"authorization policy must be 'module:attribute', got {spec!r}")
    target: Any = getattr(importlib.import_module(module_name), attr)
    policy = target(settings)
    if not callable(policy) and not callable(getattr(policy, "decide", None)):
        raise TypeError(f"{spec} did not build a callable policy")
    return policy


class Decider:
    """Runs the policy (off the loop, or on it for a BookedPolicy) and answers within
    `authorization_budget_ms` no matter what."""

    def __init__(self, settings: Settings, policy: Policy | BookedPolicy) -> None:
        self._policy = policy
        self._fallback = settings.authorization_fallback_code
        booked = getattr(policy, "decide", None)
        self._booked: Callable[[AuthorizationRequest], Awaitable[Decision]] | None = booked
        self._record_fallback: Callable[[AuthorizationRequest, Decision], None] | None = (
            getattr(policy, "fallback", None) if booked is not None else None)
        self._threads = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="hookstream-policy")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._policy, "close", None)
        if close is not None:
            close()

    async def decide(self, request: AuthorizationRequest, budget_s: float) -> tuple[Decision, float]:
        """The decision and its latency in seconds."""
        started = time.perf_counter()
        work: Awaitable[Decision] = (
            self._booked(request) if self._booked is not None
            else asyncio.wrap_future(self._threads.submit(self._policy, request))  # type: ignore[arg-type]
        )
        try:
            decision = await asyncio.wait_for(work, budget_s)  # on timeout the decision is cancelled
        except TimeoutError:
            decision = self._fall_back(request, "timeout")
        except Exception as exc:  # noqa: BLE001 - a policy bug or a lost database must still be answered
            log.error("authorization.policy_failed", error=type(exc).__name__,
                      operation_id=loggable_operation_id(request.envelope))
            decision = self._fall_back(request, "error")
        elapsed = time.perf_counter() - started
        metrics.authorization_seconds.observe(elapsed)
        metrics.authorization_decisions.labels(decision.response_code, decision.reason).inc()
        return decision, elapsed

    def _fall_back(self, request: AuthorizationRequest, cause: str) -> Decision:
        decision = Decision(self._fallback, cause)
        metrics.authorization_fallbacks.labels(cause).inc()
        if self._record_fallback is not None:  # make it the answer on record (and undo a late hold)
            self._record_fallback(request, decision)
        return decision
