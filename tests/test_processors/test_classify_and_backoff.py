"""Error classification, backoff timing, dead-letter headers and health: pure rules, fake clock."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc

from hookstream.api.errors import ApiTimeoutError, BadRequestError, ConflictError, RateLimitedError, ServerError
from hookstream.ledger.errors import LedgerTransientError, UnknownAccount
from hookstream.ledger.outbox import OutboxCommand
from hookstream.processors.dlq import COMMAND, IDEMPOTENCY_KEY, command_letter, dead_letter_headers, replay_headers
from hookstream.processors.dlq_cli import parse_since
from hookstream.processors.errors import PermanentError, TransientError, classify_error
from hookstream.processors.health import Health, serve
from hookstream.processors.retry import Backoff, next_retry
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import EnvelopeError


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


@pytest.mark.parametrize("exc", [
    TimeoutError("read timed out"),
    ConnectionResetError("reset by peer"),
    ServerError("boom", status=503),
    ConflictError("in flight", status=409),
    ApiTimeoutError("connect timeout"),
    LedgerTransientError("database is locked"),
    sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")),
    HttpError(500), HttpError(408), HttpError(409), HttpError(429),
    TransientError("try later"),
])
def test_timeouts_connection_errors_5xx_and_busy_databases_are_transient(exc: BaseException) -> None:
    assert classify_error(exc).kind == "transient"


@pytest.mark.parametrize("exc", [
    EnvelopeError("invalid data for virtual_wallets/deposit"),
    ValueError("bad amount"),
    BadRequestError("no", status=400),
    HttpError(400), HttpError(404), HttpError(422),
    UnknownAccount("acc_1"),
    PermanentError("refused"),
    KeyError("bug"),
])
def test_validation_other_4xx_and_unknown_errors_are_permanent(exc: BaseException) -> None:
    failure = classify_error(exc)
    assert failure.kind == "permanent"
    assert failure.retry_after is None


def test_429_carries_its_retry_after_and_error_type_is_the_class_name() -> None:
    failure = classify_error(RateLimitedError("slow down", retry_after=4.0, status=429))
    assert (failure.kind, failure.retry_after, failure.error_type) == ("transient", 4.0, "RateLimitedError")
    assert classify_error(TransientError("x", retry_after=2)).retry_after == 2.0


def test_error_messages_are_bounded() -> None:
    assert len(classify_error(ValueError("x" * 10_000)).message) == 500


def test_backoff_doubles_until_the_cap_and_jitter_only_shortens() -> None:
    no_jitter = Backoff(0.5, 4.0, 8, rand=lambda: 0.0)
    assert [no_jitter.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    full_jitter = Backoff(0.5, 4.0, 8, rand=lambda: 0.999999)
    assert [round(full_jitter.delay(n), 3) for n in range(1, 4)] == [0.25, 0.5, 1.0]


def test_retry_after_is_a_floor_on_the_delay() -> None:
    backoff = Backoff(0.5, 4.0, 8, rand=lambda: 0.0)
    assert backoff.delay(1, retry_after=7.0) == 7.0
    assert backoff.delay(4, retry_after=1.0) == 4.0


def test_next_retry_gives_up_on_attempts_budget_and_deadline() -> None:
    backoff = Backoff(1.0, 60.0, 3, rand=lambda: 0.0)
    transient = classify_error(TimeoutError())
    now = 1000.0  # the fake clock
    assert next_retry(backoff, transient, 1, now, now) == ("retry", now + 1.0)
    assert next_retry(backoff, transient, 2, now - 1, now) == ("retry", now + 2.0)
    assert next_retry(backoff, transient, 3, now - 3, now)[0] == "dead_letter"
    assert next_retry(backoff, transient, 2, now - 10, now, budget_s=11.0)[0] == "dead_letter"
    assert next_retry(backoff, transient, 1, now, now, deadline_in_s=0.5)[0] == "expired"
    assert next_retry(backoff, classify_error(ValueError()), 1, now, now)[0] == "dead_letter"
    rate_limited = classify_error(TransientError("429", retry_after=30.0))
    assert next_retry(backoff, rate_limited, 1, now, now) == ("retry", now + 30.0)
    assert next_retry(backoff, rate_limited, 1, now, now, deadline_in_s=10.0)[0] == "expired"



def test_deadline_bound_work_is_retried_until_its_deadline_not_until_an_attempt_count() -> None:
    # A 3DS answer during a long API outage: past the attempt count, still worth sending while in time.
    backoff = Backoff(1.0, 30.0, 3, rand=lambda: 0.0)
    transient = classify_error(TimeoutError())
    now = 1000.0
    assert next_retry(backoff, transient, 8, now - 120, now, deadline_in_s=180.0) == ("retry", now + 30.0)
    assert next_retry(backoff, transient, 8, now - 290, now, deadline_in_s=10.0)[0] == "expired"
    assert next_retry(backoff, transient, 8, now - 120, now)[0] == "dead_letter", "no deadline: the count"


def test_dead_letter_headers_keep_the_original_ones_and_replay_strips_them_again() -> None:
    original = [(h.DEDUP_KEY, b"k"), (h.RECEIVED_AT, b"1"), (h.REPLAY_COUNT, b"1")]
    failure = classify_error(PermanentError("nope"))
    dead = dead_letter_headers(original, topic="t", partition=2, offset=7, failure=failure, attempts=3,
                               processor="sample", now_ms=5)
    got = h.to_dict(dead)
    assert got[h.DEDUP_KEY] == "k" and got[h.RECEIVED_AT] == "1" and got[h.REPLAY_COUNT] == "1"
    assert (got[h.ORIGIN_TOPIC], got[h.ORIGIN_PARTITION], got[h.ORIGIN_OFFSET]) == ("t", "2", "7")
    assert (got[h.ERROR_TYPE], got[h.ERROR_MESSAGE], got[h.ATTEMPTS]) == ("PermanentError", "nope", "3")
    assert (got[h.PROCESSOR], got[h.DEAD_LETTERED_AT]) == ("sample", "5")
    again = replay_headers(dead, 2)
    assert h.to_dict(again) == {h.DEDUP_KEY: "k", h.RECEIVED_AT: "1", h.REPLAY_COUNT: "2"}


def test_a_refused_commands_letter_names_its_origin_and_trace_and_never_holds_the_3ds_code() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    command = OutboxCommand(id=1, processor="three-ds", kind="respond_3ds",
                            args={"card_id": "crd_1", "code": "0-secret-code-0", "approve": True},
                            idempotency_key="ik-1", order_key=None, deadline=None, attempts=2, first_failed_at=None,
                            origin_topic="cryptomate.cards.3ds", origin_partition=4, origin_offset=17,
                            dedup_key="dk-1", traceparent=traceparent)
    value, headers = command_letter(command, classify_error(PermanentError("412")), "three-ds", now_ms=9)
    got = h.to_dict(headers)
    assert (got[h.ORIGIN_TOPIC], got[h.ORIGIN_PARTITION], got[h.ORIGIN_OFFSET]) == ("cryptomate.cards.3ds", "4", "17")
    assert (got[h.DEDUP_KEY], got["traceparent"], got[COMMAND], got[IDEMPOTENCY_KEY]) == (
        "dk-1", traceparent, "respond_3ds", "ik-1")
    assert (got[h.ATTEMPTS], got[h.PROCESSOR]) == ("2", "three-ds")
    assert b"0-secret-code-0" not in value and json.loads(value)["args"]["code"] == "<redacted>"
    untraced = command_letter(dataclasses.replace(command, traceparent=None),
                              classify_error(PermanentError("412")), "three-ds", now_ms=9)[1]
    assert "traceparent" not in h.to_dict(untraced)


def test_since_accepts_iso_times_and_ages() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_since("2026-01-31T11:00:00Z", now) == int(datetime(2026, 1, 31, 11, tzinfo=UTC).timestamp() * 1000)
    assert parse_since("2026-01-31T11:00:00", now) == parse_since("1h", now)
    assert parse_since("30m", now) == int(now.timestamp() * 1000) - 30 * 60 * 1000


def test_healthz_fails_when_the_poll_loop_is_silent_too_long() -> None:
    clock = [0.0]
    health = Health(stall_after_s=30.0, clock=lambda: clock[0])
    server = serve(health, 0, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        clock[0] = 29.0
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        clock[0] = 31.0
        stuck = httpx.get(f"{url}/healthz", timeout=5)
        assert stuck.status_code == 503 and "stuck" in stuck.text
        health.beat()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert "hookstream_processed_total" in httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        server.shutdown()


def test_process_list_and_unknown_names() -> None:
    from hookstream.processors.cli import process

    runner = CliRunner()
    listed = runner.invoke(process, ["--list"])
    assert listed.exit_code == 0 and listed.output.strip()
    unknown = runner.invoke(process, ["no-such-processor"])
    assert unknown.exit_code != 0 and "unknown processor" in unknown.output
    bad_spec = runner.invoke(process, ["test_processors.sample:Nope"])
    assert bad_spec.exit_code != 0 and "no attribute Nope" in bad_spec.output


def test_backoff_delays_stay_capped_whatever_the_attempt_number() -> None:
    """The dispatcher counts no attempts (it retries for a time budget): attempt 10,000 is still a delay."""
    backoff = Backoff(0.5, 30.0, max_attempts=sys.maxsize, rand=lambda: 0.0)
    assert [backoff.delay(n) for n in (1, 2, 7, 10_000)] == [0.5, 1.0, 30.0, 30.0]
