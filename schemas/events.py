"""Typed `data` payloads of every documented CryptoMate event (platform reference §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from hookstream.schemas.types import Code, Money


class _Data(BaseModel):
    # The platform adds fields without notice: keep them, never refuse a body for them.
    model_config = ConfigDict(extra="allow", frozen=True)


class Fees(_Data):
    atm_fees: Money | None = None
    fx_fees: Money | None = None


class MerchantData(_Data):
    id: str | None = None
    name: str | None = None
    city: str | None = None
    post_code: str | None = None
    state: str | None = None
    country: str | None = None
    mcc_category: str | None = None
    mcc_code: Code | None = None


class DeclineReason(_Data):
    response_code: str | None = None
    description: str | None = None
    code: str | None = None
    simple_reason: str | None = None
    detailed_reason: str | None = None


class Token(_Data):
    address: str | None = None
    name: str | None = None
    symbol: str | None = None


class CardTransaction(_Data):
    """authorization, authorized, declined, cleared, clearing, reversal, refund, visa_direct_deposit."""

    card_id: str
    bill_amount: Money | None = None
    bill_currency_number: Code | None = None
    bill_currency_code: str | None = None
    transaction_amount: Money | None = None
    transaction_currency_number: Code | None = None
    transaction_currency_code: str | None = None
    exchange_rate: Money | None = None
    channel: str | None = None
    created_at: datetime | None = None
    fees: Fees | None = None
    merchant_data: MerchantData | None = None
    decline_reason: DeclineReason | None = None
    metadata: dict[str, Any] | None = None
    signature: str | None = None


class Authorization(CardTransaction):
    """External authorization request: the amount to decide on is required."""

    bill_amount: Money


class ThreeDSChallenge(_Data):
    """notification_3ds_authorization: `code` is echoed to the 3DS respond endpoint."""

    code: str
    card_id: str
    merchant_name: str | None = None
    merchant_country_code: Code | None = None
    transaction_amount: Money | None = None
    transaction_currency: Code | None = None
    transaction_timestamp: datetime | None = None


class Deposit(_Data):
    """deposit (cards, virtual_wallets, treasury): `net_amount` is after fees when present."""

    wallet_id: str
    amount: Money
    net_amount: Money | None = None
    wallet_address: str | None = None
    blockchain: str | None = None
    transaction_hash: str | None = None
    from_wallet_address: str | None = None
    token: Token | None = None
    created_at: datetime | None = None


class RampOn(_Data):
    """ramp_on (virtual_wallets, treasury): fiat converted and credited."""

    wallet_id: str
    amount: Money
    wallet_address: str | None = None
    blockchain: str | None = None
    transaction_hash: str | None = None
    exchange_rate: Money | None = None
    token: Token | None = None
    source_amount: Money | None = None
    source_currency: str | None = None
    source_from: str | None = None
    created_at: datetime | None = None


class Withdraw(_Data):
    """withdraw (virtual_wallets) and transfer (treasury)."""

    wallet_id: str
    amount: Money | None = None
    wallet_address: str | None = None
    blockchain: str | None = None
    transaction_hash: str | None = None
    to_wallet_address: str | None = None
    token: Token | None = None
    created_at: datetime | None = None


class WarrantyWithdraw(_Data):
    """warranty_withdraw (cards): note `token_address` is a flat string here."""

    wallet_id: str
    amount: Money | None = None
    card_id: str | None = None
    wallet_address: str | None = None
    blockchain: str | None = None
    transaction_hash: str | None = None
    to_wallet_address: str | None = None
    token_address: str | None = None
    created_at: datetime | None = None


class VelocityRule(_Data):
    max_authorizations: int | None = None
    time_window_seconds: int | None = None


class CardBlockedByVelocity(_Data):
    """card_blocked_by_velocity: sent once per ACTIVE → BLOCKED transition."""

    card_id: str
    blocked_at: datetime
    company_id: str | None = None
    triggered_rule: VelocityRule | None = None
    last_authorization_id: str | None = None


class ClientStatus(_Data):
    """company_activity/client_status: the whole CompanyClient record."""

    id: str
    company_id: str | None = None
    type: str | None = None
    status: str | None = None
    rejection_code: str | None = None
    rejection_description: str | None = None


class Unrouted(_Data):
    """The data of an event the routing table does not know yet: every field is in `model_extra`.

    It reaches `cryptomate.unrouted`; a processor that subscribes there and declares the event type in
    `event_types` handles it without a change to `schemas/`.
    """
