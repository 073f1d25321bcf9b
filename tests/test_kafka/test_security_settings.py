"""HOOKSTREAM_KAFKA_* security settings: bad combinations refused in one line; the factory maps the good ones."""

from __future__ import annotations

import io

import pytest
import structlog
from pydantic import ValidationError

from hookstream.kafka import connection_config
from hookstream.logs import REDACTED, configure_logging
from hookstream.settings import Settings


@pytest.mark.parametrize(("env", "message"), [
    ({"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "HOOKSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs HOOKSTREAM_KAFKA_SASL_MECHANISM, "
     "HOOKSTREAM_KAFKA_SASL_USERNAME, HOOKSTREAM_KAFKA_SASL_PASSWORD"),
    ({"HOOKSTREAM_KAFKA_SASL_USERNAME": "app", "HOOKSTREAM_KAFKA_SASL_PASSWORD": "pw-not-real"},
     "HOOKSTREAM_KAFKA_SASL_* is set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "HOOKSTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
      "HOOKSTREAM_KAFKA_SASL_USERNAME": "app", "HOOKSTREAM_KAFKA_SASL_PASSWORD": "pw-not-real",
      "HOOKSTREAM_KAFKA_SSL_CAFILE": "/etc/hostname"},
     "HOOKSTREAM_KAFKA_SSL_* is set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "HOOKSTREAM_KAFKA_SSL_CERTFILE": "/etc/hostname"},
     "HOOKSTREAM_KAFKA_SSL_CERTFILE and HOOKSTREAM_KAFKA_SSL_KEYFILE go together"),
    ({"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "HOOKSTREAM_KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
     "HOOKSTREAM_KAFKA_SSL_CAFILE=/no/such/ca.pem: no such file"),
    ({"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HOOKSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI",
      "HOOKSTREAM_KAFKA_SASL_USERNAME": "app", "HOOKSTREAM_KAFKA_SASL_PASSWORD": "pw-not-real"},
     "kafka_sasl_mechanism"),
])
def test_a_bad_combination_is_refused_naming_the_variables(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert message in str(caught.value)
    assert "pw-not-real" not in str(caught.value)  # a traceback must not print the other inputs either


def test_the_factory_applies_sasl_ssl_and_mtls_to_every_client(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not read here")
    settings = Settings(kafka_bootstrap="b1:9093,b2:9093", kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="app",
                        kafka_sasl_password="pw-kafka-4417", kafka_ssl_cafile=tmp_path / "ca.pem",
                        kafka_ssl_certfile=tmp_path / "client.pem", kafka_ssl_keyfile=tmp_path / "client.key",
                        kafka_ssl_key_password="pw-key-9912", kafka_ssl_check_hostname=False)
    assert connection_config(settings) == {
        "bootstrap_servers": ["b1:9093", "b2:9093"], "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "app", "sasl_plain_password": "pw-kafka-4417",
        "ssl_check_hostname": False, "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": str(tmp_path / "client.pem"), "ssl_keyfile": str(tmp_path / "client.key"),
        "ssl_password": "pw-key-9912",
    }
    assert "pw-kafka-4417" not in repr(settings) and "pw-key-9912" not in repr(settings)


def test_plaintext_stays_what_it_was():
    assert connection_config(Settings(kafka_bootstrap="127.0.0.1:9092")) == {
        "bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}


def test_kafka_passwords_are_masked_in_log_lines_once_a_client_was_configured():
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                        kafka_sasl_username="app", kafka_sasl_password="pw-kafka-5521")
    connection_config(settings)
    out = io.StringIO()
    structlog.reset_defaults()
    configure_logging("info", "json", stream=out)
    structlog.get_logger("t").warning("kafka.failed", detail="login with pw-kafka-5521 refused")
    assert "pw-kafka-5521" not in out.getvalue() and REDACTED in out.getvalue()
