"""The platform's rate limit (§5.7): 15 requests/s per IP and per key, doubling penalty blocks."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Scope:
    hits: deque[float] = field(default_factory=deque)
    violations: int = 0
    blocked_until: float = 0.0


class PenaltyLimiter:
    """A sliding-window counter per scope ("ip:…", "key:…") with the platform's penalty schedule.

    Over the limit: the scope is blocked for 1, 2, 4, 8 … s (the 9th and later violations: the
    5-minute maximum). While blocked every request is refused without using quota. The violation
    count resets after `reset_after_s` (1 h) without a violation.
    """

    def __init__(self, limit: int = 15, window_s: float = 1.0, *, penalty_cap_s: float = 300.0,
                 reset_after_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.penalty_cap_s = penalty_cap_s
        self.reset_after_s = reset_after_s
        self.clock = clock
        self._scopes: dict[str, _Scope] = {}

    def penalty(self, violations: int) -> float:
        """Block length of the n-th violation: 1, 2, 4 … s, and the cap from the 9th on."""
        if violations >= 9:
            return self.penalty_cap_s
        return min(self.penalty_cap_s, float(2 ** (violations - 1)))

    def check(self, scopes: Iterable[str]) -> int | None:
        """None when the request may pass (and is counted), else the Retry-After in whole seconds."""
        now = self.clock()
        states = [self._scopes.setdefault(name, _Scope()) for name in scopes]
        for scope in states:
            if scope.violations and now - scope.blocked_until >= self.reset_after_s:
                scope.violations = 0
            if scope.blocked_until > now:
                return max(1, math.ceil(scope.blocked_until - now))
        for scope in states:
            while scope.hits and scope.hits[0] <= now - self.window_s:
                scope.hits.popleft()
        for scope in states:
            if len(scope.hits) >= self.limit:
                scope.violations += 1
                penalty = self.penalty(scope.violations)
                scope.blocked_until = now + penalty
                return max(1, math.ceil(penalty))
        for scope in states:
            scope.hits.append(now)
        return None

    def violations(self, scope: str) -> int:
        return self._scopes.get(scope, _Scope()).violations

    def reset(self) -> None:
        self._scopes.clear()
