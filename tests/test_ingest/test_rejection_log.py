"""Refused webhooks are logged for the on-call engineer: reason and peer, rate-limited, never the key."""

from __future__ import annotations

import json
import time

from test_ingest.conftest import KEY
from test_ingest.payloads import CATALOG, envelope

DEPOSIT = CATALOG[13]


def _rejections(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()
            if line.startswith("{") and '"webhook.rejected"' in line]


def test_a_flood_of_401s_and_413s_is_logged_with_reason_and_peer_rate_limited_without_the_key(
    settings, start_receiver
):
    receiver = start_receiver(settings, HOOKSTREAM_MAX_BODY_BYTES="2048")
    product, event_type, status, _, data, _, _ = DEPOSIT
    body = envelope(product, event_type, status, "0xrej", data)
    wrong = "presented-wrong-key-7a1c9e"
    for _ in range(50):
        assert receiver.post(body, key=wrong).status_code == 401
    assert receiver.post(body, key=None).status_code == 401
    assert receiver.post(b"{" + b" " * 4096 + b"}").status_code == 413

    lines = _rejections(receiver.proc.output())
    by_reason = {}
    for line in lines:
        by_reason.setdefault(line["reason"], []).append(line)
    assert set(by_reason) == {"unauthorized", "too_large"}
    assert 1 <= len(by_reason["unauthorized"]) < 51  # 51 refusals, far fewer lines
    assert all(line["peer"] == "127.0.0.1" and line["status"] == 401 for line in by_reason["unauthorized"])
    [too_large] = by_reason["too_large"]
    assert too_large["status"] == 413 and too_large["peer"] == "127.0.0.1" and too_large["max_body_bytes"] == 2048
    output = receiver.proc.output()
    assert wrong not in output and KEY not in output

    # the held-back ones are counted in the next line once the interval has passed
    time.sleep(1.1)
    assert receiver.post(body, key=wrong).status_code == 401
    later = [line for line in _rejections(receiver.proc.output()) if line["reason"] == "unauthorized"]
    assert sum(line["held_back"] for line in later) + len(later) == 52
