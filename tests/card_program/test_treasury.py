"""`hookstream process treasury` on the real broker, SQLite and Postgres, both envelope generations."""

from __future__ import annotations

from decimal import Decimal as D

from card_program.conftest import envelope, wait_until
from hookstream.ledger.treasury import movements


def movement(wallet: str, amount: str, **extra: str) -> dict[str, str]:
    return {"wallet_id": wallet, "amount": amount, "blockchain": "POLYGON", "transaction_hash": "0xabc",
            "to_wallet_address": "0xdef", "created_at": "2025-01-15T12:34:56Z", **extra}


def test_movements_are_recorded_with_their_status_and_failed_or_manual_check_raise_alerts(
        settings, ledger, feed, start_processor):
    treasury = start_processor("treasury", settings)

    feed.send(envelope("B", "treasury", "transfer", "pending", "wf_1", movement("twl_1", "250.123456")))
    feed.send(envelope("B", "treasury", "transfer", "success", "wf_1", movement("twl_1", "250.123456")))
    feed.send(envelope("A", "virtual_wallets", "withdraw", "FAILED", "wf_2", movement("wlt_1", "100.1"),
                       reason="Insufficient gas"))
    feed.send(envelope("B", "treasury", "transfer", "manual_check", "wf_3", movement("twl_1", "9.00")))
    feed.send(envelope("A", "cards", "warranty_withdraw", "MANUAL_CHECK", "0xw4",
                       movement("wlt_holding", "100.00", card_id="crd_1", token_address="0x2791")))
    feed.send(envelope("B", "treasury", "transfer", "success", "wf_1", movement("twl_1", "250.123456")))

    wait_until(lambda: treasury.handled() >= 6, "six treasury records handled")
    assert treasury.outcome("duplicate") == 1
    assert treasury.metric("hookstream_treasury_alerts_total") == 3
    assert treasury.metric("hookstream_treasury_alerts_total", event_type="withdraw", status="failed") == 1
    assert treasury.metric("hookstream_treasury_alerts_total", event_type="transfer", status="manual_check") == 1
    assert treasury.metric("hookstream_treasury_alerts_total", event_type="warranty_withdraw",
                           status="manual_check") == 1
    alerts = treasury.log_events("treasury.alert")
    assert sorted((a["operation_id"], a["status"], a["level"]) for a in alerts) == [
        ("0xw4", "manual_check", "warning"), ("wf_2", "failed", "warning"), ("wf_3", "manual_check", "warning")]

    with ledger.unit_of_work(read_only=True) as uow:
        history = movements(uow, "wf_1")
        flagged = movements(uow, alerts_only=True)
    assert [(m.status, m.amount, m.alert) for m in history] == [
        ("pending", D("250.123456"), False), ("success", D("250.123456"), False)]
    assert {(m.operation_id, m.event_type, m.status, m.reason, m.card_id) for m in flagged} == {
        ("wf_2", "withdraw", "failed", "Insufficient gas", None),
        ("wf_3", "transfer", "manual_check", None, None),
        ("0xw4", "warranty_withdraw", "manual_check", None, "crd_1")}
