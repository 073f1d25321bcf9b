"""The local Apache Kafka broker: jars from Maven Central, one KRaft node on loopback, run by PID."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hookstream.logs import get_logger

log = get_logger(__name__)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    """The local broker could not be prepared or started."""


def kafka_home() -> Path:
    """deploy/kafka: the pom.xml, server.properties template and log4j2 config (package data when installed)."""
    env = os.environ.get("HOOKSTREAM_KAFKA_HOME")
    if env:
        return Path(env)
    import hookstream.kafka_home as files  # deploy/kafka in a checkout, site-packages/hookstream/kafka_home installed

    return Path(files.__file__).resolve().parent


def cache_root() -> Path:
    env = os.environ.get("HOOKSTREAM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hookstream"


def resolve_jars(home: Path | None = None, quiet: bool = True) -> Path:
    """Copy the broker's jars into the cache with mvn, once per pom.xml content."""
    home = home or kafka_home()
    pom = home / "pom.xml"
    if not pom.is_file():
        raise BrokerError(f"no pom.xml at {pom} (set HOOKSTREAM_KAFKA_HOME)")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    libs = cache_root() / "kafka" / digest / "libs"
    stamp = libs.parent / "resolved.stamp"
    if stamp.is_file() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka jars; install it (apt-get install maven)")
    tmp = libs.parent / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(1, "-q")
    log.info("kafka.jars.resolving", pom=str(pom), into=str(libs))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise BrokerError(f"mvn failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    stamp.write_text(digest)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id() -> str:
    # Kafka's own format: URL-safe base64 of 16 random bytes, no padding. Like Kafka's Uuid.randomUuid,
    # never one starting with "-": kafka-storage's argument parser takes it for an option (1 draw in 64).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise BrokerError("java (17+) not found on PATH")
    return java


def _data_dir(data_dir: Path | None, prefix: str) -> tuple[Path, bool]:
    """The data directory, made if missing (a new temporary one when None), and whether it was created here."""
    created = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix=prefix)) if data_dir is None else data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir, created


def _remembered(state: Path) -> dict:
    """Ports (and a cluster's id) kept by an earlier run in the same data directory."""
    return json.loads(state.read_text()) if state.is_file() else {}


# Secured listeners a test broker opens beside PLAINTEXT: listener name → security protocol.
SECURED_LISTENERS = {"SASL_SSL": "SASL_SSL", "SSL": "SSL", "MTLS": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}


@dataclass
class SecuredListener:
    """Secured listeners beside PLAINTEXT, all with one PEM key and certificate chain and one set of users:
    SASL_SSL and SASL_PLAINTEXT (SCRAM-SHA-256/512 and PLAIN), SSL (TLS only) and, with `client_ca_pem`, MTLS
    (TLS that requires a client certificate signed by that CA).

    The certificate should name `localhost` (the advertised host name) so that clients can check it.
    """

    key_pem: str
    cert_chain_pem: str
    users: dict[str, str]
    client_ca_pem: str | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [n for n in SECURED_LISTENERS if n != "MTLS" or self.client_ca_pem]

    @property
    def port(self) -> int | None:
        return self.ports.get("SASL_SSL")


