"""Authorization decisions: a pluggable policy answered within the budget, or the fallback code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import itertools
import time
import uuid
from collections import OrderedDict
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

RECENT_ANSWERS = 32_768  # answers kept in memory for redeliveries (~6 MB); the ledger keeps them all
LOOKUP_SHARE, LOOKUP_MAX_S = 0.15, 0.1  # of a booked decision's budget, kept for reading the answer on record

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

    def recorded(self, request: AuthorizationRequest) -> Awaitable[Decision | None]:
        """The answer on record for this dedup key (any delivery's), read beside the deciding path: asked
        only when the decision failed or ran out of budget, before the fallback code is answered."""
        ...

    # Optional: `problem() -> str | None`, why the policy cannot decide at all (e.g. its ledger needs
    # `hookstream db upgrade`); /readyz answers 503 with it. Called on the event loop: never block.


def static_policy(settings: Settings) -> Policy:
    """A fixed answer (`HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.authorization:static_policy`):
    every authorization gets HOOKSTREAM_AUTHORIZATION_STATIC_CODE (the default policy is the ledger's,
    `hookstream.ingest.policy:ledger_policy`)."""
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
    `authorization_budget_ms` no matter what.

    A delivery of an authorization answered before gets that answer again: from memory (this process's
    recent answers, or the first delivery's decision still being made), or from the policy's record
    (asked before any fallback is answered), so only a request nobody decided gets the fallback code."""

    def __init__(self, settings: Settings, policy: Policy | BookedPolicy) -> None:
        self._policy = policy
        self._fallback = settings.authorization_fallback_code
        booked = getattr(policy, "decide", None)
        self._booked: Callable[[AuthorizationRequest], Awaitable[Decision]] | None = booked
        self._record_fallback: Callable[[AuthorizationRequest, Decision], None] | None = (
            getattr(policy, "fallback", None) if booked is not None else None)
        self._lookup: Callable[[AuthorizationRequest], Awaitable[Decision | None]] | None = (
            getattr(policy, "recorded", None) if booked is not None else None)
        self._threads = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="hookstream-policy")
        self._answers: OrderedDict[str, Decision] = OrderedDict()  # dedup key → the answer given first
        self._deciding: dict[str, asyncio.Future[Decision]] = {}  # dedup key → its first delivery's answer

    def problem(self) -> str | None:
        """Why the policy cannot decide at all (its optional `problem()`), else None: the receiver is not ready."""
        check = getattr(self._policy, "problem", None)
        return check() if check is not None else None

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._policy, "close", None)
        if close is not None:
            close()

    async def decide(self, request: AuthorizationRequest, budget_s: float) -> tuple[Decision, float]:
        """The decision and its latency in seconds."""
        started = time.perf_counter()
        key = request.dedup_key
        decision = self._answers.get(key)
        if decision is None and (first := self._deciding.get(key)) is not None:
            # a redelivery while the first delivery is decided: its answer (given by its own deadline,
            # which comes before this one's)
            await asyncio.wait((first,), timeout=budget_s)
            if first.done() and not first.cancelled():
                decision = first.result()
        if decision is None:
            decision = await self._first(request, max(budget_s - (time.perf_counter() - started), 0.005))
        elapsed = time.perf_counter() - started
        metrics.authorization_seconds.observe(elapsed)
        metrics.authorization_decisions.labels(decision.response_code, decision.reason).inc()
        return decision, elapsed

    async def _first(self, request: AuthorizationRequest, budget_s: float) -> Decision:
        """Decide (this process has no answer for the event yet) and remember the answer given."""
        key = request.dedup_key
        answered: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._deciding.setdefault(key, answered)
        try:
            decision = await self._run(request, budget_s)
        except BaseException:
            answered.cancel()  # the request itself was cancelled: a redelivery waiting decides itself
            raise
        finally:
            if self._deciding.get(key) is answered:
                del self._deciding[key]
        answered.set_result(decision)
        self._answers[key] = decision
        if len(self._answers) > RECENT_ANSWERS:
            self._answers.popitem(last=False)
        return decision

    async def _run(self, request: AuthorizationRequest, budget_s: float) -> Decision:
        lookup_s = min(LOOKUP_MAX_S, budget_s * LOOKUP_SHARE) if self._lookup is not None else 0.0
        work: Awaitable[Decision] = (
            self._booked(request) if self._booked is not None
            else asyncio.wrap_future(self._threads.submit(self._policy, request))  # type: ignore[arg-type]
        )
        try:
            return await asyncio.wait_for(work, budget_s - lookup_s)  # on timeout the decision is cancelled
        except TimeoutError:
            cause = "timeout"
        except Exception as exc:  # noqa: BLE001 - a policy bug or a lost database must still be answered
            log.error("authorization.policy_failed", error=type(exc).__name__,
                      operation_id=loggable_operation_id(request.envelope))
            cause = "error"
        recorded = await self._recorded(request, lookup_s)
        if recorded is not None:  # e.g. another receiver (or this one before a restart) answered it
            log.info("authorization.recorded_answer", operation_id=loggable_operation_id(request.envelope),
                     cause=cause, response_code=recorded.response_code)
            return recorded
        return self._fall_back(request, cause)

    async def _recorded(self, request: AuthorizationRequest, timeout_s: float) -> Decision | None:
        if self._lookup is None:
            return None
        try:
            return await asyncio.wait_for(self._lookup(request), max(timeout_s, 0.005))
        except Exception:  # noqa: BLE001 - no answer on record in time: the fallback is answered
            return None

    def _fall_back(self, request: AuthorizationRequest, cause: str) -> Decision:
        decision = Decision(self._fallback, cause)
        metrics.authorization_fallbacks.labels(cause).inc()
        if self._record_fallback is not None:  # make it the answer on record (and undo a late hold)
            self._record_fallback(request, decision)
        return decision
