"""`hookstream process cards` on the real broker, SQLite and Postgres, both envelope generations.

Holds are placed in the ledger as the receiver's ledger policy does (same call, same keys), and the
authorization and follow-up records are written to the topic as the receiver writes them.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import insert, text

from card_program.conftest import balance, card_data, envelope, fund, wait_until
from hookstream.ledger.decisions import authorization_decisions
from hookstream.schemas import headers as h
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key

GENERATIONS = pytest.mark.parametrize("gen", ["A", "B"])
# Generation A traffic names a settlement CLEARING/SUCCESS ([OBS]); generation B says cleared.
CLEARED = {"A": ("clearing", "success"), "B": ("cleared", "success")}


def hold(ledger, card: str, operation_id: str, amount: str, gen: str) -> bytes:
    """The receiver's approval: the hold, and the authorization record it publishes."""
    body = envelope(gen, "cards", "authorization", "pending", operation_id, card_data(card, amount))
    with ledger.unit_of_work() as uow:
        account = uow.card_state(card).account_id
        assert uow.place_hold(account, card, operation_id, D(amount), dedup_key(parse_envelope(body)),
                              memo="authorization").reason == "ok"
    return body


def approved() -> dict[str, str]:
    return {h.RESPONSE_CODE: "00", h.DECISION_REASON: "approved"}


def postings(ledger, account: str) -> list[tuple[str, D]]:
    with ledger.unit_of_work(read_only=True) as uow:
        return [(p.kind, p.amount) for p in uow.statement(account)]


@GENERATIONS
def test_cleared_captures_the_hold_and_a_redelivery_never_moves_money_twice(
        gen, settings, ledger, feed, start_processor):
    fund(ledger, "acct-1", "100.00", cards={"crd_a": "WEBHOOK"})
    cards = start_processor("cards", settings)
    settle, status = CLEARED[gen]

    auth = hold(ledger, "crd_a", "life_1", "42.50", gen)
    feed.send(auth, **approved())
    cleared = envelope(gen, "cards", settle, status, "life_1", card_data("crd_a", "42.50"))
    feed.send(cleared)
    wait_until(lambda: cards.outcome("ok") >= 2, "authorization and settlement handled")
    assert balance(ledger, "acct-1") == (D("57.50"), D("0.00"), D("57.50"))

    # The final amount may differ from the hold (tips, FX): the cleared amount is what leaves.
    feed.send(hold(ledger, "crd_a", "life_2", "30.00", gen))
    feed.send(envelope(gen, "cards", settle, status, "life_2", card_data("crd_a", "31.25")))
    wait_until(lambda: cards.outcome("ok") >= 4, "second settlement handled")
    assert balance(ledger, "acct-1") == (D("26.25"), D("0.00"), D("26.25"))

    # Redelivered settlements (the platform retries, the receiver may publish twice).
    feed.send(cleared)
    feed.send(auth, **approved())
    wait_until(lambda: cards.outcome("duplicate") >= 2, "redeliveries handled")
    assert balance(ledger, "acct-1") == (D("26.25"), D("0.00"), D("26.25"))
    assert [k for k, _ in postings(ledger, "acct-1")] == ["credit", "hold", "capture", "hold", "capture"]
    assert postings(ledger, "acct-1")[-1] == ("capture", D("31.25"))
    assert cards.metric("hookstream_ledger_unmatched_total") == 0


