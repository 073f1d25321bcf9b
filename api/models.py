"""Typed request results of the CryptoMate API (platform reference §5), money as Decimal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from hookstream.schemas.types import Money


class _Model(BaseModel):
    # The platform adds response fields without notice: keep them, never fail on them.
    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True, slots=True)
class Pending:
    """302 with a `WARNING` body: the platform accepted the request but its outcome is not known yet.

    Never a redirect. Ask again later (same Idempotency-Key) or wait for the webhook.
    """

    message: str
    code: str = "WARNING"
    endpoint: str = ""


class OtpPhoneNumber(_Model):
    dial_code: Any = None
    phone_number: str | None = None


class CardMeta(_Model):
    email: str | None = None
    otp_phone_number: OtpPhoneNumber | None = None


class Card(_Model):
    """GET /cards/virtual-cards/{cardId}."""

    id: str
    card_holder_name: str | None = None
    type: str | None = None
    last4: str | None = None
    status: str | None = None
    approval_method: str | None = None
    daily_limit: Money | None = None
    weekly_limit: Money | None = None
    monthly_limit: Money | None = None
    forwarded_3ds_type: str | None = None
    meta: CardMeta | None = None


class CardVirtualBalances(_Model):
    """GET /cards/virtual-cards/{cardId}/virtual-balances."""

    available_credit: Money


class ThreeDSResponse(_Model):
    """POST /cards/virtual-cards/{cardId}/3ds-authorization echoes `{code, approve}`."""

    code: str
    approve: bool


class UnblockResult(_Model):
    blocked: bool


class TokenBalance(_Model):
    """One entry of a wallet balance list."""

    name: str | None = None
    symbol: str | None = None
    balance: Money
    token_address: str | None = None


class VirtualWallet(_Model):
    id: str
    alias: str | None = None
    client_id: str | None = None
    wallet_address: str | None = None
    blockchain: str | None = None
    enabled: bool | None = None


class HoldingWallet(_Model):
    id: str
    alias: str | None = None
    wallet_address: str | None = None
    blockchain: str | None = None


class CardHoldingBalance(_Model):
    """GET /cards/holding/balance: the warranty balance that backs card spending."""

    warranty_balance: Money
    blockchain: str | None = None
    deposit_address: str | None = None
    deposit_tokens: dict[str, str] | None = None


class TransferResult(_Model):
    """Treasury transfer / wallet withdraw: status PENDING | SUCCESS | FAILED | MANUAL_CHECK | COMPLETED."""

    transaction_hash: str | None = None
    status: str
