"""Retry timing: exponential backoff with jitter, Retry-After, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from hookstream.processors.errors import Failure


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays for attempt 1, 2, … : initial·2^(n-1), capped, then jittered down by up to `jitter`.

    Jitter only shortens a delay by at most half, so successive delays still grow until the cap,
    while processes that failed together (a 5xx burst) spread their retries apart.
    """

    initial_s: float
    max_s: float
    max_attempts: int
    jitter: float = 0.5
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_s, self.initial_s * 2 ** min(max(0, attempt - 1), 64))  # no float overflow
        delay = base * (1.0 - self.jitter * self.rand())
        if retry_after is not None:
            # The server said when it can take the call again: never earlier than that.
            delay = max(delay, retry_after)
        return delay


@dataclass(slots=True)
class RetryState:
    """One partition's failing record: which offset, how many attempts, when to try again."""

    offset: int
    attempts: int
    first_failed_at: float  # monotonic
    resume_at: float  # monotonic
    last: Failure


Verdict = Literal["retry", "dead_letter", "expired"]


def next_retry(
    backoff: Backoff,
    failure: Failure,
    attempts: int,
    first_failed_at: float,
    now: float,
    budget_s: float | None = None,
    deadline_in_s: float | None = None,
) -> tuple[Verdict, float]:
    """What to do after failed attempt number `attempts`, and (for "retry") the monotonic time to retry.

    "expired" when the retry would start after the event's deadline (`deadline_in_s` from now);
    "dead_letter" when the failure is permanent, the attempts are used up, or the retry would
    start more than `budget_s` after the first failure. Deadline-bound work (a 3DS answer) is
    retried until its deadline, whatever the attempt count: a long API outage ends in "expired"
    only once the answer can no longer count, never in a dead letter while it still could.
    """
    if not failure.transient:
        return "dead_letter", now
    delay = backoff.delay(attempts, failure.retry_after)
    if deadline_in_s is not None:
        if delay > deadline_in_s:
            return "expired", now
    elif attempts >= backoff.max_attempts:
        return "dead_letter", now
    if budget_s is not None and now + delay - first_failed_at > budget_s:
        return "dead_letter", now
    return "retry", now + delay