@GENERATIONS
def test_reversal_releases_refund_credits_and_an_unknown_hold_is_counted_not_fatal(
        gen, settings, ledger, feed, start_processor):
    fund(ledger, "acct-1", "100.00", cards={"crd_a": "WEBHOOK"})
    cards = start_processor("cards", settings)

    feed.send(hold(ledger, "crd_a", "life_1", "20.00", gen))
    assert balance(ledger, "acct-1") == (D("100.00"), D("20.00"), D("80.00"))
    feed.send(envelope(gen, "cards", "reversal", "success", "life_1", card_data("crd_a", "20.00")))
    feed.send(envelope(gen, "cards", "refund", "success", "rfd_1", card_data("crd_a", "10.00")))
    # Declined by the receiver itself: no hold was ever placed, nothing to release, nothing unmatched.
    feed.send(envelope(gen, "cards", "declined", "failed" if gen == "A" else "success", "life_9",
                       card_data("crd_a", "500.00")))
    wait_until(lambda: cards.handled() >= 4, "reversal, refund and decline handled")
    assert balance(ledger, "acct-1") == (D("110.00"), D("0.00"), D("110.00"))
    assert cards.metric("hookstream_ledger_unmatched_total") == 0

    # A settlement for a card nobody linked, and a reversal of a hold that never existed.
    settle, status = CLEARED[gen]
    feed.send(envelope(gen, "cards", settle, status, "life_x", card_data("crd_stranger", "5.00")))
    feed.send(envelope(gen, "cards", "reversal", "success", "life_y", card_data("crd_a", "7.77")))
    wait_until(lambda: cards.metric("hookstream_ledger_unmatched_total") >= 2, "unmatched events counted")
    assert cards.metric("hookstream_ledger_unmatched_total", event_type=settle) == 1
    assert cards.metric("hookstream_ledger_unmatched_total", event_type="reversal") == 1
    assert cards.outcome("dead_lettered") == 0

    # Still alive and still settling.
    feed.send(envelope(gen, "cards", "refund", "success", "rfd_2", card_data("crd_a", "1.00")))
    wait_until(lambda: balance(ledger, "acct-1")[0] == D("111.00"), "refund after the unmatched events")
    assert cards.healthy()
    outcomes = dict(settings_query(settings, "SELECT dedup_key, outcome FROM inbox WHERE processor = 'cards'"))
    assert sorted(o for o in outcomes.values() if o != "ok") == ["nothing_held", "unmatched", "unmatched"]


@GENERATIONS
def test_a_follow_up_finds_its_hold_by_identity_or_documented_alias_never_by_amount(
        gen, settings, ledger, feed, start_processor):
    fund(ledger, "acct-1", "100.00", cards={"crd_a": "WEBHOOK"})
    cards = start_processor("cards", settings)
    settle, status = CLEARED[gen]

    hold(ledger, "crd_a", "life_evt_abc", "12.00", gen)
    hold(ledger, "crd_a", "life_evt_def", "8.00", gen)
    # `txn_abc` is the documented alias of `life_evt_abc`; `other_9` and `other_8` only resemble
    # life_evt_def (same card, same amount): they are recorded for an operator, life_evt_def stays held
    # (the settlement's money still leaves, as a plain debit, never as life_evt_def's capture).
    feed.send(envelope(gen, "cards", settle, status, "txn_abc", card_data("crd_a", "12.00")))
    feed.send(envelope(gen, "cards", "reversal", "success", "other_9", card_data("crd_a", "8.00")))
    feed.send(envelope(gen, "cards", settle, status, "other_8", card_data("crd_a", "8.00")))
    wait_until(lambda: cards.handled() >= 3, "the follow-ups handled")
    assert balance(ledger, "acct-1") == (D("80.00"), D("8.00"), D("72.00"))
    assert cards.metric("hookstream_ledger_unmatched_total", event_type="reversal") == 1
    assert cards.metric("hookstream_ledger_unmatched_total", event_type=settle) == 1
    assert [e["reason"] for e in cards.log_events("cards.unmatched")] == ["unmatched", "unmatched"]
    assert settings_query(settings, "SELECT operation_id, card_id, amount, reason FROM unmatched_events") == [
        ("other_9", "crd_a", "8.00", "unmatched"), ("other_8", "crd_a", "8.00", "unmatched")]
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.hold_status("crd_a", "life_evt_def") == "held"
        assert uow.balance("acct-1") == uow.recomputed_balance("acct-1")
    assert [k for k, _ in postings(ledger, "acct-1")] == ["credit", "hold", "hold", "capture", "debit"]


