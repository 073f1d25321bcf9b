"""The local stack of `hookstream dev`: which verbs run, with which environment, in which order."""

from __future__ import annotations

import importlib.util
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hookstream.dev.scenario import API_KEY, LINKS, SEED
from hookstream.dev.summary import Endpoints
from hookstream.dev.supervisor import Child, ChildFailed, Supervisor, free_port
from hookstream.settings import Settings

# The receiver's ledger-backed policy (holds when available covers bill_amount); the static policy
# (always the fallback code) until that module exists.
AUTHORIZATION_POLICY = "hookstream.ingest.policy:ledger_policy"
STATIC_POLICY = "hookstream.ingest.authorization:static_policy"
PARTITIONS = 3  # one process per processor needs no more; fewer partitions rebalance faster
BROKER_READY_S = 180.0  # first run may fetch the Kafka jars with mvn
READY_S = 90.0
READY_LINE = re.compile(r"kafka ready: bootstrap=(\S+) pid=(\d+)")


def policy_available(spec: str = AUTHORIZATION_POLICY) -> bool:
    module, _, attr = spec.partition(":")
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except ModuleNotFoundError:
        return False
    return hasattr(importlib.import_module(module), attr)


def registered_processors() -> list[str]:
    """Every processor in the registry (entry-point group hookstream.processors): the dev stack runs them all."""
    from hookstream.processors.registry import registered

    return sorted(registered())


@dataclass
class StackOptions:
    run_dir: Path
    generation: str = "B"
    kafka_bootstrap: str | None = None  # an existing broker; None starts one
    topic_prefix: str = ""


