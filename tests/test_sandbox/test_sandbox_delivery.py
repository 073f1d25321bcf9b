"""The webhook sender keeps the platform's delivery schedule (cryptomate.md §1.5, §3)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.sender import AuthorizationAnswer, WebhookSender
from hookstream.sandbox.state import Company
from test_sandbox.harness import WEBHOOK_KEY, running_receiver, running_sandbox

AUTHORIZE = "/cards/webhook/simulate/authorize"


def _webhook(sb, receiver):
    sb.control("POST", "config", json={"webhook_url": receiver.url, "webhook_key": WEBHOOK_KEY})


def test_failing_receiver_gets_ten_attempts_with_doubling_spacing():
    base = 0.005
    with running_receiver(lambda n, body: (503, {"error": "down"}, 0.0)) as receiver, \
            running_sandbox(retry_base_s=base) as sb:
        _webhook(sb, receiver)
        sb.control("POST", "trigger/deposit", json={"amount": "25.00"})
        receiver.wait(lambda hits: len(hits) >= 10, timeout=15)
        # The sender's task ends after the 10th attempt: nothing more is scheduled.
        deadline = time.monotonic() + 5
        while sb.control("GET", "state").json()["pending_deliveries"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sb.control("GET", "state").json()["pending_deliveries"] == 0
        assert len(receiver.hits) == 10
        gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:])]
        for n, gap in enumerate(gaps):
            expected = base * 2 ** n  # 1 s, 2 s, 4 s … at the real base
            assert expected * 0.9 <= gap < expected + 0.15, (n, gaps)
        attempts = sb.deliveries()
        assert [d["attempt"] for d in attempts] == list(range(1, 11))
        assert {d["http_status"] for d in attempts} == {503} and not any(d["delivered"] for d in attempts)


def test_delivery_stops_at_the_first_200():
    with running_receiver(lambda n, body: (500 if n < 3 else 200, {"response_code": "OK"}, 0.0)) as receiver, \
            running_sandbox(retry_base_s=0.01) as sb:
        _webhook(sb, receiver)
        sb.control("POST", "trigger/withdraw", json={"amount": "5"})
        receiver.wait(lambda hits: len(hits) >= 3)
        time.sleep(0.2)
        assert len(receiver.hits) == 3
        assert [d["outcome"] for d in sb.deliveries()] == ["http_error", "http_error", "ok"]


def test_authorization_timeout_at_1200_ms_declines_without_retry():
    def slow(n, body):
        slow_auth = str(body.get("event_type")).lower() == "authorization"
        return 200, {"response_code": "00" if slow_auth else "OK"}, 1.6 if slow_auth else 0.0

    with running_receiver(slow) as receiver, running_sandbox() as sb:
        _webhook(sb, receiver)
        assert sb.api("POST", AUTHORIZE, json={"card_id": "crd_webhook", "bill_amount": 10}).status_code == 201
        found = sb.wait_deliveries(lambda ds: any(d["event_type"] == "DECLINED" and d["delivered"] for d in ds))
        auth = [d for d in found if d["event_type"] == "AUTHORIZATION"]
        assert len(auth) == 1 and auth[0]["outcome"] == "timeout" and auth[0]["decision"] == "declined"
        assert 1150 <= auth[0]["latency_ms"] < 1500
        declined = next(d for d in found if d["event_type"] == "DECLINED")["body"]
        assert declined["operation_id"] == auth[0]["operation_id"]
        assert declined["data"]["decline_reason"]["code"] == "WEBHOOK_TIMEOUT"
        assert sb.control("GET", "transactions").json()[0]["status"] == "declined"


@pytest.mark.parametrize("code,expected_event,status", [("00", "AUTHORIZED", "approved"),
                                                        ("SUCCESS", "AUTHORIZED", "approved"),
                                                        ("51", "DECLINED", "declined")])
def test_authorization_answer_decides_and_the_follow_up_event_is_sent(code, expected_event, status):
    def answer(n, body):
        return 200, {"response_code": code if str(body["event_type"]).lower() == "authorization" else "OK"}, 0.0

    with running_receiver(answer) as receiver, running_sandbox() as sb:
        _webhook(sb, receiver)
        sb.api("POST", AUTHORIZE, json={"card_id": "crd_webhook", "bill_amount": 42.5})
        hits = receiver.wait(lambda hits: len(hits) == 2)
        assert [h.body["event_type"] for h in hits] == ["AUTHORIZATION", expected_event]
        txn = sb.control("GET", "transactions").json()[0]
        assert txn["status"] == status and txn["response_code"] == code
        if status == "declined":
            assert hits[1].body["data"]["decline_reason"]["response_code"] == "51"


def test_3ds_challenge_is_sent_once_even_when_the_receiver_fails():
    with running_receiver(lambda n, body: (500, None, 0.0)) as receiver, running_sandbox(retry_base_s=0.01) as sb:
        _webhook(sb, receiver)
        code = sb.control("POST", "trigger/3ds", json={"card_id": "crd_webhook"}).json()["code"]
        receiver.wait(lambda hits: len(hits) == 1)
        time.sleep(0.3)
        assert len(receiver.hits) == 1
        body = receiver.hits[0].body
        assert (body["event_type"], body["status"], body["operation_id"]) == ("NOTIFICATION_3DS_AUTHORIZATION", "PENDING", code)
        assert body["data"]["code"] == code


def test_headers_carry_the_key_and_a_millisecond_timestamp_in_generation_b():
    with running_receiver() as receiver, running_sandbox() as sb:
        _webhook(sb, receiver)
        before = int(time.time() * 1000)
        sb.control("POST", "trigger/deposit", json={"amount": 30})
        hit = receiver.wait(lambda hits: len(hits) == 1)[0]
        assert hit.headers["x-webhook-key"] == WEBHOOK_KEY
        assert hit.headers["content-type"] == "application/json"
        assert before <= int(hit.headers["x-request-timestamp"]) <= int(time.time() * 1000)
        sb.control("POST", "config", json={"generation": "A"})
        sb.control("POST", "trigger/deposit", json={"amount": 30})
        hit = receiver.wait(lambda hits: len(hits) == 2)[1]
        assert "x-request-timestamp" not in hit.headers and hit.body["operation"] == "VIRTUAL_WALLETS"


def test_rotated_key_applies_to_the_very_next_delivery():
    with running_receiver() as receiver, running_sandbox() as sb:
        subscribed = sb.api("POST", "/management/companies/webhook/subscribe",
                            json={"url": receiver.url, "webhook_key": WEBHOOK_KEY})
        assert subscribed.json()["webhook_url"] == receiver.url
        assert sb.api("POST", "/management/companies/webhook/key", json={"key": "short"}).json() == {
            "code": "VAL", "message": "Webhook key must be at least 10 characters long"}
        assert sb.api("POST", "/management/companies/webhook/key", json={"key": "rotated-key-456"}).status_code == 200
        sb.control("POST", "trigger/deposit", json={"amount": 30})
        assert receiver.wait(lambda hits: len(hits) == 1)[0].headers["x-webhook-key"] == "rotated-key-456"


def test_duplicate_and_delay_injection():
    with running_receiver() as receiver, running_sandbox() as sb:
        _webhook(sb, receiver)
        started = time.monotonic()
        sb.control("POST", "trigger/deposit", json={"amount": 30, "delivery": {"duplicate": 2, "delay_s": 0.3}})
        hits = receiver.wait(lambda hits: len(hits) == 3)
        assert hits[0].at - started >= 0.3
        assert hits[0].body == hits[1].body == hits[2].body
        assert [d["copy"] for d in sb.deliveries()] == [1, 2, 3]


def test_deliveries_cut_off_at_their_deadline_never_leave_the_sender_unable_to_deliver():
    """Deliveries cut off at their deadline while the receiver is slow (as during a broker restart), more at once
    than a pool of 100 connections: once the receiver answers in time again, every delivery reaches it. The
    20,000-event chaos run ended with every later delivery timing out, the pool full of CLOSE-WAIT connections
    (httpcore leaks a pool slot when a request waiting for one is cancelled, encode/httpcore#1093)."""
    rng = random.Random(15)
    slow = {"on": True}
    with running_receiver(lambda n, body: (200, {"response_code": "00"},
                                           rng.uniform(0.0, 0.2) if slow["on"] else 0.0)) as receiver:
        config = SandboxConfig(authorization_timeout_s=0.1)
        company = Company(webhook_url=receiver.url, webhook_key=WEBHOOK_KEY)

        async def run() -> tuple[list[AuthorizationAnswer], list[AuthorizationAnswer]]:
            sender = WebhookSender(config, lambda: company)
            cut_off: list[AuthorizationAnswer] = []
            churn_until = time.monotonic() + 5.0

            async def churn(n: int) -> None:
                while time.monotonic() < churn_until:
                    cut_off.append(await sender.authorize(_authorization(n)))

            try:
                await asyncio.gather(*(churn(n) for n in range(400)))  # far more than a pool of 100
                slow["on"] = False
                while sender.pending():  # requests past their deadline end on their own
                    await asyncio.sleep(0.05)
                config.authorization_timeout_s = 5.0
                after = [await sender.authorize(_authorization(1000 + n)) for n in range(20)]
                return cut_off, after
            finally:
                await sender.aclose()

        cut_off, after = asyncio.run(asyncio.wait_for(run(), 90))
    assert sum(a.outcome == "timeout" for a in cut_off) >= 40  # the fault happened
    assert [(a.outcome, a.response_code) for a in after] == [("ok", "00")] * 20


def _authorization(n: int) -> dict[str, Any]:
    return {"product": "cards", "event_type": "authorization", "status": "pending", "operation_id": f"auth-{n}",
            "data": {"card_id": "crd_webhook", "bill_amount": 10}}
