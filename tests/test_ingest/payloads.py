"""Webhook bodies from the platform reference (§1-§4), in every generation, casing and amount form."""

from __future__ import annotations

import copy
import json
from typing import Any

MERCHANT = {"id": "mch_1", "name": "Acme Coffee", "city": "Miami", "post_code": "33101", "state": "FL",
            "country": "USA", "mcc_category": "Restaurants", "mcc_code": "5812"}


def card_txn(card_id: str, amount: Any) -> dict[str, Any]:
    return {
        "card_id": card_id, "bill_amount": amount, "bill_currency_number": "840", "bill_currency_code": "USD",
        "exchange_rate": "1.0", "fees": {"atm_fees": "0.00", "fx_fees": "0.42"}, "transaction_amount": amount,
        "transaction_currency_number": "840", "transaction_currency_code": "USD", "channel": "POS",
        "created_at": "2025-01-15T12:34:56Z", "merchant_data": dict(MERCHANT), "decline_reason": None,
        "metadata": {"account": "0xabc"},
    }


# (product, event_type, status, operation_id, data, expected topic, expected key)
CATALOG: list[tuple[str, str, str, str, dict[str, Any], str, str]] = [
    ("cards", "authorization", "pending", "life_evt_1", card_txn("crd_1", "42.50"),
     "cryptomate.cards.transactions", "crd_1"),
    ("cards", "authorized", "success", "txn_1", card_txn("crd_1", "42.50"), "cryptomate.cards.transactions", "crd_1"),
    ("cards", "declined", "success", "life_evt_2", {**card_txn("crd_2", "42.50"), "decline_reason": {
        "response_code": "05", "description": "Do not honor", "code": "INSUFFICIENT_FUNDS",
        "simple_reason": "Insufficient funds", "detailed_reason": "Wallet balance is lower"}},
     "cryptomate.cards.transactions", "crd_2"),
    ("cards", "cleared", "success", "txn_1", card_txn("crd_1", "42.50"), "cryptomate.cards.transactions", "crd_1"),
    ("cards", "clearing", "pending", "op_c1", card_txn("crd_3", 45.23), "cryptomate.cards.transactions", "crd_3"),
    ("cards", "clearing", "failed", "op_c2", card_txn("crd_3", 45.23), "cryptomate.cards.transactions", "crd_3"),
    ("cards", "reversal", "success", "op_r", card_txn("crd_4", "10.00"), "cryptomate.cards.transactions", "crd_4"),
    ("cards", "refund", "success", "op_rf", card_txn("crd_4", "5.00"), "cryptomate.cards.transactions", "crd_4"),
    ("cards", "visa_direct_deposit", "success", "op_vd", card_txn("crd_5", "20.00"),
     "cryptomate.cards.transactions", "crd_5"),
    ("cards", "notification_3ds_authorization", "pending", "254725c4-70d6-4527-8f5a-fbb324ef77d9", {
        "merchant_name": "Sephora Digital", "merchant_country_code": "840", "transaction_amount": "100.2",
        "transaction_currency": "840", "transaction_timestamp": "2023-07-26T09:13:01.748Z",
        "card_id": "crd_6", "code": "254725c4-70d6-4527-8f5a-fbb324ef77d9"}, "cryptomate.cards.3ds", "crd_6"),
    ("cards", "deposit", "success", "0xtxhash1", {
        "wallet_id": "wlt_abc", "wallet_address": "0xabc", "blockchain": "polygon",
        "transaction_hash": "0xtxhash1", "from_wallet_address": "0xdef", "amount": "500.00",
        "net_amount": "498.50", "token": {"address": "0x2791"}}, "cryptomate.deposits", "wlt_abc"),
    ("cards", "warranty_withdraw", "success", "0xtxhash2", {
        "wallet_id": "wlt_holding", "wallet_address": "0xabc", "blockchain": "polygon", "card_id": "crd_1",
        "transaction_hash": "0xtxhash2", "to_wallet_address": "0xdef", "amount": "100.00",
        "token_address": "0x2791", "created_at": "2025-01-15T12:34:56Z"}, "cryptomate.treasury", "wlt_holding"),
    ("cards", "card_blocked_by_velocity", "success", "crd_7", {
        "card_id": "crd_7", "company_id": "5b0f0c1e-0000-4000-8000-000000000001",
        "blocked_at": "2026-04-23T10:00:00Z", "triggered_rule": {"max_authorizations": 3, "time_window_seconds": 60},
        "last_authorization_id": "life_evt_9"}, "cryptomate.cards.status", "crd_7"),
    ("virtual_wallets", "deposit", "success", "0x1a2b", {
        "wallet_id": "wlt_abc123", "wallet_address": "0xabc", "blockchain": "polygon",
        "transaction_hash": "0x1a2b", "from_wallet_address": "0xdef", "amount": "125.50",
        "token": {"address": "0x2791"}}, "cryptomate.deposits", "wlt_abc123"),
    ("virtual_wallets", "withdraw", "failed", "wf_abc123", {
        "wallet_id": "wlt_w", "wallet_address": "0xabc", "transaction_hash": "internal", "blockchain": "POLYGON",
        "to_wallet_address": "0xdef", "amount": "100.1", "token": {"name": "USDC", "symbol": "USDC", "address": "0x2"},
        "created_at": "2024-06-28T10:20:56.654-03:00"}, "cryptomate.treasury", "wlt_w"),
    ("virtual_wallets", "ramp_on", "success", "wf_ramp", {
        "wallet_id": "wlt_r", "wallet_address": "0xabc", "blockchain": "polygon", "transaction_hash": "0xt",
        "amount": "1000.00", "exchange_rate": "1.0", "token": {"address": "0x2791", "symbol": "USDC"},
        "source_amount": "1000.00", "source_currency": "USD", "source_from": "Jane Doe",
        "created_at": "2025-01-15T12:34:56Z"}, "cryptomate.deposits", "wlt_r"),
    ("treasury", "transfer", "manual_check", "wf_t1", {
        "wallet_id": "wlt_t", "wallet_address": "0xabc", "blockchain": "polygon", "transaction_hash": "0xt",
        "to_wallet_address": "0xdef", "amount": "50.00", "token": {"address": "0x2791"},
        "created_at": "2025-01-15T12:34:56Z"}, "cryptomate.treasury", "wlt_t"),
    ("treasury", "deposit", "success", "0x12345", {
        "wallet_id": "ivZPARvNBLOSZx69q4DCBBGUfVhCMsLw", "wallet_address": "0xff89", "transaction_hash": "0xa348",
        "amount": 10.5, "net_amount": 10.25, "token": {"name": "USD Coin", "symbol": "USDC", "address": "0x2"},
        "created_at": "2025-01-15T12:34:56Z"}, "cryptomate.deposits", "ivZPARvNBLOSZx69q4DCBBGUfVhCMsLw"),
    ("company_activity", "client_status", "failed", "cli_abc123", {
        "id": "cli_abc123", "company_id": "comp_1", "type": "individual", "email": "jane@example.test",
        "first_name": "Jane", "last_name": "Doe", "status": "rejected", "rejection_code": "REJECTED_BY_PROVIDER"},
     "cryptomate.company", "cli_abc123"),
]


