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


def test_timestamps_are_iso_utc_with_microseconds_and_follow_the_clock_across_seconds(monkeypatch):
    from datetime import UTC, datetime

    import hookstream.logs as logs

    stamp = logs._UtcStamp()
    # Fake time only: the same second twice (the cached prefix), the next second, the next day, and back.
    for now in (1764680511.455947, 1764680511.999999, 1764680512.000001, 1764766911.5, 1764680511.25):
        monkeypatch.setattr(logs.time, "time", lambda now=now: now)
        written = stamp(None, "info", {})["timestamp"]
        expected = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert written == expected, (now, written)
    # …and what a configured logger writes parses back as UTC.
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    monkeypatch.undo()
    structlog.get_logger("t").info("evt")
    parsed = datetime.fromisoformat(json.loads(out.getvalue().splitlines()[-1])["timestamp"].replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and abs((datetime.now(UTC) - parsed).total_seconds()) < 5
