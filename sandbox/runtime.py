"""The sandbox's live parts in one object: state, settings, sender, platform behaviour and records."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import httpx

from hookstream.logs import register_secrets
from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.flows import Platform
from hookstream.sandbox.ratelimit import PenaltyLimiter
from hookstream.sandbox.sender import WebhookSender
from hookstream.sandbox.state import DEFAULT_SEED, State


class Sandbox:
    """One emulated platform. `clock` drives rate limits, TTLs, velocity windows and faults."""

    def __init__(self, seed: dict[str, Any] | None = None, config: SandboxConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.seed = copy.deepcopy(seed if seed is not None else DEFAULT_SEED)
        self.config = config or SandboxConfig()
        self.clock = clock
        self.state = State()
        self.sender = WebhookSender(self.config, lambda: self.state.company, transport=transport)
        self.platform = Platform(self.state, self.config, self.sender, clock)
        self.limiter = PenaltyLimiter(clock=clock)
        self.configure_limiter()
        self.calls: list[dict[str, Any]] = []
        self.three_ds_responses: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.idempotent: dict[str, tuple[int, bytes, str]] = {}  # key → (status, body, "METHOD template")
        self.load(self.seed)

    def load(self, seed: dict[str, Any], *, replace: bool = True) -> None:
        self.state.load(seed, replace=replace)
        register_secrets(list(self.state.api_keys) + [self.state.company.webhook_key or ""])
        if replace:
            self.idempotent.clear()
            self.limiter.reset()

    def configure_limiter(self) -> None:
        """Apply the rate-limit settings (after POST /_sandbox/config)."""
        self.limiter.limit = self.config.rate_limit_per_s
        self.limiter.window_s = self.config.rate_limit_window_s
        self.limiter.penalty_cap_s = self.config.penalty_cap_s
        self.limiter.reset_after_s = self.config.penalty_reset_s

    def set_webhook(self, url: str | None = None, key: str | None = None) -> None:
        if url is not None:
            self.state.company.webhook_url = url or None
        if key is not None:
            self.state.company.webhook_key = key or None
            register_secrets([key])
