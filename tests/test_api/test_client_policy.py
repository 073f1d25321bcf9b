"""The client's one-attempt, pending and error policy, with a scripted transport and a fake clock."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from hookstream.api import (
    ApiConnectionError,
    CryptoMateClient,
    NotFoundError,
    Pending,
    PendingApiError,
    PermanentApiError,
    RateLimitedError,
    ServerError,
    TransientApiError,
    UnauthorizedError,
    ValidationFailedError,
)
from hookstream.api.ratelimit import TokenBucket
from hookstream.processors.errors import classify_error
from hookstream.processors.retry import Backoff
from hookstream.settings import Settings


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*answers):
    """A transport answering each request with the next item (an httpx.Response or an exception)."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


def make_client(transport, fake: FakeTime, **kw) -> CryptoMateClient:
    return CryptoMateClient("http://cm.test", "key-under-test", transport=transport,
                            sleep=fake.sleep, clock=fake.clock, rate_limit_per_s=1000, **kw)


CARD = {"id": "crd_1", "status": "ACTIVE", "approval_method": "WEBHOOK", "daily_limit": 100.5}


def test_429_is_raised_at_once_with_the_retry_after_the_one_retry_policy_honours():
    # The client makes one attempt: waiting is the caller's (the dispatcher's) single retry policy.
    fake = FakeTime()
    transport, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "4"},
                       json={"error_code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded. Retry after 4 seconds"}))
    with pytest.raises(RateLimitedError) as info:
        make_client(transport, fake).get_card("crd_1")
    assert info.value.retry_after == 4.0 and info.value.status == 429 and len(seen) == 1
    assert [s for s in fake.sleeps if s > 0.01] == []
    failure = classify_error(info.value)
    assert failure.transient and failure.retry_after == 4.0
    assert Backoff(0.5, 30.0, 8, rand=lambda: 0.0).delay(1, failure.retry_after) == 4.0


def test_429_without_header_uses_the_seconds_in_the_message():
    fake = FakeTime()
    transport, _ = scripted(
        httpx.Response(429, json={"error_code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded. Retry after 8 seconds"}))
    with pytest.raises(RateLimitedError) as info:
        make_client(transport, fake).get_card("crd_1")
    assert info.value.retry_after == 8.0 and info.value.code == "TOO_MANY_REQUESTS"


def test_5xx_is_one_attempt_and_a_transient_error():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(500, json={"code": "SERVER_ERROR", "message": "boom"}))
    with pytest.raises(ServerError) as info:
        make_client(transport, fake).get_card("crd_1")
    assert info.value.code == "SERVER_ERROR" and info.value.message == "boom"
    assert isinstance(info.value, TransientApiError) and classify_error(info.value).transient
    assert len(seen) == 1 and fake.sleeps == []


def test_the_caller_repeats_the_idempotency_key_after_connection_errors():
    fake = FakeTime()
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                               httpx.Response(200, json={"code": "abc", "approve": True}))
    client = make_client(transport, fake)
    for _ in range(2):
        with pytest.raises(ApiConnectionError) as info:
            client.respond_3ds("crd_1", "abc", True, idempotency_key="idem-1")
        assert isinstance(info.value, TransientApiError) and info.value.status is None
    result = client.respond_3ds("crd_1", "abc", True, idempotency_key="idem-1")
    assert result.approve is True and result.code == "abc"
    assert [r.headers["Idempotency-Key"] for r in seen] == ["idem-1"] * 3
    assert json.loads(seen[0].content) == {"code": "abc", "approve": True}
    assert seen[0].url.path == "/cards/virtual-cards/crd_1/3ds-authorization"


def test_mutating_call_without_key_gets_a_generated_one_and_reads_do_not():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(200, json=CARD), httpx.Response(200, json={"blocked": False}))
    client = make_client(transport, fake)
    client.get_card("crd_1")
    assert client.unblock_card("crd_1").blocked is False
    assert "Idempotency-Key" not in seen[0].headers
    assert seen[1].headers["Idempotency-Key"].startswith("hs-")
    assert all(r.headers["x-api-key"] == "key-under-test" for r in seen)


@pytest.mark.parametrize("body", [{"code": "VAL", "message": "Card not found"},
                                  {"error_code": "VAL", "message": "Card not found"}])
def test_both_error_shapes_parse_into_the_same_typed_error(body):
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(412, json=body))
    with pytest.raises(ValidationFailedError) as info:
        make_client(transport, fake).freeze_card("crd_x")
    assert isinstance(info.value, PermanentApiError)
    assert (info.value.status, info.value.code, info.value.message) == (412, "VAL", "Card not found")
    assert len(seen) == 1  # permanent: never retried


@pytest.mark.parametrize("status,kind", [(401, UnauthorizedError), (404, NotFoundError), (400, PermanentApiError)])
def test_client_errors_are_permanent_and_not_retried(status, kind):
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(status, json={"code": "X", "message": "no"}))
    with pytest.raises(kind):
        make_client(transport, fake).get_card("crd_1")
    assert len(seen) == 1


def test_302_warning_is_a_pending_result_and_never_followed():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(
        302, headers={"Location": "http://elsewhere.test/"},
        json={"code": "WARNING", "message": "Transaction is pending. Please check the status later."}))
    result = make_client(transport, fake).treasury_transfer("acc_1", "wal_1", "0xabc", "12.5",
                                                           idempotency_key="t-1")
    assert isinstance(result, Pending)
    assert result.message == "Transaction is pending. Please check the status later."
    assert len(seen) == 1 and json.loads(seen[0].content) == {"to": "0xabc", "amount": 12.5}


def test_302_warning_on_an_endpoint_without_pending_result_raises_pending_error_once():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(302, json={"code": "WARNING", "message": "Pending"}))
    with pytest.raises(PendingApiError) as info:
        make_client(transport, fake).unblock_card("crd_1")
    assert isinstance(info.value, TransientApiError) and len(seen) == 1


def test_override_balance_returns_the_bare_number_as_decimal():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(200, content=b"2500.10", headers={"content-type": "application/json"}))
    assert make_client(transport, fake).override_card_virtual_balance("crd_1", Decimal("2500.10")) == Decimal("2500.10")
    assert json.loads(seen[0].content) == {"virtual_balance": 2500.1}
    assert seen[0].method == "PATCH"


def test_card_ids_are_escaped_into_the_path():
    fake = FakeTime()
    transport, seen = scripted(httpx.Response(200, json=CARD))
    make_client(transport, fake).get_card("a/b c")
    assert seen[0].url.raw_path == b"/cards/virtual-cards/a%2Fb%20c"


def test_token_bucket_spaces_requests_at_the_configured_rate():
    fake = FakeTime()
    bucket = TokenBucket(15, clock=fake.clock, sleep=fake.sleep)
    start = fake.now
    for _ in range(31):
        bucket.acquire()
    assert fake.now - start == pytest.approx(30 / 15)


def test_from_settings_uses_the_settings_url_key_and_limits():
    settings = Settings(api_base_url="http://example.test/", api_key="k" * 12, api_rate_limit_per_s=5)
    client = CryptoMateClient.from_settings(settings)
    try:
        assert client.base_url == "http://example.test"
        assert client._limiter.rate == pytest.approx(5 / 1.1)
        assert client._http.headers["x-api-key"] == "k" * 12
    finally:
        client.close()