@GENERATIONS
def test_declined_for_an_authorization_the_receiver_declined_never_releases_another_hold(
        gen, settings, ledger, feed, start_processor):
    """Issue 13: the receiver declined life_B itself (no hold); its `declined` must not release life_A's
    hold of the same amount on the same card, or the card spends money it already committed."""
    fund(ledger, "acct-1", "50.00", cards={"crd_a": "WEBHOOK"})
    cards = start_processor("cards", settings)
    settle, status = CLEARED[gen]

    auth_a = hold(ledger, "crd_a", "life_A", "30.00", gen)
    feed.send(auth_a, **approved())
    declined_b = envelope(gen, "cards", "authorization", "pending", "life_B", card_data("crd_a", "30.00"))
    feed.send(declined_b, **{h.RESPONSE_CODE: "51", h.DECISION_REASON: "insufficient_funds"})
    feed.send(envelope(gen, "cards", "declined", "failed" if gen == "A" else "success", "life_B",
                       card_data("crd_a", "30.00")))
    wait_until(lambda: cards.handled() >= 3, "authorizations and the decline handled")
    assert balance(ledger, "acct-1") == (D("50.00"), D("30.00"), D("20.00")), "life_A's hold was released"
    outcomes = dict(settings_query(settings, "SELECT dedup_key, outcome FROM inbox WHERE processor = 'cards'"))
    assert sorted(o for o in outcomes.values() if o != "ok") == ["nothing_held"]

    # life_A clears later: its own hold is captured, nothing posts unmatched, the books stay exact.
    feed.send(envelope(gen, "cards", settle, status, "life_A", card_data("crd_a", "30.00")))
    wait_until(lambda: cards.handled() >= 4, "the settlement handled")
    assert balance(ledger, "acct-1") == (D("20.00"), D("0.00"), D("20.00"))
    assert [k for k, _ in postings(ledger, "acct-1")] == ["credit", "hold", "capture"]
    assert cards.metric("hookstream_ledger_unmatched_total") == 0


def settings_query(settings, sql: str) -> list[tuple]:
    from hookstream.ledger.engine import make_engine

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_a_hold_whose_authorization_was_answered_with_a_decline_is_released(settings, ledger, feed, start_processor):
    """The receiver's fallback answer ("05" after the budget) must not leave a late decision's hold."""
    fund(ledger, "acct-late", "100.00", cards={"crd_late": "WEBHOOK"})
    cards = start_processor("cards", settings)
    auth = hold(ledger, "crd_late", "life_late", "40.00", "B")  # decided after the answer was sent
    assert balance(ledger, "acct-late") == (D("100.00"), D("40.00"), D("60.00"))
    feed.send(auth, **{h.RESPONSE_CODE: "05", h.DECISION_REASON: "timeout"})
    wait_until(lambda: cards.outcome("declined_hold_released") + cards.outcome("ok") >= 1, "authorization handled")
    assert balance(ledger, "acct-late") == (D("100.00"), D("0.00"), D("100.00"))
    feed.send(auth, **{h.RESPONSE_CODE: "05", h.DECISION_REASON: "timeout"})  # redelivered: nothing more
    wait_until(lambda: cards.outcome("duplicate") >= 1, "redelivery handled")
    assert [k for k, _ in postings(ledger, "acct-late")] == ["credit", "hold", "release"]


def test_a_redelivery_answered_with_a_decline_never_releases_the_first_approval(
        settings, ledger, feed, start_processor):
    """A hold exists iff the first answer was an approval: a redelivery's fallback "05" record that reaches
    Kafka before the first delivery's "00" record (which is then a duplicate) must not release the hold."""
    fund(ledger, "acct-redo", "100.00", cards={"crd_redo": "WEBHOOK"})
    cards = start_processor("cards", settings)
    body = envelope("B", "cards", "authorization", "pending", "life_redo", card_data("crd_redo", "40.00"))
    dedup = dedup_key(parse_envelope(body))
    with ledger.unit_of_work() as uow:  # the receiver's first answer: approved, hold placed, decision recorded
        placed = uow.place_hold("acct-redo", "crd_redo", "life_redo", D("40.00"), dedup, memo="authorization")
        uow.connection.execute(insert(authorization_decisions).values(
            dedup_key=dedup, card_id="crd_redo", operation_id="life_redo", response_code="00",
            reason="approved", hold_id=placed.hold_id, attempt="first"))
    feed.send(body, **{h.RESPONSE_CODE: "05", h.DECISION_REASON: "timeout"})  # the redelivery's record, first
    feed.send(body, **approved())  # the first delivery's record, later
    wait_until(lambda: cards.handled() >= 2 and cards.outcome("duplicate") >= 1, "both records handled")
    assert balance(ledger, "acct-redo") == (D("100.00"), D("40.00"), D("60.00"))
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.hold_status("crd_redo", "life_redo") == "held"


