"""What the running dev stack looks like right now: one snapshot from metrics, sandbox, ledger and Kafka."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hookstream.ledger.errors import LedgerError
from hookstream.ledger.models import Balance
from hookstream.ledger.store import Ledger
from hookstream.schemas.routing import TOPICS
from hookstream.settings import Settings

HTTP_TIMEOUT_S = 2.0
Samples = list[tuple[str, dict[str, str], float]]


@dataclass
class Endpoints:
    """Where the stack's parts answer (all on 127.0.0.1)."""

    sandbox: str
    receiver: str
    processors: dict[str, str] = field(default_factory=dict)  # name → base URL of /metrics


@dataclass
class Snapshot:
    at: float
    topics: dict[str, int]  # logical topic → records (sum of end offsets)
    dlq: dict[str, int]  # processor → dead letters
    decisions: dict[str, int]  # response_code → authorizations answered by the receiver
    processed: dict[str, dict[str, int]]  # processor → outcome → count
    treasury_alerts: int
    balances: dict[str, Balance]
    cards: dict[str, dict[str, Any]]  # ledger card state by card id
    deliveries: dict[str, int]  # sandbox webhook delivery outcome → count
    three_ds: list[dict[str, Any]]  # sandbox record of 3DS respond calls
    transactions: list[dict[str, Any]]  # sandbox card transactions
    sandbox_cards: dict[str, dict[str, Any]]  # sandbox card id → virtual_balance, status
    errors: list[str]  # parts that did not answer this time

    def render(self) -> str:
        """Plain text, a few lines, readable in a terminal and in a CI log."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        topics = " ".join(f"{t.removeprefix('cryptomate.')}={n}" for t, n in sorted(self.topics.items()) if n)
        decisions = " ".join(f"{code}×{n}" for code, n in sorted(self.decisions.items())) or "-"
        processed = " ".join(
            f"{p}[{','.join(f'{o}={n}' for o, n in sorted(outcomes.items()) if n)}]"
            for p, outcomes in sorted(self.processed.items()) if any(outcomes.values())) or "-"
        balances = " ".join(f"{a}: balance {b.balance:.2f} held {b.held:.2f} available {b.available:.2f}"
                            for a, b in sorted(self.balances.items())) or "-"
        dlq = " ".join(f"{p}={n}" for p, n in sorted(self.dlq.items())) or "-"
        deliveries = " ".join(f"{o}={n}" for o, n in sorted(self.deliveries.items())) or "-"
        lines = [
            f"[{stamp}] events    {topics or '-'}",
            f"           decisions {decisions}   3ds answered {len(self.three_ds)}"
            f"   treasury alerts {self.treasury_alerts}   deliveries {deliveries}",
            f"           processed {processed}",
            f"           ledger    {balances}",
            f"           dlq       {dlq}",
        ]
        if self.errors:
            lines.append(f"           waiting   {', '.join(self.errors)}")
        return "\n".join(lines)

    def signature(self) -> str:
        """The snapshot without its time: the live summary prints only when this changes."""
        return self.render().split("]", 1)[1]


class Probe:
    """Reads the stack. Every read is bounded; a part that does not answer is listed, not fatal."""

    def __init__(self, settings: Settings, endpoints: Endpoints, accounts: list[str], cards: list[str],
                 processors: list[str]) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.accounts = accounts
        self.cards = cards
        self.processors = processors
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_S)
        self.ledger = Ledger.from_settings(settings)
        self._consumer: Any = None

    def close(self) -> None:
        self.http.close()
        self.ledger.close()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # --- parts -----------------------------------------------------------------------------------
    def metrics(self, base_url: str) -> Samples:
        body = self.http.get(f"{base_url}/metrics").text
        return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(body) for s in fam.samples]

    def sandbox(self, path: str) -> Any:
        response = self.http.get(f"{self.endpoints.sandbox}/_sandbox/{path}")
        response.raise_for_status()
        return response.json()

    def balances(self) -> dict[str, Balance]:
        out: dict[str, Balance] = {}
        with self.ledger.unit_of_work(read_only=True) as uow:
            for account in self.accounts:
                if uow.account_exists(account):
                    out[account] = uow.balance(account)
        return out

    def card_states(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self.ledger.unit_of_work(read_only=True) as uow:
            for card in self.cards:
                state = uow.card_state(card)
                if state is not None:
                    out[card] = {"account": state.account_id, "blocked": state.blocked, "frozen": state.frozen}
        return out

    def topic_sizes(self) -> dict[str, int]:
        """Records per topic (end offsets; nothing is compacted or expired in a dev run)."""
        from kafka import TopicPartition

        from hookstream.kafka import make_consumer
        from hookstream.processors.dlq import dlq_name

        if self._consumer is None:
            self._consumer = make_consumer(self.settings, group_id=None, role="dev-summary",  # type: ignore[arg-type]
                                           request_timeout_ms=5000)
        names = [*TOPICS, *(dlq_name(p) for p in self.processors)]
        existing = self._consumer.topics()
        parts = []
        for logical in names:
            physical = self.settings.topic(logical)
            if physical in existing:
                for p in self._consumer.partitions_for_topic(physical) or ():
                    parts.append((logical, TopicPartition(physical, p)))
        ends = self._consumer.end_offsets([tp for _, tp in parts]) if parts else {}
        sizes: Counter[str] = Counter({n: 0 for n in names if self.settings.topic(n) in existing})
        for logical, tp in parts:
            sizes[logical] += int(ends.get(tp, 0))
        return dict(sizes)

    # --- the snapshot ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        from hookstream.processors.dlq import dlq_name

        errors: list[str] = []

        def attempt(label: str, fn: Any, default: Any) -> Any:
            try:
                return fn()
            except (httpx.HTTPError, LedgerError, ValueError, OSError) as exc:
                errors.append(f"{label} ({type(exc).__name__})")
            except Exception as exc:  # noqa: BLE001 - kafka-python raises plain KafkaError subclasses
                errors.append(f"{label} ({type(exc).__name__})")
            return default

        sizes = attempt("kafka", self.topic_sizes, {})
        dlq_topics = {dlq_name(p): p for p in self.processors}
        topics = {t: n for t, n in sizes.items() if t not in dlq_topics}
        dlq = {dlq_topics[t]: n for t, n in sizes.items() if t in dlq_topics}

        decisions: Counter[str] = Counter()
        for name, labels, value in attempt("receiver", lambda: self.metrics(self.endpoints.receiver), []):
            if name == "hookstream_authorization_decisions_total":
                decisions[labels["response_code"]] += int(value)

        processed: dict[str, dict[str, int]] = {}
        alerts = 0
        for proc, url in self.endpoints.processors.items():
            counts: Counter[str] = Counter()
            for name, labels, value in attempt(proc, lambda u=url: self.metrics(u), []):
                if name == "hookstream_processed_total":
                    counts[labels["outcome"]] += int(value)
                elif name == "hookstream_treasury_alerts_total":
                    alerts += int(value)
            processed[proc] = dict(counts)

        deliveries = Counter(str(d.get("outcome")) for d in attempt("sandbox", lambda: self.sandbox("deliveries"), []))
        three_ds = attempt("sandbox", lambda: self.sandbox("3ds-responses"), [])
        transactions = attempt("sandbox", lambda: self.sandbox("transactions"), [])
        sandbox_cards = attempt("sandbox", lambda: self.sandbox("balances"), {}).get("cards", {})
        return Snapshot(
            at=time.time(), topics=topics, dlq=dlq, decisions=dict(decisions), processed=processed,
            treasury_alerts=alerts, balances=attempt("ledger", self.balances, {}),
            cards=attempt("ledger", self.card_states, {}), deliveries=dict(deliveries), three_ds=three_ds,
            transactions=transactions, sandbox_cards=sandbox_cards, errors=sorted(set(errors)),
        )


def next_steps(endpoints: Endpoints, settings: Settings, account: str, card: str) -> str:
    """What to try once the scenario is over: three commands to paste into another terminal, as is."""
    import shlex

    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (
        ("HOOKSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
        ("HOOKSTREAM_TOPIC_PREFIX", settings.topic_prefix),
        ("HOOKSTREAM_DATABASE_URL", settings.database_url)) if v)
    body = f'{{"card_id": "{card}", "bill_amount": 5}}'
    return "\n".join([
        "scenario over; the stack keeps running (Ctrl-C stops it). Try, in another terminal:",
        f"  curl -s -X POST {endpoints.sandbox}/_sandbox/trigger/authorization "
        f"-H 'content-type: application/json' -d '{body}'   # one more authorization, decided by the ledger",
        f"  {env} hookstream ledger balance {account}   # the hold it placed",
        f"  {env} hookstream lag   # every processor's lag and dead letters, from committed offsets",
    ])


def money(value: Decimal | str | float | int) -> str:
    return f"{Decimal(str(value)):.2f}"