def _escape_property(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _apply_overrides(rendered: str, overrides: dict[str, str]) -> str:
    """Replace `key=` lines of a rendered server.properties and append the keys it does not have."""
    lines, seen = [], set()
    for line in rendered.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in overrides:
            line = f"{key}={overrides[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    return "\n".join(lines) + "\n"


@dataclass
class LocalBroker:
    """One combined broker+controller KRaft node on 127.0.0.1, started and stopped by PID.

    Alone by default; `LocalCluster` sets `node_id`, `voters`, `cluster_id` and replication `overrides`.
    """

    data_dir: Path | None = None
    port: int | None = None
    controller_port: int | None = None
    heap: str = "512m"
    secured: SecuredListener | None = None
    node_id: int = 1
    voters: str | None = None  # controller.quorum.voters; default: this node alone
    cluster_id: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secured_bootstrap(self) -> str:
        return self.listener_bootstrap("SASL_SSL")

    def listener_bootstrap(self, name: str) -> str:
        """`localhost:PORT` of a secured listener (`SECURED_LISTENERS`), as the broker advertises it."""
        assert self.secured is not None
        return f"localhost:{self.secured.ports[name]}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "broker.log"

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Resolve jars, format storage if new, start the JVM, return once clients are served."""
        libs = resolve_jars()
        self.data_dir, created = _data_dir(self.data_dir, "hookstream-kafka-")
        self._owns_dir = self._owns_dir or created
        remembered = _remembered(self.data_dir / "hookstream-broker.json")
        fixed_ports = self.port is not None or "port" in remembered
        self.port = self.port or remembered.get("port") or free_port()
        self.controller_port = self.controller_port or remembered.get("controller_port") or free_port()
        if self.secured is not None:
            known = remembered.get("secured_ports", {})
            self.secured.ports = {n: self.secured.ports.get(n) or known.get(n) or free_port()
                                  for n in self.secured.names}
        attempts = 1 if fixed_ports else 3
        for attempt in range(attempts):
            try:
                self._launch(libs)
                self._wait_ready(timeout)
                self._remember()
                return self.bootstrap
            except _PortInUse:
                if attempt + 1 == attempts:
                    raise BrokerError(f"ports {self.port}/{self.controller_port} are in use") from None
                self.port, self.controller_port = free_port(), free_port()
                if self.secured is not None:
                    self.secured.ports = {n: free_port() for n in self.secured.names}
        raise AssertionError("unreachable")

    def _remember(self) -> None:
        assert self.data_dir is not None
        state = {"port": self.port, "controller_port": self.controller_port}
        if self.secured is not None:
            state["secured_ports"] = self.secured.ports
        (self.data_dir / "hookstream-broker.json").write_text(json.dumps(state))

    def _config(self) -> Path:
        assert self.data_dir is not None
        template = (kafka_home() / "server.properties.template").read_text()
        rendered = template.format(
            port=self.port, controller_port=self.controller_port, data_dir=self.data_dir / "log"
        )
        overrides = dict(self.overrides)
        if self.node_id != 1 or self.voters:
            overrides["node.id"] = str(self.node_id)
            overrides["controller.quorum.voters"] = self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}"
        if self.secured is not None:
            overrides |= self._secured_properties(self.secured)
        if overrides:
            rendered = _apply_overrides(rendered, overrides)
        path = self.data_dir / "server.properties"
        path.write_text(rendered)
        return path

    def _secured_properties(self, secured: SecuredListener) -> dict[str, str]:
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in secured.users.items())
        names = secured.names
        props = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
                         + ",".join(f"{n}://127.0.0.1:{secured.ports[n]}" for n in names),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                                    + ",".join(f"{n}://localhost:{secured.ports[n]}" for n in names),
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                                              + ",".join(f"{n}:{SECURED_LISTENERS[n]}" for n in names),
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        }
        for name in names:
            prefix = f"listener.name.{name.lower()}."
            if SECURED_LISTENERS[name].startswith("SASL_"):
                props |= {
                    prefix + "scram-sha-256.sasl.jaas.config": scram,
                    prefix + "scram-sha-512.sasl.jaas.config": scram,
                    prefix + "plain.sasl.jaas.config":
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
                }
            if SECURED_LISTENERS[name].endswith("SSL"):
                props |= {
                    prefix + "ssl.keystore.type": "PEM",
                    prefix + "ssl.keystore.key": _escape_property(secured.key_pem),
                    prefix + "ssl.keystore.certificate.chain": _escape_property(secured.cert_chain_pem),
                }
        if secured.client_ca_pem:
            props |= {
                "listener.name.mtls.ssl.client.auth": "required",
                "listener.name.mtls.ssl.truststore.type": "PEM",
                "listener.name.mtls.ssl.truststore.certificates": _escape_property(secured.client_ca_pem),
            }
        return props

    def _format_args(self, config: Path) -> list[str]:
        args = ["kafka.tools.StorageTool", "format", "-t", self.cluster_id or _cluster_id(), "-c", str(config)]
        for name, password in (self.secured.users.items() if self.secured else ()):
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        return args

    def _jvm(self, libs: Path, heap_max: str, heap_min: str | None = None) -> list[str]:
        args = [_java(), f"-Xmx{heap_max}", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={kafka_home() / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.data_dir}", "-cp", f"{libs}/*"]
        if heap_min:
            args.insert(1, f"-Xms{heap_min}")
        return args

    def _launch(self, libs: Path) -> None:
        assert self.data_dir is not None
        config = self._config()
        if not (self.data_dir / "log" / "meta.properties").is_file():
            fmt = subprocess.run(
                self._jvm(libs, "256m") + ["-XX:TieredStopAtLevel=1"] + self._format_args(config),
                capture_output=True, text=True, timeout=120,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"storage format failed: {fmt.stdout[-2000:]} {fmt.stderr[-2000:]}")
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self._jvm(libs, self.heap, "256m") + ["kafka.Kafka", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        log.info("kafka.broker.starting", pid=self._proc.pid, port=self.port, data_dir=str(self.data_dir))

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient

        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self._proc = None
                if "Address already in use" in tail:
                    raise _PortInUse()
                raise BrokerError(f"broker exited with {code}; log tail:\n{tail}")
            try:
                # The PLAINTEXT port opens only once the broker is unfenced (SocketServer defers it).
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.2)
                continue
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    admin.describe_cluster()
                finally:
                    admin.close()
                log.info("kafka.broker.ready", bootstrap=self.bootstrap, pid=self._proc.pid)
                return
            except Exception:  # noqa: BLE001 - any client failure means "not ready yet"
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"broker not ready within {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (Kafka's shutdown hook stops cleanly), then SIGKILL after `timeout`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.info("kafka.broker.stopped", pid=proc.pid, code=proc.returncode)

    def kill(self) -> None:
        """SIGKILL, for outage tests."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def remove(self) -> None:
        """Stop and delete a data directory this object created."""
        self.stop()
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class _PortInUse(Exception):
    pass


# Internal topics and hookstream's own topics can survive one broker loss with acks=all.
CLUSTER_OVERRIDES = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "unclean.leader.election.enable": "false",
    # a killed broker is fenced (and leaves every ISR, its partitions get new leaders) within ~3 s, not 9 s
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}


