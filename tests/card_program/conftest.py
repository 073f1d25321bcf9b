"""Card program tests: `hookstream process NAME` subprocesses on the real broker and ledger, fed either
with records as the receiver writes them or end to end by `hookstream sandbox` → `hookstream ingest`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.feed import upgrade_ledger
from fixtures.metrics_text import metric
from fixtures.processes import Proc, Processes
from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import ensure_topics
from hookstream.ledger import Ledger
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings

WEBHOOK_KEY = "test-webhook-key-0001"  # make_settings' webhook_keys
API_KEY = "sandbox-key-level-2"
WAIT_S = 45.0  # bound on every wait for a process to act



# --- webhook bodies ------------------------------------------------------------------------------
def envelope(generation: str, product: str, event_type: str, status: str | None, operation_id: str,
             data: dict[str, Any], **top: Any) -> bytes:
    """A webhook body. Generation A as observed traffic: operation/sub_operation, UPPER case values;
    generation B as the current docs: product/event_type, lower case."""
    if generation == "A":
        body: dict[str, Any] = {"operation": product.upper(), "sub_operation": event_type.upper()}
        status = status.upper() if status else status
    else:
        body = {"product": product.lower(), "event_type": event_type.lower()}
    body.update({"operation_id": operation_id, **top, "data": data})
    if status is not None:
        body["status"] = status
    return json.dumps(body).encode()


def card_data(card_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"card_id": card_id, "bill_amount": amount, "bill_currency_code": "USD",
            "transaction_amount": amount, "transaction_currency_code": "USD", "channel": "POS",
            "merchant_data": {"name": "Acme Coffee", "mcc_code": "5812", "country": "USA"}, **extra}



# --- processes -----------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([-+0-9.eEinfNa]+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')



@dataclass
class Running:
    proc: Proc
    port: int
    name: str

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics(), name, **labels)

    def outcome(self, outcome: str) -> float:
        return self.metric("hookstream_processed_total", processor=self.name, outcome=outcome)

    def handled(self) -> float:
        """Records finished (any outcome but retried)."""
        return sum(self.outcome(o) for o in ("ok", "duplicate", "expired", "dead_lettered", "ignored"))

    def healthy(self) -> bool:
        return self.proc.alive() and httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code == 200

    def log_events(self, event: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.proc.output().splitlines()
                if line.startswith("{") and f'"{event}"' in line]


def processor_env(settings: Settings, api_url: str | None = None, **extra: str) -> dict[str, str]:
    return {
        **settings.to_env(),
        "HOOKSTREAM_PROCESSOR_HTTP_PORT": "0",
        "HOOKSTREAM_RETRY_INITIAL_S": "0.3",
        "HOOKSTREAM_RETRY_MAX_S": "3",
        "HOOKSTREAM_RETRY_MAX_ATTEMPTS": "4",
        "HOOKSTREAM_PROCESSOR_SHUTDOWN_TIMEOUT_S": "10",
        "HOOKSTREAM_API_BASE_URL": api_url or "http://127.0.0.1:9",  # nothing listens: no API expected
        "HOOKSTREAM_API_KEY": API_KEY,
        **extra,
    }


@pytest.fixture
def settings(make_settings: Callable[..., Settings], ledger_url: str) -> Settings:
    """This test's topics on the real broker, on the SQLite and the Postgres ledger (upgraded)."""
    s = make_settings(database_url=ledger_url)
    ensure_topics(s, list(TOPICS))
    upgrade_ledger(ledger_url)
    return s


