"""One log stream: every line a process writes, its libraries' included, is redacted structlog JSON."""

from __future__ import annotations

import io
import json
import logging
import socket
import time

import httpx
import structlog

from hookstream.logs import REDACTED, configure_logging, register_secrets, remember_code

from .test_start_up_errors import closed_port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


def _kafka_side(line: dict) -> str:
    """'kafka' for a line about the broker: kafka-python's own loggers, or the receiver's connection check,
    which now reports an unreachable broker before kafka-python is even started."""
    name = line.get("logger", "")
    if name.startswith("kafka") or line.get("event") == "kafka.producer.unavailable":
        return "kafka"
    return name


def test_kafka_python_and_uvicorn_lines_are_json_in_the_receivers_stream(processes, tmp_path):
    port = free_port()
    key = "ops-test-webhook-key-0001"
    env = {"HOOKSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}", "HOOKSTREAM_WEBHOOK_KEYS": key,
           "HOOKSTREAM_SPOOL_DIR": str(tmp_path / "spool"),
           "HOOKSTREAM_AUTHORIZATION_POLICY": "hookstream.ingest.authorization:static_policy"}  # no ledger here
    proc = processes.start(["ingest", "--port", str(port)], env, ready_url=f"http://127.0.0.1:{port}/healthz")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # uvicorn warns on a bad request
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        s.recv(1024)
    httpx.post(f"http://127.0.0.1:{port}/webhooks/cryptomate", content=b"{}", timeout=15,
               headers={"X-Webhook-Key": key})  # tries the broker, which is down
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loggers = {_kafka_side(line) for line in json_lines(proc.output())}
        if "kafka" in loggers and any(n.startswith("uvicorn") for n in loggers):
            break
        time.sleep(0.5)
    proc.stop()
    lines = json_lines(proc.output())  # every line, from start to stop, parses as JSON
    loggers = {_kafka_side(line) for line in lines}
    assert "kafka" in loggers, loggers
    assert any(name.startswith("uvicorn") for name in loggers), loggers
    assert all("level" in line and "timestamp" in line for line in lines)
    assert key not in proc.output()


def test_library_lines_go_through_the_redactor(tmp_path):
    out = io.StringIO()
    structlog.reset_defaults()
    configure_logging("info", "json", stream=out)
    register_secrets(["library-leaked-secret-9"])
    logging.getLogger("kafka.cluster").error("bootstrap with sasl password %s failed", "library-leaked-secret-9")
    logging.getLogger("uvicorn.error").warning("odd header", extra={"api_key": "k-123"})
    first, second = json_lines(out.getvalue())
    assert first["logger"] == "kafka.cluster" and first["level"] == "error"
    assert "library-leaked-secret-9" not in out.getvalue() and REDACTED in first["event"]
    assert second["api_key"] == REDACTED


def test_3ds_codes_are_masked_by_value_and_exit_codes_are_shown():
    out = io.StringIO()
    structlog.reset_defaults()
    configure_logging("info", "json", stream=out)
    remember_code("ch_48213")
    log = structlog.get_logger("t")
    log.info("kafka.broker.stopped", pid=1234, code=143)
    log.info("three_ds.answered", operation_id="ch_48213", payload={"code": "ch_48213", "card_id": "card-1"})
    stopped, answered = json_lines(out.getvalue())
    assert stopped["code"] == 143
    assert answered["operation_id"] == REDACTED
    assert answered["payload"] == {"code": REDACTED, "card_id": "card-1"}
