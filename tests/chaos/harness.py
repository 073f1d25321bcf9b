"""The chaos run's stack and its faults: `hookstream dev`'s Stack on a broker the test may restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from hookstream.broker import LocalBroker, LocalCluster
from hookstream.dev.stack import Stack, StackOptions
from hookstream.dev.supervisor import Child
from hookstream.kafka import connection_config, make_admin
from hookstream.settings import Settings

READY_S = 120.0


@dataclass
class Fault:
    name: str
    started: float
    ended: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


class Chaos:
    """Starts the stack as `hookstream dev` does and causes the faults; remembers each one it caused."""

    def __init__(self, run_dir: Path, broker: LocalBroker | LocalCluster, database_url: str | None,
                 seed: dict[str, Any],
                 links: list[list[str]], echo: Callable[[str], None]) -> None:
        self.broker = broker
        self.echo = echo
        self.stack = Stack(StackOptions(run_dir=run_dir, kafka_bootstrap=broker.bootstrap,
                                        topic_prefix=f"chaos-{os.getpid()}-{int(time.time())}.",
                                        database_url=database_url, seed=seed, links=links),
                           echo, lambda: False)
        self.faults: list[Fault] = []
        self.starts: dict[str, int] = {}  # child name → times the harness started it

    # --- the stack ---------------------------------------------------------------------------------
    def start(self) -> None:
        endpoints = self.stack.start()
        self.sandbox, self.receiver = endpoints.sandbox, endpoints.receiver
        self.processor_urls = endpoints.processors
        self.starts = {c.name: 1 for c in self.children()}

    def settings(self) -> Settings:
        return self.stack.settings()

    def children(self) -> list[Child]:
        assert self.stack.supervisor is not None
        return list(self.stack.supervisor.children)

    def child(self, name: str) -> Child:
        return next(c for c in self.children() if c.name == name)

    def stop(self) -> None:
        self.stack.stop()

    # --- faults ------------------------------------------------------------------------------------
    def restart_broker(self, outage_s: float) -> Fault:
        fault = Fault("broker_restart", time.time(), detail={"outage_s": outage_s})
        self.broker.stop()
        time.sleep(outage_s)
        self.broker.start()
        return self._done(fault)

    def kill_leader(self, logical_topic: str, down_s: float) -> Fault:
        """SIGKILL the broker leading the partition of `logical_topic` that holds most records (a 3-broker
        cluster), wait `down_s`, start it again on its data and wait until it leads or follows again."""
        assert isinstance(self.broker, LocalCluster), "a leader kill needs the 3-broker cluster"
        topic = self.settings().topic(logical_topic)
        admin = make_admin(self.settings())
        try:
            (described,) = admin.describe_topics([topic])
            ends = self._end_offsets(topic, [p["partition_index"] for p in described["partitions"]])
            busiest = max(described["partitions"], key=lambda p: ends.get(p["partition_index"], 0))
        finally:
            admin.close()
        leader = busiest["leader_id"]
        fault = Fault("leader_kill", time.time(), detail={"topic": topic, "partition": busiest["partition_index"],
                                                          "leader": leader, "down_s": down_s})
        self.broker.broker(leader).kill()
        time.sleep(down_s)
        self.broker.broker(leader).start()
        return self._done(fault)

    def _end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        consumer = KafkaConsumer(**connection_config(self.settings()), enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def kill_processor(self, name: str) -> Fault:
        """SIGKILL the processor's process group (its dispatcher thread dies with it), then start it again."""
        old = self.child(name)
        fault = Fault(f"sigkill_{name}", time.time(), detail={"pid": old.pid})
        os.killpg(old.pid, signal.SIGKILL)
        old.popen.wait(timeout=10)
        port = self.processor_urls[name].rsplit(":", 1)[1]
        self._again(old, ["process", name], {"HOOKSTREAM_PROCESSOR_HTTP_PORT": port},
                    ready=lambda c, before: c.output().count("processor.ready") > before)
        return self._done(fault)

    def restart_receiver(self) -> Fault:
        """SIGTERM (the receiver drains its spool), then the same command on the same port."""
        old = self.child("ingest")
        fault = Fault("receiver_restart", time.time(), detail={"pid": old.pid})
        assert self.stack.supervisor is not None
        self.stack.supervisor.stop(old)
        port = self.receiver.rsplit(":", 1)[1]
        policy = "hookstream.ingest.policy:ledger_policy"
        self._again(old, ["ingest", "--port", port], {"HOOKSTREAM_AUTHORIZATION_POLICY": policy},
                    ready=lambda _c, _b: _ok(f"{self.receiver}/readyz"))
        return self._done(fault)

    def api_outage(self, seconds: float, paths: list[str]) -> Fault:
        """The sandbox API answers 500 for half the time, then 429 with Retry-After for the other half."""
        fault = Fault("api_outage", time.time(), detail={"seconds": seconds, "paths": paths})
        half = seconds / 2
        for status, extra in ((500, {}), (429, {"retry_after": 2})):
            reply = httpx.post(f"{self.sandbox}/_sandbox/faults", timeout=10,
                               json={"status": status, "seconds": half, "paths": paths, **extra})
            assert reply.status_code == 201, reply.text
            time.sleep(half)
        faults = httpx.get(f"{self.sandbox}/_sandbox/faults", timeout=10).json()
        fault.detail["active_after"] = len(faults)
        return self._done(fault)

    def _again(self, old: Child, args: list[str], env: dict[str, str],
               ready: Callable[[Child, int], bool]) -> None:
        assert self.stack.supervisor is not None
        sup = self.stack.supervisor
        sup.children.remove(old)
        before = old.output().count("processor.ready")
        new = sup.start(old.name, args, env=env)
        self.starts[old.name] = self.starts.get(old.name, 0) + 1
        deadline = time.monotonic() + READY_S
        while not ready(new, before):
            if not new.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{old.name} did not come back:\n{new.tail()}")
            time.sleep(0.2)

    def _done(self, fault: Fault) -> Fault:
        fault.ended = time.time()
        self.faults.append(fault)
        self.echo(f"chaos: {fault.name} done in {fault.ended - fault.started:.1f}s")
        return fault


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def lag(settings: Settings, processors: list[str]) -> int:
    """Records on each processor's topics that its consumer group has not committed yet (all partitions)."""
    from hookstream.kafka import make_admin
    from hookstream.processors.registry import load
    from hookstream.processors.runtime import group_id

    admin = make_admin(settings)
    consumer = KafkaConsumer(**connection_config(settings), enable_auto_commit=False, group_id=None)
    try:
        behind = 0
        for name in processors:
            group = group_id(name, settings)
            committed = admin.list_group_offsets({group: None}).get(group, {})
            tps = [TopicPartition(settings.topic(t), p) for t in load(name).topics
                   for p in sorted(consumer.partitions_for_topic(settings.topic(t)) or ())]
            for tp, end in consumer.end_offsets(tps).items():
                done = committed.get(tp)
                behind += end - (done.offset if done is not None and done.offset >= 0 else 0)
        return behind
    finally:
        consumer.close()
        admin.close()


def read_all(settings: Settings, logical: list[str], timeout: float = 60.0) -> dict[str, list[Any]]:
    """Every record of the given topics, read from the beginning to the end offsets of now."""
    consumer = KafkaConsumer(**connection_config(settings), enable_auto_commit=False, group_id=None)
    try:
        out: dict[str, list[Any]] = {}
        tps: list[TopicPartition] = []
        for name in logical:
            topic = settings.topic(name)
            out[name] = []
            parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return out
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        by_topic = {settings.topic(n): n for n in logical}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                out[by_topic[tp.topic]].extend(batch)
        return out
    finally:
        consumer.close()
