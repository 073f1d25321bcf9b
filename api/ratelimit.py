"""A thread-safe token bucket that keeps one process under the platform's 15 requests/s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `acquire()` blocks until a token is free.

    The platform doubles its penalty on every violation (cryptomate.md §5.7), so staying under the
    limit is cheaper than retrying after a 429. Clock and sleep are injectable for tests.
    """

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # Any burst above one lets `burst + rate` requests into some one-second window, which is
        # exactly what the platform counts: by default requests are spaced evenly at 1/rate.
        self.burst = float(burst) if burst is not None else 1.0
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going into debt); the wait before the caller may proceed."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Block until the request may be sent; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
