"""The sandbox enforces the platform's numeric access levels per configured key (cryptomate.md §5.2)."""

from __future__ import annotations

import pytest

from test_sandbox.harness import KEY1, KEY2, KEY3

DENIED = {"code": "API_ERROR", "message": "Access denied. The API Key is not authorized to do this operation."}


@pytest.mark.parametrize("key,method,path,body,expected", [
    (KEY1, "GET", "/cards/virtual-cards/crd_webhook", None, 200),
    (KEY1, "PATCH", "/cards/virtual-cards/crd_webhook/unblock", None, 401),
    (KEY2, "PATCH", "/cards/virtual-cards/crd_webhook/unblock", None, 200),
    (KEY2, "PATCH", "/cards/virtual-cards/crd_webhook/frozen", {"freeze": True}, 401),
    (KEY3, "PATCH", "/cards/virtual-cards/crd_webhook/frozen", {"freeze": True}, 200),
    (KEY1, "POST", "/cards/webhook/simulate/authorize", {"card_id": "crd_topup", "bill_amount": 1}, 401),
    (KEY2, "POST", "/cards/webhook/simulate/authorize", {"card_id": "crd_topup", "bill_amount": 1}, 201),
    (KEY2, "GET", "/management/companies", None, 401),
    (KEY3, "GET", "/management/companies", None, 200),
    ("unknown-key-123", "GET", "/cards/virtual-cards/list", None, 401),
    (None, "GET", "/cards/virtual-cards/list", None, 401),
])
def test_each_endpoint_answers_only_keys_at_or_above_its_level(sandbox, key, method, path, body, expected):
    response = sandbox.api(method, path, key=key, json=body)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.json() == DENIED


def test_denied_calls_change_nothing_and_are_recorded_without_the_key(sandbox):
    assert sandbox.api("PATCH", "/cards/virtual-cards/crd_webhook/frozen", key=KEY2,
                       json={"freeze": True}).status_code == 401
    assert sandbox.api("GET", "/cards/virtual-cards/crd_webhook", key=KEY1).json()["status"] == "ACTIVE"
    calls = sandbox.control("GET", "calls").json()
    assert [(c["method"], c["status"], c["key_level"]) for c in calls] == [("PATCH", 401, 2), ("GET", 200, 1)]
    assert KEY2 not in sandbox.http.get("/_sandbox/calls").text
    assert KEY3 not in sandbox.http.get("/_sandbox/state").text


def test_seeded_keys_define_the_levels(sandbox):
    sandbox.control("POST", "seed", json={"api_keys": [{"key": "ops-only-key-1", "level": 1}],
                                          "cards": [{"id": "c1"}]})
    assert sandbox.api("GET", "/cards/virtual-cards/c1", key="ops-only-key-1").status_code == 200
    assert sandbox.api("GET", "/cards/virtual-cards/c1", key=KEY3).status_code == 401
    assert sandbox.api("PATCH", "/cards/virtual-cards/c1/unblock", key="ops-only-key-1").status_code == 401
