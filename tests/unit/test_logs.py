"""Redaction happens at the logger: keys, codes and registered secrets never reach the output."""

from __future__ import annotations

import io
import json

import structlog

from hookstream.logs import REDACTED, configure_logging, register_secrets, remember_code


def test_sensitive_keys_and_registered_secrets_are_masked():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.reset_defaults()
    configure_logging("info", "json", stream=out)
    register_secrets(["very-secret-webhook-key"])
    remember_code("738201")
    log = structlog.get_logger("t")
    log.info("evt", x_webhook_key="k1", api_key="k2", code="738201", nested={"pin": "1234", "ok": 1},
             data={"challenge": "738201"}, detail="header was very-secret-webhook-key", operation_id="op",
             exit_code=1)
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["x_webhook_key"] == line["api_key"] == line["code"] == REDACTED
    assert line["data"] == {"challenge": REDACTED}  # a 3DS code is masked by value, under any key
    assert line["nested"] == {"pin": REDACTED, "ok": 1}
    assert line["exit_code"] == 1
    assert "very-secret-webhook-key" not in out.getvalue()
    assert line["operation_id"] == "op"
