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
    # Kafka's own format: URL-safe base64 of 16 random bytes, no padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise BrokerError("java (17+) not found on PATH")
    return java


@dataclass
class LocalBroker:
    """One combined broker+controller KRaft node on 127.0.0.1, started and stopped by PID."""

    data_dir: Path | None = None
    port: int | None = None
    controller_port: int | None = None
    heap: str = "512m"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

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
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="hookstream-kafka-"))
            self._owns_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self.data_dir / "hookstream-broker.json"
        remembered = json.loads(state.read_text()) if state.is_file() else {}
        fixed_ports = self.port is not None or "port" in remembered
        self.port = self.port or remembered.get("port") or free_port()
        self.controller_port = self.controller_port or remembered.get("controller_port") or free_port()
        attempts = 1 if fixed_ports else 3
        for attempt in range(attempts):
            try:
                self._launch(libs)
                self._wait_ready(timeout)
                state.write_text(json.dumps({"port": self.port, "controller_port": self.controller_port}))
                return self.bootstrap
            except _PortInUse:
                if attempt + 1 == attempts:
                    raise BrokerError(f"ports {self.port}/{self.controller_port} are in use") from None
                self.port, self.controller_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _config(self) -> Path:
        assert self.data_dir is not None
        template = (kafka_home() / "server.properties.template").read_text()
        rendered = template.format(
            port=self.port, controller_port=self.controller_port, data_dir=self.data_dir / "log"
        )
        path = self.data_dir / "server.properties"
        path.write_text(rendered)
        return path

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
                self._jvm(libs, "256m") + ["-XX:TieredStopAtLevel=1", "kafka.tools.StorageTool", "format",
                                            "-t", _cluster_id(), "-c", str(config)],
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