@dataclass
class LocalCluster:
    """`nodes` combined broker+controller KRaft nodes on 127.0.0.1 with a static controller quorum."""

    nodes: int = 3
    data_dir: Path | None = None
    heap: str = "384m"
    brokers: list[LocalBroker] = field(default_factory=list, init=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def broker(self, node_id: int) -> LocalBroker:
        return self.brokers[node_id - 1]

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Format every node with one cluster id, start them all, return once each one serves clients."""
        if self.nodes < 1:
            raise BrokerError("a cluster needs at least one node")
        libs = resolve_jars()
        self.data_dir, created = _data_dir(self.data_dir, "hookstream-kafka-cluster-")
        self._owns_dir = self._owns_dir or created
        state = self.data_dir / "hookstream-cluster.json"
        remembered = _remembered(state)
        cluster_id = remembered.get("cluster_id") or _cluster_id()
        ports = remembered.get("ports") or [[free_port(), free_port()] for _ in range(self.nodes)]
        if len(ports) != self.nodes:
            raise BrokerError(f"{self.data_dir} holds a {len(ports)}-node cluster, not {self.nodes}")
        voters = ",".join(f"{i + 1}@127.0.0.1:{cport}" for i, (_, cport) in enumerate(ports))
        overrides = CLUSTER_OVERRIDES if self.nodes >= 3 else {}
        self.brokers = [
            LocalBroker(data_dir=self.data_dir / f"node-{i + 1}", port=port, controller_port=cport, heap=self.heap,
                        node_id=i + 1, voters=voters, cluster_id=cluster_id, overrides=dict(overrides))
            for i, (port, cport) in enumerate(ports)
        ]
        state.write_text(json.dumps({"cluster_id": cluster_id, "ports": ports}))
        try:
            for broker in self.brokers:  # a quorum is needed before any node unfences: launch all, then wait
                broker.data_dir.mkdir(parents=True, exist_ok=True)
                broker._launch(libs)
            for broker in self.brokers:
                broker._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        for broker in self.brokers:
            broker.stop(timeout)

    def remove(self) -> None:
        self.stop()
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def alive(self) -> bool:
        return all(b._proc is not None and b._proc.poll() is None for b in self.brokers)
