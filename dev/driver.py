"""Plays the scenario through the sandbox's API and waits, bounded, for each step's effects."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from hookstream.dev.scenario import EXPECTED, SIMULATE_KEY, STEPS, Check, Step
from hookstream.dev.summary import Probe, Snapshot

STEP_TIMEOUT_S = 45.0  # one step's effects (a processor rebalance can take ~10 s on a busy machine)
FINAL_TIMEOUT_S = 60.0
POLL_S = 0.5


class ScenarioFailed(RuntimeError):
    pass


class Live:
    """Prints the snapshot when it changed, at most every `every_s` seconds (plain text, no cursor tricks)."""

    def __init__(self, echo: Callable[[str], None], every_s: float = 2.0) -> None:
        self.echo = echo
        self.every_s = every_s
        self._last_at = 0.0
        self._last_sig = ""

    def show(self, snap: Snapshot, force: bool = False) -> None:
        """Print `snap` if it differs from the last one printed; `force` skips the rate limit, not that."""
        now = time.monotonic()
        sig = snap.signature()
        if sig != self._last_sig and (force or now - self._last_at >= self.every_s):
            self.echo(snap.render())
            self._last_at, self._last_sig = now, sig


class Driver:
    def __init__(self, probe: Probe, live: Live, echo: Callable[[str], None],
                 should_stop: Callable[[], bool] = lambda: False,
                 broken: Callable[[], str | None] = lambda: None) -> None:
        self.broken = broken  # what died in the stack, if anything: no point waiting then
        self.probe = probe
        self.live = live
        self.echo = echo
        self.should_stop = should_stop
        self.http = httpx.Client(base_url=probe.endpoints.sandbox, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def play(self, steps: list[Step] = STEPS) -> None:
        for number, step in enumerate(steps, 1):
            self.echo(f"step {number}/{len(steps)}: {step.title}")
            started = time.monotonic()
            self.act(step)
            self.wait_for(step.until, STEP_TIMEOUT_S, step.title)
            self.echo(f"step {number}/{len(steps)}: done in {time.monotonic() - started:.1f}s")

    def verify(self, expected: list[Check] = EXPECTED) -> tuple[bool, Snapshot]:
        """Wait (bounded) until every expected check holds; the last snapshot either way."""
        try:
            return True, self.wait_for(expected, FINAL_TIMEOUT_S, "expected final state")
        except ScenarioFailed:
            return False, self.probe.snapshot()

    # --- actions ---------------------------------------------------------------------------------
    def act(self, step: Step) -> None:
        kind, _, name = step.action.partition("/")
        if kind == "simulate":
            response = self.http.post(f"/cards/webhook/simulate/{name}", json=step.body,
                                      headers={"x-api-key": SIMULATE_KEY})
        elif kind == "trigger":
            response = self.http.post(f"/_sandbox/trigger/{name}", json=step.body)
        elif step.action == "expired_3ds":
            response = self.http.post("/_sandbox/trigger/raw",
                                      json={"body": self.expired_challenge(step.body), "policy": "no_retry"})
        else:
            raise ScenarioFailed(f"unknown action {step.action!r}")
        if response.status_code >= 300:
            raise ScenarioFailed(f"{step.action} answered {response.status_code}: {response.text[:300]}")

    def expired_challenge(self, body: dict[str, Any]) -> dict[str, Any]:
        """A 3DS challenge envelope whose transaction_timestamp is older than the TTL, in the sandbox's format."""
        from hookstream.sandbox.config import SandboxConfig
        from hookstream.sandbox.envelope import build_envelope

        current = self.http.get("/_sandbox/config").json()
        config = SandboxConfig(generation=current["generation"], casing=current["casing"],
                               amounts=current["amounts"])
        at = datetime.now(UTC) - timedelta(seconds=float(body["age_s"]))
        code = str(uuid.uuid4())
        data = {"code": code, "card_id": body["card_id"], "merchant_name": "Dev Late Shop",
                "merchant_country_code": "USA", "transaction_amount": Decimal(str(body["transaction_amount"])),
                "transaction_currency": "USD",
                "transaction_timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        return build_envelope(config, "cards", "notification_3ds_authorization", "pending", code, data)

    # --- waiting ---------------------------------------------------------------------------------
    def wait_for(self, checks: list[Check], timeout: float, what: str) -> Snapshot:
        deadline = time.monotonic() + timeout
        while True:
            snap = self.probe.snapshot()
            self.live.show(snap)
            if all(c.holds(snap) for c in checks):
                return snap
            if self.should_stop():
                raise KeyboardInterrupt
            if (dead := self.broken()) is not None:
                raise ScenarioFailed(f"{what}: {dead}")
            if time.monotonic() >= deadline:
                failing = "; ".join(f"{c.label}: expected {c.expected}, got {c.actual(snap)}"
                                    for c in checks if not c.holds(snap))
                self.live.show(snap, force=True)
                raise ScenarioFailed(f"{what}: not reached within {timeout:.0f}s ({failing})")
            time.sleep(POLL_S)


def result_table(checks: list[Check], snap: Snapshot) -> str:
    """The final summary: one line per expected value, with what was found."""
    width = max(len(c.label) for c in checks)
    lines = [f"  {'check':<{width}}  {'expected':>9}  {'actual':>9}"]
    for c in checks:
        actual = c.actual(snap)
        lines.append(f"  {c.label:<{width}}  {c.expected:>9}  {actual:>9}  {'ok' if actual == c.expected else 'MISMATCH'}")
    return "\n".join(lines)
