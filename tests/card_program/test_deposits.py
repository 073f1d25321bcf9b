"""`hookstream process deposits` end to end (sandbox → receiver → Kafka → processor → API) on SQLite and Postgres."""

from __future__ import annotations

import json
from decimal import Decimal as D

from card_program.conftest import balance, envelope, fund, wait_until
from hookstream.idempotency import idempotency_key
from hookstream.schemas.envelope import parse_envelope
from hookstream.schemas.routing import dedup_key


def test_deposits_credit_the_linked_account_once_and_top_up_cards_show_its_available_balance(
        settings, ledger, start_pipeline, start_processor):
    fund(ledger, "acct-1", "10.00", cards={"crd_topup": "TOP_UP", "crd_webhook": "WEBHOOK"}, wallets=("wlt_1",))
    with ledger.unit_of_work() as uow:  # an open authorization: available < balance
        assert uow.place_hold("acct-1", "crd_webhook", "life_0", D("10.00"), "seed-hold").placed
    sandbox = start_pipeline(settings, generation="B")
    deposits = start_processor("deposits", settings, api_url=sandbox.base)

    first = sandbox.trigger("deposit", product="virtual_wallets", wallet_id="wlt_1", amount="100.00",
                            delivery={"duplicate": 1})["operation_id"]
    # A token amount with more decimals than cents: the ledger gets the net amount cut down to cents.
    sandbox.trigger("deposit", product="virtual_wallets", wallet_id="wlt_1", amount="12.345678",
                    net_amount="12.339999")
    # Below the CARDS notification minimum (10 USD): the platform would not send it, but if it
    # arrives it is money that arrived.
    small = envelope("B", "cards", "deposit", "success", "0xsmall",
                     {"wallet_id": "wlt_1", "amount": "5.00", "transaction_hash": "0xsmall"})
    sandbox.trigger("raw", body=json.loads(small))
    ramp = envelope("B", "virtual_wallets", "ramp_on", "success", "wf_ramp",
                    {"wallet_id": "wlt_1", "amount": "20.00", "source_amount": "20.00", "source_currency": "USD"})
    sandbox.trigger("raw", body=json.loads(ramp))
    sandbox.trigger("deposit", product="virtual_wallets", wallet_id="wlt_nobody", amount="50.00")

    wait_until(lambda: deposits.handled() >= 6, "six deposit records handled")
    assert balance(ledger, "acct-1") == (D("147.33"), D("10.00"), D("137.33"))
    assert deposits.outcome("duplicate") == 1
    assert deposits.metric("hookstream_ledger_unmatched_total", event_type="deposit") == 1
    assert [D(e["amount"]) for e in deposits.log_events("deposits.unmatched")] == [D("50.00")]
    assert [e["credited"] for e in deposits.log_events("deposits.amount_rounded")] == ["12.33"]

    card = wait_until(lambda: (c := sandbox.control("GET", "balances")["cards"]["crd_topup"])
                      and D(str(c["virtual_balance"])) == D("137.33") and c, "TOP_UP virtual balance")
    assert D(str(card["virtual_balance"])) == balance(ledger, "acct-1")[2]
    calls = sandbox.calls("/virtual-balance")
    assert {c["path"].split("/")[3] for c in calls} == {"crd_topup"}, "only TOP_UP cards are overridden"
    # One override per credited deposit, sent in the order decided (the sandbox delivers the four
    # webhooks concurrently, so which deposit came first varies: each shows the balance after it).
    sent = [D(str(c["body"]["virtual_balance"])) for c in calls]
    assert len(sent) == 4 and sent == sorted(sent) and sent[-1] == D("137.33"), sent
    assert all(c["status"] == 200 for c in calls) and len({c["idempotency_key"] for c in calls}) == 4
    first_key = dedup_key(parse_envelope(envelope("B", "virtual_wallets", "deposit", "success", first, {})))
    assert idempotency_key("deposits", first_key, "virtual-balance:crd_topup") in {c["idempotency_key"] for c in calls}
