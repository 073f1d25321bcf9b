"""The §6 simulate endpoints: documented answers, errors, and the card lifecycle webhooks they cause."""

from __future__ import annotations

import itertools

import pytest

from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import parse_data, route_for
from test_sandbox.harness import WEBHOOK_KEY, approve_all, running_receiver, running_sandbox

SIM = "/cards/webhook/simulate/"


def test_simulate_errors_are_the_documented_ones(sandbox):
    cases = [
        ("authorize", {"card_id": "nope", "bill_amount": 5}, 412, {"code": "VAL", "message": "Card not found"}),
        ("clearing", {"card_id": "crd_webhook", "bill_amount": 5}, 404,
         {"code": "NOT_FOUND", "message": "Authorization event not found for card crd_webhook"}),
        ("refund", {"card_id": "crd_webhook", "bill_amount": 5}, 404,
         {"code": "NOT_FOUND", "message": "Cleared transaction not found for card crd_webhook"}),
        ("reversal", {"card_id": "crd_webhook", "bill_amount": 5}, 404,
         {"code": "NOT_FOUND", "message": "Authorization event not found for card crd_webhook"}),
    ]
    for name, body, status, error in cases:
        response = sandbox.api("POST", SIM + name, json=body)
        assert (response.status_code, response.json()) == (status, error), name
    missing = sandbox.api("POST", SIM + "authorize", json={"bill_amount": 5})
    assert missing.status_code == 400 and missing.json()["code"] == "BAD_REQUEST"


def test_authorize_clear_refund_lifecycle_answers_201_empty_and_sends_each_event():
    with running_receiver(approve_all) as receiver, running_sandbox() as sb:
        sb.control("POST", "config", json={"webhook_url": receiver.url, "webhook_key": WEBHOOK_KEY})
        authorized = sb.api("POST", SIM + "authorize", json={"card_id": "crd_webhook", "bill_amount": 42.5})
        assert (authorized.status_code, authorized.content) == (201, b"")
        receiver.wait(lambda hits: len(hits) == 2)
        for name, body in (("clearing", {"card_id": "crd_webhook"}),
                           ("refund", {"card_id": "crd_webhook", "bill_amount": 10})):
            response = sb.api("POST", SIM + name, json=body)
            assert (response.status_code, response.content) == (201, b"")
        hits = receiver.wait(lambda hits: len(hits) == 4)
        assert [(h.body["event_type"], h.body["status"]) for h in hits] == [
            ("AUTHORIZATION", "PENDING"), ("AUTHORIZED", "SUCCESS"), ("CLEARED", "SUCCESS"), ("REFUND", "SUCCESS")]
        auth = hits[0].body
        assert auth["product"] == "CARDS" and auth["data"]["bill_amount"] == 42.5
        assert auth["data"]["metadata"] == {"account": "acct-1"}
        assert hits[3].body["data"]["bill_amount"] == 10
        # The refunded transaction is no longer "cleared": a second refund is refused.
        assert sb.api("POST", SIM + "refund", json={"card_id": "crd_webhook", "bill_amount": 1}).status_code == 404


def test_reversal_releases_the_last_authorization_before_clearing_and_restores_a_top_up_balance(sandbox):
    result = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 30}).json()
    assert result["status"] == "approved"
    assert sandbox.control("GET", "balances").json()["cards"]["crd_topup"]["virtual_balance"] == 70
    assert sandbox.api("POST", SIM + "reversal", json={"card_id": "crd_topup", "bill_amount": 30}).status_code == 201
    assert sandbox.control("GET", "balances").json()["cards"]["crd_topup"]["virtual_balance"] == 100
    assert sandbox.api("POST", SIM + "clearing", json={"card_id": "crd_topup"}).status_code == 404


def test_top_up_cards_are_decided_against_their_balance_without_an_authorization_webhook(sandbox):
    assert sandbox.api("PATCH", "/cards/virtual-cards/crd_topup/virtual-balance",
                       json={"virtual_balance": 20}).json() == 20
    ok = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 15}).json()
    refused = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 15}).json()
    assert (ok["status"], refused["status"]) == ("approved", "declined")
    assert refused["decline_reason"]["code"] == "INSUFFICIENT_FUNDS" and refused["response_code"] == "51"
    kinds = [d["event_type"] for d in sandbox.deliveries()]
    assert kinds == ["AUTHORIZED", "DECLINED"]  # no AUTHORIZATION: nobody is asked


