"""The emulated API's contract: error model, idempotent replays, 3DS respond, faults, seeding."""

from __future__ import annotations

import pytest

from test_sandbox.harness import running_sandbox

CARD = "/cards/virtual-cards/"


def test_repeated_idempotency_key_returns_the_original_answer_without_reapplying(sandbox):
    headers = {"Idempotency-Key": "same-key"}
    first = sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": 10}, headers=headers)
    again = sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": 99}, headers=headers)
    assert (first.status_code, first.content) == (again.status_code, again.content) == (200, b"10.0")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert sandbox.control("GET", "balances").json()["cards"]["crd_topup"]["virtual_balance"] == 10
    # errors are replayed too: the same key never gets a second chance to apply
    bad = sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": -1},
                      headers={"Idempotency-Key": "neg"})
    assert bad.json() == {"code": "VAL", "message": "The virtual balance cannot be negative."}
    retry = sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": 5},
                        headers={"Idempotency-Key": "neg"})
    assert retry.status_code == 412


def test_injected_5xx_is_not_remembered_for_the_idempotency_key(sandbox):
    sandbox.control("POST", "faults", json={"status": 500, "count": 1})
    headers = {"Idempotency-Key": "after-fault"}
    failed = sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": 7}, headers=headers)
    assert failed.status_code == 500 and failed.json() == {"code": "SERVER_ERROR", "message": "Internal server error"}
    assert sandbox.api("PATCH", CARD + "crd_topup/virtual-balance", json={"virtual_balance": 7},
                       headers=headers).status_code == 200


def test_faults_last_for_their_seconds_and_only_on_their_paths(clock):
    with running_sandbox(clock=clock) as sb:
        sb.control("POST", "faults", json={"status": 429, "seconds": 5, "retry_after": 3,
                                           "paths": ["/cards/virtual-cards/{cardId}"]})
        limited = sb.api("GET", CARD + "crd_webhook")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
        assert limited.json()["error_code"] == "TOO_MANY_REQUESTS"
        assert sb.api("GET", CARD + "list").status_code == 200
        clock.advance(5.1)
        assert sb.api("GET", CARD + "crd_webhook").status_code == 200
        assert sb.control("GET", "faults").json() == []


def test_3ds_respond_accepts_a_live_challenge_once_and_refuses_expired_or_unknown_codes(clock):
    with running_sandbox(clock=clock, three_ds_ttl_s=300) as sb:
        code = sb.control("POST", "trigger/3ds", json={"card_id": "crd_webhook"}).json()["code"]
        ok = sb.api("POST", CARD + "crd_webhook/3ds-authorization", json={"code": code, "approve": False})
        assert ok.json() == {"code": code, "approve": False}
        twice = sb.api("POST", CARD + "crd_webhook/3ds-authorization", json={"code": code, "approve": True})
        assert twice.status_code == 412
        unknown = sb.api("POST", CARD + "crd_webhook/3ds-authorization", json={"code": "nope", "approve": True})
        assert unknown.status_code == 404
        late = sb.control("POST", "trigger/3ds", json={"card_id": "crd_webhook"}).json()["code"]
        clock.advance(301)
        expired = sb.api("POST", CARD + "crd_webhook/3ds-authorization", json={"code": late, "approve": True})
        assert expired.json() == {"code": "VAL", "message": "3DS authorization expired"}
        outcomes = [(r["code"] == code, r["approve"], r["outcome"]) for r in sb.control("GET", "3ds-responses").json()]
        assert outcomes == [(True, False, "ACCEPTED"), (True, True, "VAL"), (False, True, "NOT_FOUND"),
                            (False, True, "VAL")]


@pytest.mark.parametrize("method,path,body,status,error", [
    ("GET", CARD + "crd_webhook/virtual-balances", None, 400,
     {"code": "APP_ERROR", "message": "The virtual balances does not apply to this card."}),
    ("POST", "/cards/holding/withdraw", {"to_wallet_address": "0x1", "amount": 1}, 500, None),
    ("POST", "/virtual-wallets/create", {"alias": "s", "blockchain": "SOLANA"}, 401,
     {"code": "DENIED", "message": "Solana blockchain is not supported for virtual wallet."}),
    ("POST", "/virtual-wallets/wlt_1/withdraw",
     {"to_wallet_address": "0xtoken", "token_address": "0xtoken", "amount": 1}, 412,
     {"code": "VAL", "message": "Cannot transfer tokens to token contract address"}),
    ("GET", "/virtual-wallets/holding?blockchain=BASE", None, 404, None),
    ("POST", "/mpc/accounts/acc_1/wallets/nope/transfer", {"to": "0x1", "amount": 1}, 404,
     {"code": "NOT_FOUND", "message": "Wallet with id `nope` was not found."}),
    ("PUT", "/cards/account/configuration/velocity-rules",
     {"rules": [{"max_authorizations": 1, "time_window_seconds": 60}] * 2}, 400, None),
    ("PUT", "/cards/account/configuration/velocity-rules",
     {"rules": [{"max_authorizations": 1, "time_window_seconds": n} for n in range(1, 7)]}, 400, None),
])
def test_documented_errors_use_the_platform_error_model(sandbox, method, path, body, status, error):
    response = sandbox.api(method, path, json=body)
    assert response.status_code == status
    payload = response.json()
    assert set(payload) == {"code", "message"}
    if error:
        assert payload == error


def test_velocity_rule_errors_name_the_rule_problem(sandbox):
    dup = sandbox.api("PUT", "/cards/account/configuration/velocity-rules",
                      json={"rules": [{"max_authorizations": 1, "time_window_seconds": 60}] * 2})
    many = sandbox.api("PUT", "/cards/account/configuration/velocity-rules",
                       json={"rules": [{"max_authorizations": 1, "time_window_seconds": n} for n in range(1, 7)]})
    assert (dup.json()["code"], many.json()["code"]) == ("VELOCITY_RULES_DUPLICATE_WINDOW", "VELOCITY_RULES_LIMIT_EXCEEDED")
    assert sandbox.api("DELETE", "/cards/account/configuration/velocity-rules").status_code == 204


def test_seed_endpoint_takes_yaml_and_replaces_the_world(sandbox):
    seed = """
api_keys: [{key: yaml-level-3-key, level: 3}]
cards:
  - {id: crd_y, approval_method: TOP_UP, virtual_balance: "12.34", daily_limit: 50, forwarded_3ds_type: FORWARDED}
"""
    sandbox.control("POST", "seed", content=seed, headers={"content-type": "application/yaml"})
    card = sandbox.api("GET", CARD + "crd_y", key="yaml-level-3-key").json()
    assert (card["approval_method"], card["daily_limit"], card["forwarded_3ds_type"]) == ("TOP_UP", 50, "FORWARDED")
    assert sandbox.api("GET", CARD + "crd_y/virtual-balances", key="yaml-level-3-key").json() == {"available_credit": 12.34}
    assert sandbox.api("GET", CARD + "crd_webhook", key="yaml-level-3-key").status_code == 404
    bad = sandbox.http.post("/_sandbox/seed", json={"api_keys": [{"key": "k", "level": 9}]})
    assert bad.status_code == 400


def test_card_limits_decline_spending_over_the_daily_limit(sandbox):
    sandbox.api("PATCH", CARD + "crd_topup/limits", json={"daily_limit": 25})
    first = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 20}).json()
    second = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 10}).json()
    assert (first["status"], second["status"], second["response_code"]) == ("approved", "declined", "61")
