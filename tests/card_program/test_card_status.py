"""`hookstream process card-status`: velocity blocks recorded; the opt-in auto-unblock goes through the API."""

from __future__ import annotations

from card_program.conftest import envelope, fund, wait_until
from hookstream.idempotency import idempotency_key
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key


def blocked(ledger, card: str) -> bool | None:
    with ledger.unit_of_work(read_only=True) as uow:
        state = uow.card_state(card)
        return state.blocked if state is not None else None


def test_velocity_block_is_recorded_and_nothing_is_unblocked_by_default(settings, ledger, feed, start_processor):
    fund(ledger, "acct-1", "0", cards={"crd_a": "WEBHOOK"})
    # No API behind it: a call would fail and the record would not end "ok".
    status = start_processor("card-status", settings)
    data = {"card_id": "crd_a", "company_id": "cmp_1", "blocked_at": "2026-04-23T10:00:00.000Z",
            "triggered_rule": {"max_authorizations": 3, "time_window_seconds": 60},
            "last_authorization_id": "life_evt_9"}
    body = envelope("A", "cards", "card_blocked_by_velocity", "SUCCESS", "crd_a", data, company_id="cmp_1")
    feed.send(body)
    feed.send(body)  # redelivered
    # A later block of the same card (after an unblock elsewhere) is a new event.
    feed.send(envelope("B", "cards", "card_blocked_by_velocity", "success", "crd_a",
                       {**data, "blocked_at": "2026-04-23T11:00:00.000Z"}))
    wait_until(lambda: status.handled() >= 3, "three velocity records handled")
    assert (status.outcome("ok"), status.outcome("duplicate")) == (2, 1)
    assert blocked(ledger, "crd_a") is True
    assert status.metric("hookstream_api_calls_total") == 0
    assert [e["max_authorizations"] for e in status.log_events("card_status.blocked_by_velocity")] == [3, 3]


def test_auto_unblock_calls_the_unblock_endpoint_once_and_marks_the_card_unblocked(
        e2e_settings, e2e_ledger, start_pipeline, start_processor):
    fund(e2e_ledger, "acct-1", "0", cards={"crd_webhook": "WEBHOOK"})
    sandbox = start_pipeline(e2e_settings, generation="B")
    status = start_processor("card-status", e2e_settings, api_url=sandbox.base, HOOKSTREAM_AUTO_UNBLOCK="true")

    sandbox.trigger("velocity_block", card_id="crd_webhook", max_authorizations=2, time_window_seconds=30,
                    delivery={"duplicate": 1})
    assert sandbox.control("GET", "balances")["cards"]["crd_webhook"]["status"] == "BLOCKED"
    wait_until(lambda: status.handled() >= 2, "the block and its duplicate handled")
    wait_until(lambda: sandbox.control("GET", "balances")["cards"]["crd_webhook"]["status"] == "ACTIVE",
               "the card unblocked on the platform")
    calls = sandbox.calls("/unblock")
    body = sandbox.delivered("card_blocked_by_velocity")[0]["body"]
    key = idempotency_key("card-status", dedup_key(parse_envelope(body)), "unblock")
    assert [(c["method"], c["path"], c["idempotency_key"], c["status"]) for c in calls] == [
        ("PATCH", "/cards/virtual-cards/crd_webhook/unblock", key, 200)]
    assert blocked(e2e_ledger, "crd_webhook") is False
    assert status.outcome("duplicate") == 1
