"""The receiver's ledger authorization policy, through HTTP, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from fixtures.http_load import post_many
from hookstream.ledger import Ledger
from hookstream.schemas import headers as h
from test_ingest.conftest import KEY
from test_ingest.payloads import card_txn, envelope

POLICY = {"HOOKSTREAM_AUTHORIZATION_POLICY": "hookstream.ingest.policy:ledger_policy"}


def _auth(card: str, amount: str, op: str, **extra) -> bytes:
    data = {**card_txn(card, amount), **extra}
    data["metadata"] = extra.get("metadata", {})
    return envelope("cards", "authorization", "pending", op, data)


def _fund(url: str, account: str, amount: str, *cards: str) -> Ledger:
    ledger = Ledger(url, auto_upgrade=True)
    ledger.upgrade()
    with ledger.unit_of_work() as uow:
        uow.ensure_account(account)
        uow.credit(account, Decimal(amount), f"seed:{account}")
        for card in cards:
            uow.link_card(card, account, approval_method="WEBHOOK")
    return ledger


def test_funded_card_is_approved_with_a_hold_and_the_next_one_gets_51(
    ledger_url, make_settings, start_receiver, topic_reader
):
    from hookstream.kafka import ensure_topics
    from hookstream.schemas.routing import TOPICS

    settings = make_settings(database_url=ledger_url)
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(ledger_url, "acct-1", "100.00", "crd_a")
    receiver = start_receiver(settings, **POLICY)

    assert receiver.post(_auth("crd_a", "42.50", "life_1")).json() == {"response_code": "00"}
    with ledger.unit_of_work(read_only=True) as uow:
        balance = uow.balance("acct-1")
        assert (balance.balance, balance.held, balance.available) == (
            Decimal("100.00"), Decimal("42.50"), Decimal("57.50"))
        assert uow.hold_status("crd_a", "life_1") == "held"
    assert receiver.post(_auth("crd_a", "60.00", "life_2")).json() == {"response_code": "51"}
    records = sorted(topic_reader("cryptomate.cards.transactions", 2), key=lambda r: r.offset)
    assert [(r.headers[h.RESPONSE_CODE], r.headers[h.DECISION_REASON]) for r in records] == [
        ("00", "approved"), ("51", "insufficient_funds")]
    assert records[0].headers[h.HOLD_ID]


def test_a_receiver_started_without_a_policy_setting_decides_on_the_ledger(make_settings, processes, tmp_path):
    """ARCHITECTURE 6: the default policy places a ledger hold when the available balance covers the bill."""
    from hookstream.broker import free_port
    from hookstream.kafka import ensure_topics
    from hookstream.schemas.routing import TOPICS
    from hookstream.settings import Settings
    from test_ingest.conftest import settings_env

    assert Settings.model_fields["authorization_policy"].default == POLICY["HOOKSTREAM_AUTHORIZATION_POLICY"]
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'default.db'}")
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(settings.database_url, "acct-default", "30.00", "crd_default")
    env = {k: v for k, v in settings_env(settings).items() if k != "HOOKSTREAM_AUTHORIZATION_POLICY"}
    port = free_port()
    processes.start(["ingest", "--port", str(port)], env, name="ingest",
                    ready_url=f"http://127.0.0.1:{port}/readyz", timeout=30)
    url = f"http://127.0.0.1:{port}/webhooks/cryptomate"
    headers = {"X-Webhook-Key": KEY, "content-type": "application/json"}
    assert httpx.post(url, content=_auth("crd_default", "20.00", "dflt_1"), headers=headers,
                      timeout=30).json() == {"response_code": "00"}
    assert httpx.post(url, content=_auth("crd_default", "20.00", "dflt_2"), headers=headers,
                      timeout=30).json() == {"response_code": "51"}
    assert httpx.post(url, content=_auth("crd_unknown", "1.00", "dflt_3"), headers=headers,
                      timeout=30).json() == {"response_code": "05"}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-default").held == Decimal("20.00")
        assert uow.hold_status("crd_default", "dflt_1") == "held"
        assert uow.hold_status("crd_default", "dflt_2") is None


@pytest.mark.postgres
def test_a_receiver_whose_ledger_needs_db_upgrade_is_not_ready_until_it_ran(
    make_settings, processes, postgres_database_url
):
    """A receiver started before `hookstream db upgrade` ran (a deploy whose setup Job is late): /readyz says
    why instead of every card being declined in silence; authorizations meanwhile get the fallback in time;
    after the upgrade it turns ready on its own and decides on the ledger."""
    import time

    from hookstream.broker import free_port
    from hookstream.kafka import ensure_topics
    from hookstream.schemas.routing import TOPICS
    from test_ingest.conftest import settings_env

    settings = make_settings(database_url=postgres_database_url)
    ensure_topics(settings, list(TOPICS))
    env = {k: v for k, v in settings_env(settings).items() if k != "HOOKSTREAM_AUTHORIZATION_POLICY"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = processes.start(["ingest", "--port", str(port)], env, name="ingest", ready_url=f"{base}/healthz",
                           timeout=30)

    def readyz() -> httpx.Response:
        return httpx.get(f"{base}/readyz", timeout=5)

    deadline = time.monotonic() + 30
    while (answer := readyz()).status_code == 200 or "kafka producer" in answer.text:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.status_code == 503 and answer.json()["kafka"] is True, answer.text
    assert "run `hookstream db upgrade`" in answer.json()["reason"], answer.text
    assert proc.output().count('"authorization.ledger_not_ready"') == 1
    headers = {"X-Webhook-Key": KEY, "content-type": "application/json"}
    url = f"{base}/webhooks/cryptomate"
    started = time.monotonic()  # traffic that still arrives is answered in time, with the fallback
    assert httpx.post(url, content=_auth("crd_upg", "5.00", "upg_1"), headers=headers,
                      timeout=30).json() == {"response_code": "05"}
    assert time.monotonic() - started < 1.2

    upgrade = processes.start(["db", "upgrade"], env, name="upgrade")
    assert upgrade.wait(120) == 0, upgrade.output()
    _fund(postgres_database_url, "acct-upg", "50.00", "crd_upg")
    deadline = time.monotonic() + 20
    while readyz().status_code != 200:
        assert time.monotonic() < deadline, readyz().text
        time.sleep(0.3)
    assert '"authorization.ledger_ready"' in proc.output()
    assert httpx.post(url, content=_auth("crd_upg", "20.00", "upg_2"), headers=headers,
                      timeout=30).json() == {"response_code": "00"}


def test_unlinked_frozen_and_ruled_out_cards_are_declined(settings, start_receiver):
    ledger = _fund(settings.database_url, "acct-2", "500.00", "crd_frozen", "crd_ok")
    with ledger.unit_of_work() as uow:
        uow.set_card_state("crd_frozen", frozen=True)
    receiver = start_receiver(settings, HOOKSTREAM_AUTHORIZATION_MCC_DENY="7995,5933",
                              HOOKSTREAM_AUTHORIZATION_MAX_AMOUNT="250", **POLICY)
    assert receiver.post(_auth("crd_unknown", "1.00", "u1")).json() == {"response_code": "05"}
    assert receiver.post(_auth("crd_frozen", "1.00", "f1")).json() == {"response_code": "05"}
    casino = _auth("crd_ok", "1.00", "m1", merchant_data={"mcc_code": "7995", "country": "USA"})
    assert receiver.post(casino).json() == {"response_code": "05"}
    assert receiver.post(_auth("crd_ok", "300.00", "big1")).json() == {"response_code": "05"}
    assert receiver.post(_auth("crd_ok", "30.00", "ok1")).json() == {"response_code": "00"}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.balance("acct-2").available == Decimal("470.00")


def test_card_with_metadata_account_is_linked_on_first_authorization(settings, start_receiver):
    ledger = _fund(settings.database_url, "0xabc-account", "20.00")
    receiver = start_receiver(settings, **POLICY)
    body = _auth("crd_new", "5.00", "n1", metadata={"account": "0xabc-account"})
    assert receiver.post(body).json() == {"response_code": "00"}
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.account_for_card("crd_new") == "0xabc-account"
        assert uow.balance("0xabc-account").available == Decimal("15.00")


def test_200_concurrent_authorizations_of_10_against_1000_approve_exactly_100(
    ledger_url, make_settings, start_receiver, topic_reader
):
    from hookstream.kafka import ensure_topics
    from hookstream.schemas.routing import TOPICS

    settings = make_settings(database_url=ledger_url)
    ensure_topics(settings, list(TOPICS))
    ledger = _fund(ledger_url, "acct-c", "1000.00", "crd_c")
    receiver = start_receiver(settings, **POLICY)
    port = int(receiver.url.split(":")[2].split("/")[0])
    bodies = [_auth("crd_c", "10.00", f"conc-{i}") for i in range(200)]
    result = asyncio.run(post_many("127.0.0.1", port, "/webhooks/cryptomate", bodies,
                                   {"X-Webhook-Key": KEY, "Content-Type": "application/json"}, 200))
    assert result.statuses == [200] * 200
    records = topic_reader("cryptomate.cards.transactions", 200, timeout=60)
    codes = [r.headers[h.RESPONSE_CODE] for r in records]

    assert codes.count("00") == 100
    assert codes.count("51") == 100
    with ledger.unit_of_work(read_only=True) as uow:
        balance = uow.balance("acct-c")
        assert (balance.held, balance.available) == (Decimal("1000.00"), Decimal("0.00"))