@pytest.fixture
def e2e_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings for end-to-end runs through sandbox and receiver: SQLite ledger (upgraded)."""
    s = make_settings()
    ensure_topics(s, list(TOPICS))
    upgrade_ledger(s.database_url)
    return s


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    books = Ledger(settings.database_url)
    try:
        yield books
    finally:
        books.close()


@pytest.fixture
def e2e_ledger(e2e_settings: Settings) -> Iterator[Ledger]:
    books = Ledger(e2e_settings.database_url)
    try:
        yield books
    finally:
        books.close()



@pytest.fixture
def start_processor(processes: Processes) -> Callable[..., Running]:
    def start(name: str, settings: Settings, api_url: str | None = None, **env: str) -> Running:
        proc = processes.start(["process", name], processor_env(settings, api_url, **env), name=name,
                               ready_text='"processor.ready"', timeout=60)
        line = next(ln for ln in proc.output().splitlines() if '"processor.http"' in ln)
        return Running(proc, int(json.loads(line)["port"]), name)

    return start


@dataclass
class Sandbox:
    proc: Proc
    base: str
    ingest_url: str = ""  # the receiver the sandbox delivers to

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base + path, headers={"x-api-key": API_KEY}, timeout=30, **kwargs)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = httpx.request(method, f"{self.base}/_sandbox/{path}", timeout=30, **kwargs)
        assert reply.status_code < 300, reply.text
        return reply.json()

    def trigger(self, kind: str, **body: Any) -> Any:
        return self.control("POST", f"trigger/{kind}", json=body)

    def deliveries(self, event_type: str) -> list[dict[str, Any]]:
        return self.control("GET", f"deliveries?event_type={event_type}")

    def delivered(self, event_type: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` deliveries of `event_type` were answered 200 by the receiver."""
        return wait_until(lambda: (ok := [d for d in self.deliveries(event_type) if d["outcome"] == "ok"])
                          and len(ok) >= count and ok, f"{count} delivered {event_type}")

    def calls(self, path: str) -> list[dict[str, Any]]:
        return self.control("GET", f"calls?path={path}")


@pytest.fixture
def start_pipeline(processes: Processes, tmp_path: Path) -> Callable[..., Sandbox]:
    """`hookstream ingest` (optionally with an authorization policy) and `hookstream sandbox`
    delivering to it, in generation A or B."""

    def start(settings: Settings, generation: str = "B", policy: str | None = None,
              amounts: str = "number", **ingest_env: str) -> Sandbox:
        ingest_port, sandbox_port = free_port(), free_port()
        env = {"HOOKSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
               "HOOKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
               "HOOKSTREAM_WEBHOOK_KEYS": WEBHOOK_KEY,
               "HOOKSTREAM_SPOOL_DIR": str(tmp_path / "spool"),
               "HOOKSTREAM_DATABASE_URL": settings.database_url}
        if policy:
            env["HOOKSTREAM_AUTHORIZATION_POLICY"] = policy
        env.update(ingest_env)
        processes.start(["ingest", "--port", str(ingest_port)], env, name="ingest",
                        ready_url=f"http://127.0.0.1:{ingest_port}/readyz", timeout=60)
        base = f"http://127.0.0.1:{sandbox_port}"
        proc = processes.start(
            ["sandbox", "--port", str(sandbox_port), "--generation", generation, "--amounts", amounts,
             "--webhook-url", f"http://127.0.0.1:{ingest_port}/webhooks/cryptomate", "--webhook-key", WEBHOOK_KEY],
            {}, name="sandbox", ready_url=f"{base}/_sandbox/healthz", timeout=60)
        return Sandbox(proc, base, f"http://127.0.0.1:{ingest_port}/webhooks/cryptomate")

    return start


def fund(ledger: Ledger, account: str, amount: str, *, cards: dict[str, str | None] | None = None,
         wallets: tuple[str, ...] = ()) -> None:
    """Open `account` with `amount`, link cards (card → approval method) and wallets to it."""
    with ledger.unit_of_work() as uow:
        uow.ensure_account(account)
        if Decimal(amount):
            uow.credit(account, Decimal(amount), f"seed:{account}", memo="seed")
        for card, method in (cards or {}).items():
            uow.link_card(card, account, approval_method=method)
        for wallet in wallets:
            uow.link_wallet(wallet, account)


def balance(ledger: Ledger, account: str) -> tuple[Decimal, Decimal, Decimal]:
    with ledger.unit_of_work(read_only=True) as uow:
        b = uow.balance(account)
        return b.balance, b.held, b.available
