"""The one Kafka client factory: producers, consumers and admin clients built from Settings."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, RetriableError, TopicAlreadyExistsError
from kafka.producer.transaction_manager import InitProducerIdHandler, TransactionState

from hookstream.logs import get_logger, register_secrets
from hookstream.settings import Settings

log = get_logger(__name__)


# One-shot verbs (topics, dlq, lag) report an unreachable broker within this, not kafka-python's 30 s.
TOOL_BOOTSTRAP_TIMEOUT_MS = 10_000


def _client_id(settings: Settings, role: str) -> str:
    return f"{settings.kafka_client_id}-{role}-{socket.gethostname()}-{os.getpid()}"


def connection_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security: the part of every client's config that says how to reach the brokers.

    Settings already refused a bad combination (`kafka_security_problem`), so this only maps names.
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        config |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    if settings.kafka_security_protocol.endswith("SSL"):
        config["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        for key, value in (("ssl_cafile", settings.kafka_ssl_cafile), ("ssl_certfile", settings.kafka_ssl_certfile),
                           ("ssl_keyfile", settings.kafka_ssl_keyfile)):
            if value:
                config[key] = str(value)
        if settings.kafka_ssl_key_password:
            config["ssl_password"] = settings.kafka_ssl_key_password.get_secret_value()
    register_secrets(s.get_secret_value() for s in (settings.kafka_sasl_password, settings.kafka_ssl_key_password)
                     if s is not None)
    return config


class KafkaUnavailable(RuntimeError):
    """The brokers cannot be used with these settings; str() is one line saying which step failed and why."""


def _tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else None
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile), password)
    return context


# ApiVersions v0 (api key 18), correlation id 1, no client id: brokers answer it on every listener before SASL.
_API_VERSIONS = struct.pack(">ihhih", 10, 18, 0, 1, -1)
# TLS alerts a broker sends when it refuses the client's certificate (Java sends bad_certificate for a missing one)
_CLIENT_CERT_ALERTS = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA",
                       "SSLV3_ALERT_CERTIFICATE_UNKNOWN"}


def _tls_problem(settings: Settings, exc: ssl.SSLError) -> str:
    if exc.reason in _CLIENT_CERT_ALERTS:
        if not settings.kafka_ssl_certfile:
            return ("the broker requires a client certificate "
                    "(set HOOKSTREAM_KAFKA_SSL_CERTFILE and HOOKSTREAM_KAFKA_SSL_KEYFILE)")
        return f"the broker refused the client certificate ({exc.reason}: is it signed by a CA the broker trusts?)"
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def _answers(sock: socket.socket, server: str) -> None:
    """Send ApiVersions and read the answer's size: proves a Kafka listener speaking this protocol is there.

    With TLS 1.3 a broker refuses a missing or untrusted client certificate only after the client's handshake
    has finished, so this read is where mTLS failures show.
    """
    sock.sendall(_API_VERSIONS)
    if len(sock.recv(4)) < 4:
        raise KafkaUnavailable(f"{server} closed the connection without answering "
                               "(check HOOKSTREAM_KAFKA_SECURITY_PROTOCOL against the listener)")


def _reach(settings: Settings, deadline: float) -> None:
    """TCP, then TLS when configured, then one ApiVersions request, to the first bootstrap server that answers;
    raise with the last reason."""
    reason = "no bootstrap servers"
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        step = "connect to"
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.5, deadline - time.monotonic())) as sock:
                if settings.kafka_security_protocol.endswith("SSL"):
                    step = "TLS handshake with"
                    with _tls_context(settings).wrap_socket(sock, server_hostname=host) as tls:
                        step = "TLS session with"
                        _answers(tls, server)
                else:
                    step = "Kafka request to"
                    _answers(sock, server)
            return
        except KafkaUnavailable as exc:
            reason = str(exc)
        except ssl.SSLError as exc:
            reason = f"{step} {server} failed: {_tls_problem(settings, exc)}"
        except TimeoutError:
            reason = f"{step} {server}: no answer in time"
        except ValueError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = (f"cannot connect to {server}: {exc.strerror or exc}" if step == "connect to"
                      else f"{step} {server} failed: {exc.strerror or exc}")
    raise KafkaUnavailable(reason)


def check_connection(settings: Settings, timeout: float = 10.0) -> int:
    """Reach the brokers as every client does (TCP, TLS, SASL) and describe the cluster, within `timeout`.

    Returns the number of brokers; raises KafkaUnavailable with one line naming the failed step. Meant for
    start-up checks and readiness probes: kafka-python itself retries a refused login or an untrusted
    certificate until its own timeout and then says only "Unable to bootstrap".
    """
    deadline = time.monotonic() + timeout
    _reach(settings, deadline)
    quiet = logging.getLogger("kafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the one line below replaces kafka-python's retry chatter
    try:
        left_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        admin = make_admin(settings, request_timeout_ms=left_ms, bootstrap_timeout_ms=left_ms)
        try:
            return len(admin.describe_cluster()["brokers"])
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - any client failure is reported as one line
        where = f"{settings.kafka_security_protocol} {settings.kafka_bootstrap}"
        if settings.kafka_security_protocol.startswith("SASL_"):
            raise KafkaUnavailable(
                f"{where}: connected, but SASL {settings.kafka_sasl_mechanism} login as "
                f"{settings.kafka_sasl_username!r} did not succeed within {timeout:g}s "
                "(check HOOKSTREAM_KAFKA_SASL_USERNAME/PASSWORD/MECHANISM)"
            ) from None
        raise KafkaUnavailable(f"{where}: no broker answered within {timeout:g}s ({type(exc).__name__})") from None
    finally:
        quiet.setLevel(level)


def make_producer(settings: Settings, role: str = "producer", **overrides: Any) -> KafkaProducer:
    """A durable producer: acks=all, idempotent, bounded waits (never unbounded blocking)."""
    timeout_ms = int(settings.delivery_timeout_s * 1000)
    config: dict[str, Any] = {
        **connection_config(settings),
        "client_id": _client_id(settings, role),
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": settings.kafka_linger_ms,
        "batch_size": 64 * 1024,
        "retries": 2**31 - 1,
        "retry_backoff_ms": 100,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
        "request_timeout_ms": max(1000, min(timeout_ms, 30000)),
        "delivery_timeout_ms": max(timeout_ms + 1000, 2000),
        "max_block_ms": timeout_ms,
        "allow_auto_create_topics": False,
        "metrics_enabled": False,  # kafka-python's own sensors cost ~3% of the request path; we export ours
    }
    config.update(overrides)
    producer = KafkaProducer(**config)
    reinitialize_after_reset(producer)  # every producer: receiver, processors, dispatcher, DLQ tools
    return producer


def reinitialize_after_reset(producer: KafkaProducer) -> None:
    """Make an idempotent kafka-python 3.0 producer fetch a new producer id after it dropped its own, and keep
    asking when that request times out.

    1. `TransactionManager.reset_producer_id()` (called when a batch that was already sent expires, i.e.
       an outage longer than delivery_timeout_ms) clears the producer id but leaves the state READY, and
       `init_producer_id()` only acts from UNINITIALIZED, so `Sender.run_once()` returns early forever:
       the producer never sends again. The Java client moves to UNINITIALIZED on this reset
       (`resetIdempotentProducerId`), which is what this does.
    2. The InitProducerId request that follows goes to a broker that has just come back; if it times out
       client-side (RequestTimedOutError), kafka-python's `TxnRequestHandler.on_complete` treats that as an
       unknown error and moves the producer to FATAL_ERROR: every later batch is aborted. Only a lost
       connection is retried there. A retriable error is retried here the same way (the Java client retries
       both).
    """
    manager = producer._transaction_manager
    if manager is None or manager.is_transactional() or "reset_producer_id" in vars(manager):
        return  # not idempotent, transactional, or already repaired
    reset = manager.reset_producer_id
    enqueue = manager._enqueue_request

    def reset_and_reinitialize() -> None:
        with manager._lock:
            reset()
            if manager._current_state == TransactionState.READY:
                manager._current_state = TransactionState.UNINITIALIZED
        log.warning("kafka.producer.id_reset", reason="a sent batch expired; a new producer id is requested")

    def enqueue_retrying(handler: Any) -> None:
        if isinstance(handler, InitProducerIdHandler) and "on_complete" not in vars(handler):
            complete = handler.on_complete

            def on_complete(correlation_id: int, response_or_exc: Any) -> None:
                if (isinstance(response_or_exc, RetriableError) and not isinstance(response_or_exc, KafkaConnectionError)
                        and correlation_id == manager._in_flight_request_correlation_id):
                    manager.clear_in_flight_transactional_request_correlation_id()
                    log.warning("kafka.producer.id_request_retry", error=type(response_or_exc).__name__)
                    handler.reenqueue()
                    return
                complete(correlation_id, response_or_exc)

            handler.on_complete = on_complete
        enqueue(handler)

    manager.reset_producer_id = reset_and_reinitialize
    manager._enqueue_request = enqueue_retrying


def wedged(producer: KafkaProducer) -> bool:
    """A state kafka-python cannot leave by itself: idempotent and either in FATAL_ERROR (every batch is aborted)
    or READY without a producer id."""
    manager = producer._transaction_manager
    return (manager is not None and not manager.is_transactional()
            and (manager.has_fatal_error()
                 or (not manager.has_producer_id() and manager._current_state == TransactionState.READY)))


class Consumer(KafkaConsumer):
    """kafka-python's consumer, whose poll() survives a broker outage: a retriable error is an empty poll.

    kafka-python 3.0.12 lets a connection error out of poll() while the broker is down: looking up the group
    coordinator fails with KafkaConnectionError (an InvalidMetadataError), it then waits for a metadata refresh,
    and that refresh's own connection error escapes (`ensure_coordinator_ready_async` catches only
    KafkaTimeoutError around it). Every caller would exit on a broker restart; an outage is not an error of the
    process, so poll() waits out its timeout and returns nothing, as it does when no records come.
    """

    _failing: str | None = None

    def poll(self, timeout_ms: int = 0, max_records: int | None = None, update_offsets: bool = True) -> dict:
        try:
            records = super().poll(timeout_ms=timeout_ms, max_records=max_records, update_offsets=update_offsets)
        except RetriableError as exc:
            error = type(exc).__name__
            if self._failing != error:  # one line per outage, not one per poll
                log.warning("kafka.consumer.poll_failed", error=error, detail=str(exc)[:200],
                            group=self.config.get("group_id"))
            self._failing = error
            time.sleep(min(timeout_ms, 1000) / 1000)
            return {}
        if self._failing is not None:
            log.info("kafka.consumer.poll_recovered", after=self._failing, group=self.config.get("group_id"))
            self._failing = None
        return records


def make_consumer(settings: Settings, group_id: str, role: str = "consumer", **overrides: Any) -> KafkaConsumer:
    """A consumer that never auto-commits: offsets are committed after the effect."""
    config: dict[str, Any] = {
        **connection_config(settings),
        "client_id": _client_id(settings, role),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
        "max_poll_interval_ms": 300000,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 1000,
        "isolation_level": "read_committed",
    }
    config.update(overrides)
    return Consumer(**config)


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """An admin client with short timeouts: an unreachable broker fails it within TOOL_BOOTSTRAP_TIMEOUT_MS."""
    config: dict[str, Any] = {
        **connection_config(settings),
        "client_id": _client_id(settings, "admin"),
        "request_timeout_ms": 15000,
        "bootstrap_timeout_ms": TOOL_BOOTSTRAP_TIMEOUT_MS,
    }
    config.update(overrides)
    return KafkaAdminClient(**config)


def ensure_topics(
    settings: Settings, names: list[str], partitions: int | None = None, replication: int | None = None,
    min_insync: int | None = None,
) -> dict[str, str]:
    """Create the physical topics for logical `names`; existing ones are left alone.

    Returns {topic: "created" | "exists"}.
    """
    partitions = partitions or settings.topic_partitions
    replication = replication or settings.topic_replication_factor
    min_insync = min_insync or settings.topic_min_insync_replicas
    if min_insync and min_insync > replication:
        raise ValueError(f"min.insync.replicas={min_insync} exceeds replication factor {replication}: "
                         "no write could ever be acknowledged")
    configs = {"min.insync.replicas": str(min_insync)} if min_insync else {}
    wanted = {settings.topic(n) for n in names}
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        result = {t: "exists" for t in wanted & existing}
        missing = sorted(wanted - existing)
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=configs)])
                result[topic] = "created"
            except TopicAlreadyExistsError:
                result[topic] = "exists"
        return result
    finally:
        admin.close()