def _start_receiver(processes, settings, budget_ms: int = 1150) -> str:
    """`hookstream ingest` with the ledger policy on this test's books; its webhook URL."""
    from hookstream.broker import free_port
    from test_ingest.conftest import settings_env

    port = free_port()
    processes.start(["ingest", "--port", str(port)], settings_env(
        settings, HOOKSTREAM_AUTHORIZATION_POLICY="hookstream.ingest.policy:ledger_policy",
        HOOKSTREAM_AUTHORIZATION_BUDGET_MS=str(budget_ms)), name="ingest",
        ready_url=f"http://127.0.0.1:{port}/readyz", timeout=30)
    return f"http://127.0.0.1:{port}/webhooks/cryptomate"


def _answer(url: str, body: bytes) -> str:
    import httpx

    response = httpx.post(url, content=body, timeout=30,
                          headers={"content-type": "application/json", "X-Webhook-Key": "test-webhook-key-0001"})
    assert response.status_code == 200, response.text
    return response.json()["response_code"]


def test_an_authorization_decided_after_the_platform_declined_it_holds_nothing_in_either_order(
        settings, ledger, feed, start_processor, processes):
    """Issue 15 (chaos, finding 1): the platform declines at its deadline and sends `declined`; the cards
    processor applies it before the receiver's late decision commits a hold. That hold must never stay:
    the declined operation is closed, and a decision after it answers "05" and holds nothing."""
    import threading
    import time

    fund(ledger, "acct-late", "100.00", cards={"crd_late": "WEBHOOK"})
    cards = start_processor("cards", settings)
    url = _start_receiver(processes, settings)
    auth = {op: envelope("B", "cards", "authorization", "pending", op, card_data("crd_late", amount))
            for op, amount in (("life_dec_first", "40.00"), ("life_auth_first", "30.00"), ("life_race", "20.00"),
                               ("life_rev_first", "10.00"))}

    # Declined first (nothing held: the operation is closed), the authorization decided after it.
    feed.send(envelope("B", "cards", "declined", "success", "life_dec_first", card_data("crd_late", "40.00")))
    feed.send(envelope("B", "cards", "reversal", "success", "life_rev_first", card_data("crd_late", "10.00")))
    wait_until(lambda: cards.handled() >= 2, "the declined and the reversal handled")
    assert _answer(url, auth["life_dec_first"]) == "05"
    assert _answer(url, auth["life_rev_first"]) == "05"
    # Authorization first (hold placed), the declined after it: released, as before.
    assert _answer(url, auth["life_auth_first"]) == "00"
    feed.send(envelope("B", "cards", "declined", "success", "life_auth_first", card_data("crd_late", "30.00")))
    # Both at once: the closing transaction holds the account while the decision arrives; the decision
    # waits for it and must see the operation closed (the processor's calls, in one open transaction).
    closing, holding = threading.Event(), threading.Event()

    def close_while_deciding() -> None:
        with ledger.unit_of_work() as uow:
            uow.lock_card_account("crd_late")
            assert uow.release_hold("crd_late", "life_race", "declined:life_race").hold_status is None
            uow.close_operation("crd_late", "life_race", "declined", "declined:life_race")
            holding.set()
            closing.wait(10)
            time.sleep(0.2)  # the decision is waiting on the lock now

    closer = threading.Thread(target=close_while_deciding)
    closer.start()
    assert holding.wait(10)
    closing.set()
    assert _answer(url, auth["life_race"]) == "05"
    closer.join(10)

    wait_until(lambda: cards.handled() >= 7, "the authorizations' records and the last declined handled")
    # Redeliveries get the first answers; the books hold nothing and add up.
    assert [_answer(url, auth[op]) for op in auth] == ["05", "00", "05", "05"]
    with ledger.unit_of_work(read_only=True) as uow:
        assert {op: uow.hold_status("crd_late", op) for op in auth} == {
            "life_dec_first": None, "life_auth_first": "released", "life_race": None, "life_rev_first": None}
        assert uow.balance("acct-late") == uow.recomputed_balance("acct-late")
    assert balance(ledger, "acct-late") == (D("100.00"), D("0.00"), D("100.00"))
    assert dict((op, (code, reason)) for op, code, reason in settings_query(
        settings, "SELECT operation_id, response_code, reason FROM authorization_decisions")) == {
        "life_dec_first": ("05", "operation_closed"), "life_auth_first": ("00", "approved"),
        "life_race": ("05", "operation_closed"), "life_rev_first": ("05", "operation_closed")}
    assert sorted(r[0] for r in settings_query(settings, "SELECT operation_id FROM closed_operations")) == [
        "life_dec_first", "life_race", "life_rev_first"]