def test_velocity_rule_declines_blocks_and_sends_one_block_event_until_unblocked(sandbox):
    put = sandbox.api("PUT", "/cards/account/configuration/velocity-rules",
                      json={"rules": [{"max_authorizations": 2, "time_window_seconds": 60}]})
    assert put.json() == {"rules": [{"max_authorizations": 2, "time_window_seconds": 60}]}
    results = [sandbox.control("POST", "trigger/authorization",
                               json={"card_id": "crd_topup", "bill_amount": 1}).json() for _ in range(4)]
    assert [r["status"] for r in results] == ["approved", "approved", "declined", "declined"]
    assert results[2]["decline_reason"]["code"] == "VELOCITY_LIMIT_EXCEEDED"
    assert results[3]["decline_reason"]["code"] == "CARD_BLOCKED"
    blocks = sandbox.deliveries(event_type="card_blocked_by_velocity")
    assert len(blocks) == 1
    body = blocks[0]["body"]
    assert body["operation_id"] == "crd_topup" and body["company_id"] == body["data"]["company_id"]
    assert body["data"]["triggered_rule"] == {"max_authorizations": 2, "time_window_seconds": 60}
    assert body["data"]["last_authorization_id"] == results[2]["id"]
    assert sandbox.api("GET", "/cards/virtual-cards/crd_topup").json()["status"] == "BLOCKED"
    assert sandbox.api("PATCH", "/cards/virtual-cards/crd_topup/unblock").json() == {"blocked": False}
    again = sandbox.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 1}).json()
    assert again["status"] == "approved"  # unblock also reset the velocity counter


TRIGGERS = [
    ("deposit", {"amount": 25}), ("deposit", {"product": "cards", "amount": 25, "card_id": "crd_topup"}),
    ("deposit", {"product": "treasury", "wallet_id": "twl_1", "amount": 5}),
    ("3ds", {"card_id": "crd_webhook"}), ("velocity_block", {"card_id": "crd_webhook"}),
    ("withdraw", {"amount": 3}), ("transfer", {"amount": 4, "status": "failed"}), ("client_status", {}),
    ("authorization", {"card_id": "crd_defi", "bill_amount": 5}),
]


@pytest.mark.parametrize("generation,casing,amounts",
                         list(itertools.product(["A", "B"], ["upper", "lower"], ["string", "number"])))
def test_every_generated_envelope_parses_and_routes_with_hookstream_schemas(generation, casing, amounts):
    with running_receiver(approve_all) as receiver, \
            running_sandbox(generation=generation, casing=casing, amounts=amounts) as sb:
        sb.control("POST", "config", json={"webhook_url": receiver.url, "webhook_key": WEBHOOK_KEY})
        for kind, body in TRIGGERS:
            sb.control("POST", f"trigger/{kind}", json=body)
        hits = receiver.wait(lambda hits: len(hits) >= 10)
        for hit in hits:
            envelope = parse_envelope(hit.body)
            assert envelope.generation == generation
            route = route_for(envelope)
            assert route is not None, hit.body
            parse_data(envelope, route)
            value = hit.body.get("product", hit.body.get("operation"))
            assert value == (value.upper() if casing == "upper" else value.lower())
            amount = hit.body["data"].get("amount", hit.body["data"].get("bill_amount",
                                                                         hit.body["data"].get("transaction_amount")))
            if amount is not None:
                assert isinstance(amount, str if amounts == "string" else float)
        names = {(parse_envelope(h.body).product, parse_envelope(h.body).event_type) for h in hits}
        if generation == "A":
            assert ("cards", "clearing") in names and ("cards", "authorized") not in names
        else:
            assert ("cards", "authorized") in names


def test_string_amounts_carry_cents_like_the_documented_examples():
    with running_receiver() as receiver, running_sandbox(amounts="string", casing="lower") as sb:
        sb.control("POST", "config", json={"webhook_url": receiver.url})
        sb.control("POST", "trigger/authorization", json={"card_id": "crd_topup", "bill_amount": 42.5})
        data = receiver.wait(lambda hits: len(hits) == 1)[0].body["data"]
        assert data["bill_amount"] == "42.50" and data["fees"] == {"atm_fees": "0.00", "fx_fees": "0.00"}
        assert data["bill_currency_number"] == "840"
