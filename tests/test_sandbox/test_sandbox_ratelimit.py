"""The sandbox's rate limit: 15 requests/s per key and per IP, penalty doubling, 429 + Retry-After (§5.7)."""

from __future__ import annotations

import httpx

from hookstream.sandbox.ratelimit import PenaltyLimiter
from test_sandbox.harness import KEY1, KEY3, running_sandbox

CARD = "/cards/virtual-cards/crd_webhook"


def test_sixteenth_request_in_one_second_is_refused_with_the_documented_429(sandbox):
    statuses = [sandbox.api("GET", CARD).status_code for _ in range(16)]
    assert statuses[:15] == [200] * 15  # 16 requests over localhost take far less than a second
    assert statuses[15] == 429
    last = sandbox.api("GET", CARD)
    assert last.status_code == 429
    assert last.headers["Retry-After"] == "1"
    assert last.json() == {"error_code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded. Retry after 1 seconds"}


def test_penalty_doubles_per_violation_and_blocked_requests_use_no_quota(clock):
    with running_sandbox(clock=clock, rate_limit_per_s=3) as sb:
        retry_afters = []
        for _ in range(5):
            statuses = [sb.api("GET", CARD).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            retry_afters.append(int(sb.api("GET", CARD).headers["Retry-After"]))
            # still blocked half-way through: refused, and the refusals do not count as traffic
            clock.advance(retry_afters[-1] / 2)
            assert sb.api("GET", CARD).status_code == 429
            clock.advance(retry_afters[-1] / 2 + 0.001)
        assert retry_afters == [1, 2, 4, 8, 16]


def test_violation_count_resets_after_an_hour_of_clean_traffic(clock):
    with running_sandbox(clock=clock, rate_limit_per_s=2) as sb:
        for expected in ("1", "2"):
            [sb.api("GET", CARD) for _ in range(2)]
            assert sb.api("GET", CARD).headers["Retry-After"] == expected
            clock.advance(int(expected) + 0.001)
        clock.advance(3600)
        [sb.api("GET", CARD) for _ in range(2)]
        assert sb.api("GET", CARD).headers["Retry-After"] == "1"


def test_penalty_schedule_reaches_the_five_minute_cap_from_the_ninth_violation():
    limiter = PenaltyLimiter()
    assert [limiter.penalty(n) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 300, 300, 300]


def test_ip_and_key_are_limited_separately(clock):
    with running_sandbox(clock=clock, rate_limit_per_s=3) as sb:
        # Same IP, two keys: the IP counter trips although each key stayed under its limit.
        assert [sb.api("GET", CARD, key=k).status_code for k in (KEY1, KEY1, KEY3, KEY3)] == [200, 200, 200, 429]
        clock.advance(2)
        # Same key from two source addresses: the key counter trips although each IP is under.
        other = httpx.Client(base_url=sb.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:
            assert sb.api("GET", CARD, key=KEY1).status_code == 200
            assert sb.api("GET", CARD, key=KEY1).status_code == 200
            assert other.get(CARD, headers={"x-api-key": KEY1}).status_code == 200
            refused = other.get(CARD, headers={"x-api-key": KEY1})
            assert refused.status_code == 429
            assert other.get(CARD, headers={"x-api-key": KEY3}).status_code == 200  # 127.0.0.2 itself is not blocked
