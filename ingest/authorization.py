"""Authorization decisions: a pluggable policy answered within the budget, or the fallback code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hookstream import metrics
from hookstream.logs import get_logger
from hookstream.schemas.envelope import Envelope
from hookstream.schemas.events import Authorization
from hookstream.schemas.routing import loggable_operation_id
from hookstream.settings import Settings

log = get_logger(__name__)

APPROVED = frozenset({"00", "SUCCESS"})  # platform: "00" or "SUCCESS" approve, anything else declines


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    envelope: Envelope
    data: Authorization
    dedup_key: str


@dataclass(frozen=True, slots=True)
class Decision:
    response_code: str
    reason: str
    hold_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.response_code in APPROVED


class Policy(Protocol):
    """Called in a worker thread (it may block). A policy may also offer `submit(request) ->
    concurrent.futures.Future[Decision]` (used instead, e.g. to batch; a future cancelled before it
    runs must not be decided) and `compensate(request, decision)` (undo an approval that arrived after
    the fallback answer; called on the event loop, so it must only queue the work)."""

    def __call__(self, request: AuthorizationRequest) -> Decision: ...


def static_policy(settings: Settings) -> Policy:
    """The default policy (`HOOKSTREAM_AUTHORIZATION_POLICY=hookstream.ingest.authorization:static_policy`):
    every authorization gets HOOKSTREAM_AUTHORIZATION_STATIC_CODE."""
    code = settings.authorization_static_code

    def decide(request: AuthorizationRequest) -> Decision:
        return Decision(code, "static")

    return decide


def load_policy(spec: str, settings: Settings) -> Policy:
    """Load `module:attr`. A class or a function taking `settings` builds the policy; the policy is
    then called with an AuthorizationRequest (in a worker thread: it may do blocking I/O)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"authorization policy must be 'module:attribute', got {spec!r}")
    target: Any = getattr(importlib.import_module(module_name), attr)
    policy = target(settings)
    if not callable(policy):
        raise TypeError(f"{spec} did not build a callable policy")
    return policy


class Decider:
    """Runs the policy off the loop and answers within `authorization_budget_ms` no matter what."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self._policy = policy
        self._fallback = settings.authorization_fallback_code
        self._compensate: Callable[[AuthorizationRequest, Decision], None] | None = getattr(
            policy, "compensate", None
        )
        self._threads = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="hookstream-policy")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._policy, "close", None)
        if close is not None:
            close()

    async def decide(self, request: AuthorizationRequest, budget_s: float) -> tuple[Decision, float]:
        """The decision and its latency in seconds."""
        started = time.perf_counter()
        submit = getattr(self._policy, "submit", None)  # a policy that batches hands back a future
        pending: concurrent.futures.Future[Decision] = (
            submit(request) if submit else self._threads.submit(self._policy, request)
        )
        work = asyncio.wrap_future(pending)
        try:
            decision = await asyncio.wait_for(asyncio.shield(work), budget_s)
        except TimeoutError:
            # Not started yet: it never will be (nothing to undo). Already deciding: undo it after.
            if not pending.cancel():
                work.add_done_callback(lambda f: self._late(request, f))
            decision = Decision(self._fallback, "timeout")
            metrics.authorization_fallbacks.labels("timeout").inc()
        except Exception as exc:  # noqa: BLE001 - a policy bug must still be answered in time
            log.error("authorization.policy_failed", error=type(exc).__name__,
                      operation_id=loggable_operation_id(request.envelope))
            decision = Decision(self._fallback, "error")
            metrics.authorization_fallbacks.labels("error").inc()
        elapsed = time.perf_counter() - started
        metrics.authorization_seconds.observe(elapsed)
        metrics.authorization_decisions.labels(decision.response_code, decision.reason).inc()
        return decision, elapsed

    def _late(self, request: AuthorizationRequest, future: asyncio.Future[Decision]) -> None:
        """A decision that came after the fallback answer: undo what it did (e.g. release its hold)."""
        if future.cancelled() or future.exception() is not None:
            return
        decision = future.result()
        log.warning("authorization.late_decision", operation_id=loggable_operation_id(request.envelope),
                    response_code=decision.response_code)
        if decision.approved and self._compensate is not None:
            self._compensate(request, decision)  # must not block: a policy queues the undo