def numeric_amounts(value: Any) -> Any:
    """The same payload with every amount-like string turned into a JSON number (as [OBS] saw)."""
    if isinstance(value, dict):
        return {k: (float(v) if k in AMOUNT_FIELDS and isinstance(v, str) else numeric_amounts(v))
                for k, v in value.items()}
    return value


AMOUNT_FIELDS = {"bill_amount", "transaction_amount", "amount", "net_amount", "atm_fees", "fx_fees",
                 "source_amount"}


def envelope(product: str, event_type: str, status: str, op: str, data: dict[str, Any], *,
             generation: str = "B", casing: str = "lower", amounts: str = "string") -> bytes:
    """A body as the platform would send it, serialised the way a Java service might."""
    case = str.upper if casing == "upper" else str.lower
    payload = copy.deepcopy(data) if amounts == "string" else numeric_amounts(data)
    if generation == "A":
        doc = {"operation": case(product), "sub_operation": case(event_type), "operation_id": op,
               "status": case(status), "data": payload}
    else:
        doc = {"product": case(product), "event_type": case(event_type), "operation_id": op,
               "status": case(status), "data": payload}
    return json.dumps(doc, indent=1 if casing == "upper" else None).encode()


VARIANTS = [
    {"generation": "B", "casing": "lower", "amounts": "string"},
    {"generation": "B", "casing": "upper", "amounts": "number"},
    {"generation": "A", "casing": "upper", "amounts": "string"},
    {"generation": "A", "casing": "lower", "amounts": "number"},
]
