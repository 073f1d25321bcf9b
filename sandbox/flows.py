"""What happens on the platform when something occurs: card transactions, 3DS, deposits, transfers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hookstream.logs import get_logger
from hookstream.sandbox.config import SandboxConfig
from hookstream.sandbox.envelope import build_envelope
from hookstream.sandbox.sender import Policy, WebhookSender
from hookstream.sandbox.state import Card, Challenge, State, Transaction

log = get_logger("hookstream.sandbox.flows")

DEFAULT_MERCHANT: dict[str, Any] = {
    "id": "420429000207212", "name": "Acme Coffee", "city": "Miami", "post_code": "33101", "state": "FL",
    "country": "USA", "mcc_category": "Restaurants", "mcc_code": "5812",
}
DAY = 86400.0
LIMIT_WINDOWS = (("daily_limit", DAY), ("weekly_limit", 7 * DAY), ("monthly_limit", 30 * DAY))


def decline(response_code: str, description: str, code: str, simple: str, detailed: str) -> dict[str, str]:
    return {"response_code": response_code, "description": description, "code": code,
            "simple_reason": simple, "detailed_reason": detailed}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Platform:
    """The emulated platform's behaviour: state changes plus the webhooks they cause."""

    def __init__(self, state: State, config: SandboxConfig, sender: WebhookSender,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state, self.config, self.sender, self.clock = state, config, sender, clock

    # --- emission --------------------------------------------------------------------------------------
    def envelope(self, product: str, event_type: str, status: str, operation_id: str, data: dict[str, Any],
                 **top: Any) -> dict[str, Any]:
        return build_envelope(self.config, product, event_type, status, operation_id, data, **top)

    def emit(self, product: str, event_type: str, status: str, operation_id: str, data: dict[str, Any], *,
             policy: Policy = "regular", delivery: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
        body = self.envelope(product, event_type, status, operation_id, data, **top)
        opts = delivery or {}
        self.sender.submit(body, policy, duplicate=opts.get("duplicate"), delay_s=opts.get("delay_s"))
        return body

    # --- card transactions ---------------------------------------------------------------------------
    def card_data(self, card: Card, txn: Transaction, amount: Decimal | None = None) -> dict[str, Any]:
        """The common card-transaction `data` (platform §2.1), field names exactly as documented."""
        value = txn.bill_amount if amount is None else amount
        data: dict[str, Any] = {
            "card_id": card.id, "bill_amount": value, "bill_currency_number": "840", "bill_currency_code": "USD",
            "exchange_rate": Decimal("1.0"),
            "fees": {"atm_fees": Decimal("0.00"), "fx_fees": Decimal("0.00")},
            "transaction_amount": value, "transaction_currency_number": "840", "transaction_currency_code": "USD",
            "channel": txn.channel, "created_at": txn.created_at, "merchant_data": dict(txn.merchant),
            "decline_reason": txn.decline_reason, "metadata": dict(card.metadata),
        }
        if card.approval_method == "DEFI":
            data["signature"] = "0x"
        return data

    async def authorize(self, card: Card, amount: Decimal, *, merchant: dict[str, Any] | None = None,
                        channel: str = "POS", delivery: dict[str, Any] | None = None) -> Transaction:
        """A purchase on `card`: platform checks, then the card's approval method decides (§3)."""
        txn = Transaction(id=f"life_evt_{uuid.uuid4().hex[:16]}", card_id=card.id, bill_amount=amount,
                          merchant={**DEFAULT_MERCHANT, **(merchant or {})}, channel=channel,
                          created_at=now_iso(), at=self.clock())
        self.state.transactions.append(txn)
        reason = self._refusal(card, txn)
        if reason is None:
            if card.approval_method == "TOP_UP":
                reason = self._top_up(card, txn)
            elif card.approval_method in ("WEBHOOK", "DEFI"):
                reason = await self._ask_webhook(card, txn, delivery)
        if reason is None:
            txn.status, txn.response_code = "approved", txn.response_code or "00"
            self.emit("cards", "authorized", "success", f"txn_{txn.id.removeprefix('life_evt_')}",
                      self.card_data(card, txn))
        else:
            txn.status, txn.decline_reason = "declined", reason
            txn.response_code = reason["response_code"]
            self.emit("cards", "declined", "success", txn.id, self.card_data(card, txn))
        log.info("sandbox.authorization", card_id=card.id, txn=txn.id, status=txn.status,
                 response_code=txn.response_code)
        return txn

    def _refusal(self, card: Card, txn: Transaction) -> dict[str, str] | None:
        """Checks the platform runs before any approval method: card status, limits, velocity, holding."""
        if card.status != "ACTIVE":
            return decline("62", "Restricted card", f"CARD_{card.status}", f"Card is {card.status.lower()}",
                           f"The card status is {card.status}")
        approved = [t for t in self.state.transactions
                    if t.card_id == card.id and t.status in ("approved", "cleared")]
        for name, window in LIMIT_WINDOWS:
            limit = getattr(card, name)
            spent = sum((t.bill_amount for t in approved if txn.at - t.at < window), Decimal("0"))
            if limit is not None and spent + txn.bill_amount > limit:
                return decline("61", "Exceeds amount limit", "CARD_LIMIT_EXCEEDED", "Card limit exceeded",
                               f"The card {name} of {limit} USD would be exceeded")
        since = self.state.velocity_reset_at.get(card.id, float("-inf"))  # unblock resets the counter
        for rule in self.state.velocity_rules:
            recent = [t for t in approved if txn.at - t.at < rule["time_window_seconds"] and t.at >= since]
            if len(recent) >= rule["max_authorizations"]:
                self.block_by_velocity(card, rule, last_authorization_id=txn.id)
                return decline("05", "Do not honor", "VELOCITY_LIMIT_EXCEEDED", "Velocity limit exceeded",
                               f"More than {rule['max_authorizations']} authorizations in "
                               f"{rule['time_window_seconds']} s")
        warranty = self.state.card_holding.get("warranty_balance")
        if warranty is not None and txn.bill_amount > warranty:
            return decline("51", "Insufficient funds", "INSUFFICIENT_HOLDING_BALANCE", "Insufficient funds",
                           "Holding wallet balance is lower than transaction amount")
        return None

    def _top_up(self, card: Card, txn: Transaction) -> dict[str, str] | None:
        # TOP_UP cards are approved against their own balance, without asking the customer.
        if card.virtual_balance < txn.bill_amount:
            return decline("51", "Insufficient funds", "INSUFFICIENT_FUNDS", "Insufficient funds",
                           "Wallet balance is lower than transaction amount")
        card.virtual_balance -= txn.bill_amount
        return None

    async def _ask_webhook(self, card: Card, txn: Transaction, delivery: dict[str, Any] | None) -> dict[str, str] | None:
        body = self.envelope("cards", "authorization", "pending", txn.id, self.card_data(card, txn))
        opts = delivery or {}
        answer = await self.sender.authorize(body, duplicate=opts.get("duplicate"), delay_s=opts.get("delay_s"))
        if answer.approved:
            txn.response_code = answer.response_code
            return None
        if answer.response_code is None:
            # No usable answer inside the deadline: "Timeout = decline" (cards-configuration).
            return decline("05", "Do not honor", "WEBHOOK_TIMEOUT" if answer.outcome == "timeout" else "WEBHOOK_ERROR",
                           "Authorization not answered", f"Authorization webhook outcome: {answer.outcome}")
        return decline(answer.response_code, "Declined by issuer", "DECLINED_BY_WEBHOOK", "Declined",
                       f"The authorization webhook answered response_code {answer.response_code}")

    def clear(self, card: Card) -> Transaction | None:
        txn = self.state.last_transaction(card.id, {"approved"})
        if txn is None:
            return None
        txn.status = "cleared"
        self.emit("cards", "cleared", "success", txn.id, self.card_data(card, txn))
        return txn

    def refund(self, card: Card, amount: Decimal) -> Transaction | None:
        txn = self.state.last_transaction(card.id, {"cleared"})
        if txn is None:
            return None
        txn.status = "refunded"
        if card.approval_method == "TOP_UP":
            card.virtual_balance += amount
        self.emit("cards", "refund", "success", f"rfd_{txn.id.removeprefix('life_evt_')}",
                  self.card_data(card, txn, amount))
        return txn

    def reverse(self, card: Card, amount: Decimal) -> Transaction | None:
        txn = self.state.last_transaction(card.id, {"approved"})
        if txn is None:
            return None
        txn.status = "reversed"
        if card.approval_method == "TOP_UP":
            card.virtual_balance += amount
        self.emit("cards", "reversal", "success", txn.id, self.card_data(card, txn, amount))
        return txn

    def block_by_velocity(self, card: Card, rule: dict[str, int], *, last_authorization_id: str | None = None,
                          delivery: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """ACTIVE → BLOCKED; `card_blocked_by_velocity` is sent once per transition (§2.2)."""
        if card.status == "BLOCKED":
            return None
        card.status = "BLOCKED"
        data = {"card_id": card.id, "company_id": self.state.company.id, "blocked_at": now_iso(),
                "triggered_rule": {"max_authorizations": rule["max_authorizations"],
                                   "time_window_seconds": rule["time_window_seconds"]},
                "last_authorization_id": last_authorization_id}
        return self.emit("cards", "card_blocked_by_velocity", "success", card.id, data,
                         company_id=self.state.company.id, delivery=delivery)

    # --- 3DS ---------------------------------------------------------------------------------------------
    def challenge_3ds(self, card: Card, amount: Decimal, *, merchant_name: str = "Acme Coffee",
                      merchant_country_code: str = "USA", currency: str = "USD",
                      delivery: dict[str, Any] | None = None) -> Challenge:
        code = str(uuid.uuid4())  # the examples show data.code == operation_id
        data = {"code": code, "card_id": card.id, "merchant_name": merchant_name,
                "merchant_country_code": merchant_country_code, "transaction_amount": amount,
                "transaction_currency": currency, "transaction_timestamp": now_iso()}
        challenge = Challenge(code=code, card_id=card.id, at=self.clock(), data=data)
        self.state.challenges[code] = challenge
        # Informational, never retried (§4.2): the decision comes back through the respond endpoint.
        self.emit("cards", "notification_3ds_authorization", "pending", code, data, policy="no_retry",
                  delivery=delivery)
        return challenge
