"""The API client against the sandbox over real HTTP: one attempt, pending, errors, idempotent replays."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from hookstream.api import (
    CryptoMateClient,
    NotFoundError,
    Pending,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    ValidationFailedError,
)
from hookstream.idempotency import idempotency_key
from hookstream.processors.errors import classify_error
from test_sandbox.harness import KEY1, KEY3


def client_for(sb, key: str = KEY3, **kw) -> CryptoMateClient:
    return CryptoMateClient(sb.url, key, **kw)


def test_429_is_raised_at_once_carrying_the_platforms_retry_after(sandbox):
    sandbox.control("POST", "faults", json={"status": 429, "count": 1, "retry_after": 2})
    with client_for(sandbox) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as limited:
            client.get_card("crd_webhook")
        assert time.monotonic() - started < 1.0, "the client must not sleep on Retry-After"
        assert limited.value.retry_after == 2.0 and classify_error(limited.value).retry_after == 2.0
        card = client.get_card("crd_webhook")
    assert card.id == "crd_webhook"
    assert [c["status"] for c in sandbox.control("GET", "calls").json()] == [429, 200]


def test_5xx_is_one_attempt_and_a_repeat_with_the_same_key_applies_once(sandbox):
    sandbox.control("POST", "faults", json={"status": 500, "count": 2})
    key = idempotency_key("three-ds", "cards:notification_3ds_authorization:pending:op-1", "3ds-respond")
    code = sandbox.control("POST", "trigger/3ds", json={"card_id": "crd_webhook"}).json()["code"]
    with client_for(sandbox) as client:
        for _ in range(2):
            with pytest.raises(ServerError) as info:
                client.respond_3ds("crd_webhook", code, True, idempotency_key=key)
            assert info.value.code == "SERVER_ERROR" and info.value.status == 500
        result = client.respond_3ds("crd_webhook", code, True, idempotency_key=key)
        again = client.respond_3ds("crd_webhook", code, True, idempotency_key=key)
    assert (result.code, result.approve) == (code, True) and again == result
    calls = sandbox.control("GET", "calls", params={"path": "3ds-authorization"}).json()
    assert [(c["status"], c["idempotency_key"]) for c in calls] == [(500, key), (500, key), (200, key), (200, key)]
    assert [c["replayed"] for c in calls][-1] is True
    assert [r["outcome"] for r in sandbox.control("GET", "3ds-responses").json()] == ["ACCEPTED"]


def test_302_warning_is_returned_as_pending_and_not_followed(sandbox):
    sandbox.control("POST", "faults", json={"status": 302, "count": 1, "paths": ["/mpc/"]})
    with client_for(sandbox) as client:
        result = client.treasury_transfer("acc_1", "twl_1", "0xabc", "1.5", idempotency_key="transfer-1")
        assert isinstance(result, Pending)
        assert result.message == "Transaction is pending. Please check the status later."
        done = client.treasury_transfer("acc_1", "twl_1", "0xabc", "1.5", idempotency_key="transfer-2")
    assert done.status == "PENDING" and done.transaction_hash.startswith("0x")
    assert len(sandbox.control("GET", "calls").json()) == 2


def test_both_error_shapes_become_typed_errors(sandbox):
    with client_for(sandbox) as client:
        with pytest.raises(ValidationFailedError) as val:
            client.freeze_card("no-such-card")  # {"code": "VAL", "message": "Card not found"}
        with pytest.raises(NotFoundError) as missing:
            client.get_card("no-such-card")
    assert (val.value.status, val.value.code, val.value.message) == (412, "VAL", "Card not found")
    assert missing.value.code == "NOT_FOUND"
    sandbox.control("POST", "faults", json={"status": 429, "count": 1, "retry_after": 120})
    with client_for(sandbox) as client:
        with pytest.raises(RateLimitedError) as limited:  # {"error_code": ..., "message": ...}
            client.get_card("crd_webhook")
    assert (limited.value.code, limited.value.retry_after) == ("TOO_MANY_REQUESTS", 120.0)
    assert limited.value.message == "Rate limit exceeded. Retry after 120 seconds"


def test_idempotent_replay_returns_the_first_result_and_applies_once(sandbox):
    with client_for(sandbox) as client:
        first = client.override_card_virtual_balance("crd_topup", Decimal("50"), idempotency_key="k-1")
        replay = client.override_card_virtual_balance("crd_topup", Decimal("70"), idempotency_key="k-1")
        assert first == replay == Decimal("50")
        assert client.get_card_virtual_balances("crd_topup").available_credit == Decimal("50")
        assert client.override_card_virtual_balance("crd_topup", "70", idempotency_key="k-2") == Decimal("70")
    calls = sandbox.control("GET", "calls", params={"path": "virtual-balance"}).json()
    assert [(c["idempotency_key"], c["replayed"]) for c in calls if c["method"] == "PATCH"] == [
        ("k-1", False), ("k-1", True), ("k-2", False)]


def test_access_level_too_low_is_a_permanent_unauthorized_error(sandbox):
    with client_for(sandbox, key=KEY1) as client:
        assert client.get_card("crd_webhook").status == "ACTIVE"
        with pytest.raises(UnauthorizedError) as info:
            client.unblock_card("crd_webhook")
    assert info.value.code == "API_ERROR" and info.value.status == 401


def test_client_rate_limit_keeps_a_burst_under_the_platform_limit(sandbox):
    with client_for(sandbox, rate_limit_per_s=15) as client:
        started = time.monotonic()
        for _ in range(20):
            client.get_card("crd_webhook")
        elapsed = time.monotonic() - started
    assert {c["status"] for c in sandbox.control("GET", "calls").json()} == {200}
    assert elapsed >= 19 / 15  # spaced with a margin below the limit


def test_operator_calls_cover_cards_wallets_holding_and_treasury(sandbox):
    with client_for(sandbox) as client:
        client.freeze_card("crd_webhook", idempotency_key="f-1")
        assert client.get_card("crd_webhook").status == "FROZEN"
        client.unfreeze_card("crd_webhook", idempotency_key="f-2")
        assert client.get_card("crd_webhook").status == "ACTIVE"
        assert client.get_virtual_wallet("wlt_1").blockchain == "POLYGON"
        assert client.get_virtual_wallet_balance("wlt_1")[0].balance == Decimal("1000")
        assert client.override_virtual_wallet_balance("wlt_1", "12.5") == Decimal("12.5")
        assert client.get_holding_wallet("POLYGON").id == "hld_polygon"
        assert client.get_holding_balance("polygon")[0].symbol == "USDC"
        assert client.get_card_holding_balance().warranty_balance == Decimal("5000")
        token = client.get_treasury_wallet_balance("acc_1", "twl_1")[0]
        result = client.treasury_transfer("acc_1", "twl_1", "0xdest", "100", token_address=token.token_address)
        assert result.status == "PENDING"
        assert client.get_treasury_wallet_balance("acc_1", "twl_1")[0].balance == token.balance - 100
        withdrawn = client.withdraw_virtual_wallet("wlt_1", "0xdest", token.token_address, "1")
        assert withdrawn.status == "PENDING"
        with pytest.raises(NotFoundError):
            client.get_holding_wallet("BASE")
    patch = [c for c in sandbox.control("GET", "calls").json() if c["method"] != "GET"]
    assert all(c["idempotency_key"] for c in patch)