@dataclass
class Stack:
    options: StackOptions
    echo: Callable[[str], None]
    should_stop: Callable[[], bool]
    webhook_key: str = field(default_factory=lambda: f"dev-{secrets.token_hex(12)}")
    sandbox_port: int = field(default_factory=free_port)
    receiver_port: int = field(default_factory=free_port)
    bootstrap: str = ""
    processors: list[str] = field(default_factory=list)
    endpoints: Endpoints | None = None
    supervisor: Supervisor | None = None

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.options.run_dir / 'ledger.db').resolve()}"

    def settings(self) -> Settings:
        """The settings every child gets, also used by `hookstream dev` itself to read the stack."""
        return Settings(kafka_bootstrap=self.bootstrap, topic_prefix=self.options.topic_prefix,
                        topic_partitions=PARTITIONS, database_url=self.database_url,
                        spool_dir=(self.options.run_dir / "spool").resolve())

    def env(self) -> dict[str, str]:
        return {
            "HOOKSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "HOOKSTREAM_TOPIC_PREFIX": self.options.topic_prefix,
            "HOOKSTREAM_TOPIC_PARTITIONS": str(PARTITIONS),
            "HOOKSTREAM_WEBHOOK_KEYS": self.webhook_key,
            "HOOKSTREAM_DATABASE_URL": self.database_url,
            "HOOKSTREAM_SPOOL_DIR": str((self.options.run_dir / "spool").resolve()),
            "HOOKSTREAM_API_BASE_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "HOOKSTREAM_API_KEY": API_KEY,
            "HOOKSTREAM_LOG_FORMAT": "json",
        }

    # --- start -----------------------------------------------------------------------------------
    def start(self) -> Endpoints:
        """Start everything; returns once every part is ready. ChildFailed when one is not."""
        run_dir = self.options.run_dir
        self.bootstrap = self.options.kafka_bootstrap or ""
        sup = self.supervisor = Supervisor(run_dir, {}, self.echo)
        started = time.monotonic()

        broker: Child | None = None
        if not self.options.kafka_bootstrap:
            broker = sup.start("kafka", ["kafka", "run", "--port", str(free_port()),
                                         "--data-dir", str((run_dir / "kafka").resolve())], stop_timeout_s=40.0)
        sandbox = sup.start("sandbox", [
            "sandbox", "--port", str(self.sandbox_port), "--generation", self.options.generation,
            "--webhook-url", f"http://127.0.0.1:{self.receiver_port}/webhooks/cryptomate",
            "--webhook-key", self.webhook_key])

        if broker is not None:
            sup.wait_ready(broker, text="kafka ready:", timeout=BROKER_READY_S, should_stop=self.should_stop)
            match = READY_LINE.search(broker.output())
            if match is None:
                raise ChildFailed(f"kafka printed no bootstrap:\n{broker.tail()}")
            self.bootstrap = match.group(1)
            broker.orphans.append(int(match.group(2)))  # the JVM runs in its own session
            self.echo(f"kafka ready: bootstrap={self.bootstrap} jvm pid={match.group(2)}")
        sup.env = self.env()

        upgrade = sup.start("db-upgrade", ["db", "upgrade"])
        sup.run("topics", ["topics", "create", "--all-processors"], timeout=READY_S)
        self._finish(upgrade)
        links = [sup.start(f"link-{i}", ["ledger", "link", *args]) for i, args in enumerate(LINKS)]

        policy = AUTHORIZATION_POLICY if policy_available() else STATIC_POLICY
        if policy == STATIC_POLICY:
            self.echo(f"note: {AUTHORIZATION_POLICY} not found; the receiver uses {STATIC_POLICY} "
                      "(declines every authorization)")
        receiver = sup.start("ingest", ["ingest", "--port", str(self.receiver_port)],
                             env={"HOOKSTREAM_AUTHORIZATION_POLICY": policy})

        self.processors = registered_processors()
        ports = {p: free_port() for p in self.processors}
        workers = [sup.start(p, ["process", p], env={"HOOKSTREAM_PROCESSOR_HTTP_PORT": str(ports[p])})
                   for p in self.processors]

        for link in links:
            self._finish(link)
        sup.wait_ready(sandbox, url=f"http://127.0.0.1:{self.sandbox_port}/_sandbox/healthz", timeout=READY_S,
                       should_stop=self.should_stop)
        seeded = httpx.post(f"http://127.0.0.1:{self.sandbox_port}/_sandbox/seed?replace=false", json=SEED,
                            timeout=10.0)
        if seeded.status_code != 200:
            raise ChildFailed(f"sandbox seed answered {seeded.status_code}: {seeded.text[:300]}")
        self.echo(f"seeded sandbox: {seeded.json()['cards']} cards; ledger links: "
                  f"{', '.join(' '.join(a[:2]) for a in LINKS)} → {LINKS[0][3]}")
        sup.wait_ready(receiver, url=f"http://127.0.0.1:{self.receiver_port}/readyz", timeout=READY_S,
                       should_stop=self.should_stop)
        for worker in workers:
            sup.wait_ready(worker, text="processor.ready", timeout=READY_S, should_stop=self.should_stop)

        self.endpoints = Endpoints(
            sandbox=f"http://127.0.0.1:{self.sandbox_port}", receiver=f"http://127.0.0.1:{self.receiver_port}",
            processors={p: f"http://127.0.0.1:{ports[p]}" for p in self.processors})
        self.echo(f"hookstream dev ready in {time.monotonic() - started:.1f}s: kafka={self.bootstrap} "
                  f"sandbox={self.endpoints.sandbox} receiver={self.endpoints.receiver}/webhooks/cryptomate "
                  f"processors={','.join(self.processors) or '-'} ledger={self.database_url} run_dir={run_dir}")
        return self.endpoints

    def _finish(self, child: Child, timeout: float = READY_S) -> None:
        assert self.supervisor is not None
        try:
            code = child.popen.wait(timeout=timeout)
        except Exception:
            self.supervisor.stop(child)
            raise ChildFailed(f"{child.name} did not finish within {timeout:.0f}s:\n{child.tail()}") from None
        self.supervisor.children.remove(child)
        if code != 0:
            raise ChildFailed(f"{child.name} exited {code}:\n{child.tail()}")

    def broken(self) -> str | None:
        """Which long-running part exited on its own (with its log tail), or None."""
        dead = self.supervisor.failed() if self.supervisor else []
        return "; ".join(f"{c.name} exited {c.popen.returncode}:\n{c.tail()}" for c in dead) or None

    # --- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Everything but the broker together (processors drain), then the broker."""
        if self.supervisor is not None:
            self.supervisor.stop_all(last=("kafka",))
