"""Secured Kafka: every client the factory builds speaks TLS, SASL and mTLS to a real broker's secured listeners."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import pytest

from fixtures.kafka import read_topic
from fixtures.processes import HOOKSTREAM
from fixtures.waiting import wait_until
from hookstream.broker import free_port
from hookstream.kafka import KafkaUnavailable, check_connection, ensure_topics, make_consumer, make_producer
from hookstream.schemas.routing import TOPICS
from test_ingest.conftest import settings_env
from test_ingest.payloads import CATALOG, envelope


@pytest.mark.parametrize(("listener", "mechanism"), [
    ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "PLAIN"),
    ("SSL", None), ("MTLS", None), ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
])
def test_admin_producer_and_consumer_work_on_every_secured_listener(secured_broker, make_settings, listener,
                                                                     mechanism):
    settings = secured_broker.settings(make_settings(), mechanism or "PLAIN", listener=listener)
    assert check_connection(settings, timeout=20) == 1
    assert set(ensure_topics(settings, ["cryptomate.deposits"]).values()) == {"created"}

    producer = make_producer(settings)
    try:
        for i in range(20):
            producer.send(settings.topic("cryptomate.deposits"), key=b"k", value=f"v{i}".encode())
        producer.flush(timeout=20)
    finally:
        producer.close()

    consumer = make_consumer(settings, group_id=f"{settings.topic_prefix}g")
    try:
        consumer.subscribe([settings.topic("cryptomate.deposits")])
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < 20 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                seen.extend(m.value for m in batch)
        consumer.commit()
    finally:
        consumer.close()
    assert seen == [f"v{i}".encode() for i in range(20)]


def _check(settings, timeout: float = 5) -> subprocess.CompletedProcess[str]:
    env = {**settings.to_env(), "PATH": "/usr/bin:/bin"}
    return subprocess.run(HOOKSTREAM + ["kafka", "check", "--timeout", str(timeout)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_wrong_password_fails_fast_with_one_line_and_no_secret(secured_broker, make_settings):
    wrong = "wrong-" + secured_broker.users["hookstream-app"]
    settings = secured_broker.settings(make_settings(), kafka_sasl_password=wrong)
    with pytest.raises(KafkaUnavailable, match="SASL SCRAM-SHA-512 login as 'hookstream-app' did not succeed"):
        check_connection(settings, timeout=3)

    proc = _check(settings, timeout=3)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert len(out.strip().splitlines()) == 1, out
    assert "SASL SCRAM-SHA-512 login as 'hookstream-app'" in out
    assert "Traceback" not in out and wrong not in out and secured_broker.users["hookstream-app"] not in out


def test_untrusted_ca_fails_fast_naming_the_certificate_problem(secured_broker, make_settings):
    settings = secured_broker.settings(make_settings(), kafka_ssl_cafile=secured_broker.tls.other_ca_file)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="TLS handshake with localhost:.* failed: .*certificate"):
        check_connection(settings, timeout=10)
    assert time.monotonic() - started < 10  # refused at the handshake, not at the end of a client timeout

    proc = _check(settings)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert len(out.strip().splitlines()) == 1, out
    assert "TLS handshake" in out and "Traceback" not in out


def test_hostname_is_checked_unless_switched_off(secured_broker, make_settings):
    # the certificate names localhost only; the same listener reached as 127.0.0.1 must be refused
    alias = secured_broker.local.secured_bootstrap.replace("localhost", "127.0.0.1")
    settings = secured_broker.settings(make_settings(), kafka_bootstrap=alias)
    with pytest.raises(KafkaUnavailable, match="TLS handshake .* failed: .*(mismatch|not valid|match)"):
        check_connection(settings, timeout=5)
    relaxed = secured_broker.settings(make_settings(), kafka_bootstrap=alias, kafka_ssl_check_hostname=False)
    assert check_connection(relaxed, timeout=20) == 1


def test_receiver_publishes_over_sasl_ssl_and_never_logs_the_password(secured_broker, make_settings,
                                                                       start_receiver):
    settings = secured_broker.settings(make_settings())
    ensure_topics(settings, list(TOPICS))
    receiver = start_receiver(settings, HOOKSTREAM_LOG_LEVEL="debug")
    product, event_type, status, _, data, topic, _ = CATALOG[13]
    for i in range(5):
        response = receiver.post(envelope(product, event_type, status, f"sec_{i}", data))
        assert response.status_code == 200, response.text
    records = read_topic(settings, topic, 5)
    assert sorted(json.loads(r.value)["operation_id"] for r in records) == [f"sec_{i}" for i in range(5)]
    receiver.proc.stop()
    assert secured_broker.users["hookstream-app"] not in receiver.proc.output()


def test_mtls_without_a_trusted_client_certificate_fails_fast_naming_it(secured_broker, make_settings):
    # the MTLS listener requires a client certificate its CA signed (ssl.client.auth=required)
    missing = secured_broker.settings(make_settings(), listener="MTLS", kafka_ssl_certfile=None,
                                      kafka_ssl_keyfile=None, kafka_ssl_key_password=None)
    with pytest.raises(KafkaUnavailable, match="requires a client certificate"):
        check_connection(missing, timeout=5)
    tls = secured_broker.tls
    stranger = secured_broker.settings(make_settings(), listener="MTLS", kafka_ssl_certfile=tls.stranger_cert_file,
                                       kafka_ssl_keyfile=tls.stranger_key_file, kafka_ssl_key_password=None)
    with pytest.raises(KafkaUnavailable, match="TLS session with localhost:.* failed: .*client certificate"):
        check_connection(stranger, timeout=5)


def _start_unready_receiver(processes, settings):
    port = free_port()
    proc = processes.start(["ingest", "--port", str(port)], settings_env(settings), name="ingest")
    return proc, f"http://127.0.0.1:{port}/readyz"


def _readyz(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None  # not listening yet


@pytest.mark.parametrize(("case", "why"), [
    ("wrong password", "SASL SCRAM-SHA-512 login as 'hookstream-app' did not succeed"),
    ("untrusted CA", "TLS handshake with localhost:[0-9]+ failed: .*certificate"),
    ("missing client certificate", "the broker requires a client certificate"),
])
def test_receiver_with_bad_credentials_is_not_ready_and_says_why_in_one_line(secured_broker, make_settings,
                                                                              processes, case, why):
    base = make_settings()
    tls, password = secured_broker.tls, secured_broker.users["hookstream-app"]
    settings = {
        "wrong password": lambda: secured_broker.settings(base, kafka_sasl_password="wrong-" + password),
        "untrusted CA": lambda: secured_broker.settings(base, listener="SSL", kafka_ssl_cafile=tls.other_ca_file),
        "missing client certificate": lambda: secured_broker.settings(
            base, listener="MTLS", kafka_ssl_certfile=None, kafka_ssl_keyfile=None, kafka_ssl_key_password=None),
    }[case]()
    proc, url = _start_unready_receiver(processes, settings)
    answer = wait_until(lambda: (r := _readyz(url)) is not None and "reason" in r.json() and r,
                        "/readyz to answer with a reason", timeout=60)
    reason = wait_until(lambda: (r := _readyz(url)) is not None and (said := r.json().get("reason", ""))
                        and said != "kafka producer not connected yet" and (r.status_code, said),
                        "/readyz to say why", timeout=60)
    assert answer.status_code == 503 and reason[0] == 503
    assert re.search(why, reason[1]), reason
    time.sleep(8)  # it keeps retrying meanwhile: the cause is still logged once
    assert _readyz(url).status_code == 503  # never ready, never hung
    proc.stop()
    out = proc.output()
    lines = [json.loads(ln) for ln in out.splitlines() if '"kafka.producer.unavailable"' in ln]
    assert len(lines) == 1 and re.search(why, lines[0]["reason"]), lines
    assert "Traceback" not in out
    assert password not in out and tls.client_key_password not in out
