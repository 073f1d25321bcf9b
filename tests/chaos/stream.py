"""The chaos run's traffic: a steady mixed stream driven through the sandbox, recorded for the model."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from chaos.model import Model, Purchase

SIMULATE_KEY = "sandbox-key-level-2"  # the sandbox's built-in level-2 key: simulate endpoints
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Cast:
    """Who exists in the run: accounts with a WEBHOOK card (3DS forwarded) and a wallet each, a TOP_UP card on
    its own account, velocity cards, a treasury wallet."""

    accounts: int
    velocity_cards: int

    def account(self, i: int) -> str:
        return f"acct-chaos-{i}"

    def card(self, i: int) -> str:
        return f"crd_chaos_{i}"

    def wallet(self, i: int) -> str:
        return f"wlt_chaos_{i}"

    topup_account = "acct-chaos-topup"
    topup_card = "crd_chaos_topup"
    topup_wallet = "wlt_chaos_topup"
    treasury_wallet = "twl_chaos"

    def velocity_card(self, i: int) -> str:
        return f"crd_chaos_velocity_{i}"

    def seed(self) -> dict[str, Any]:
        cards = [{"id": self.card(i), "approval_method": "WEBHOOK", "forwarded_3ds_type": "FORWARDED",
                  "last4": f"{5000 + i}", "metadata": {"account": self.account(i)}} for i in range(self.accounts)]
        cards.append({"id": self.topup_card, "approval_method": "TOP_UP", "virtual_balance": "0", "last4": "5999"})
        cards += [{"id": self.velocity_card(i), "approval_method": "WEBHOOK", "last4": f"{6000 + i}"}
                  for i in range(self.velocity_cards)]
        wallets = [{"id": w, "alias": w, "blockchain": "POLYGON", "wallet_address": "0x" + f"{n:040x}",
                    "balances": []} for n, w in enumerate([*map(self.wallet, range(self.accounts)), self.topup_wallet], 1)]
        treasury = [{"account_id": "acc_chaos", "id": self.treasury_wallet, "blockchain": "POLYGON",
                     "wallet_address": "0x" + "7" * 40, "balances": []}]
        return {"cards": cards, "virtual_wallets": wallets, "treasury_wallets": treasury}

    def links(self) -> list[list[str]]:
        out: list[list[str]] = []
        for i in range(self.accounts):
            out += [["--card", self.card(i), "--account", self.account(i), "--approval-method", "WEBHOOK"],
                    ["--wallet", self.wallet(i), "--account", self.account(i)]]
        out += [["--card", self.topup_card, "--account", self.topup_account, "--approval-method", "TOP_UP"],
                ["--wallet", self.topup_wallet, "--account", self.topup_account]]
        out += [["--card", self.velocity_card(i), "--account", "acct-chaos-velocity", "--approval-method", "WEBHOOK"]
                for i in range(self.velocity_cards)]
        return out


@dataclass
class Sent:
    """What the stream asked the platform to do, for the model and the final counts."""

    model: Model = field(default_factory=Model)
    challenges: list[str] = field(default_factory=list)  # 3DS codes
    transfers: list[tuple[str, str]] = field(default_factory=list)  # (operation_id, status)
    velocity_blocks: list[str] = field(default_factory=list)  # card ids
    topup: list[Decimal] = field(default_factory=list)
    duplicated: int = 0  # triggers asked to deliver one extra copy
    events: int = 0  # webhooks the platform emitted (first copies)
    errors: list[str] = field(default_factory=list)


class Stream:
    """One thread per WEBHOOK card, together near `rate` events/s until `total`. `duplicate_share` of the
    triggers that can ask for it get one extra delivery: ~5 % of all deliveries (clearing, reversal and
    refund go through the simulate endpoints, which cannot)."""

    def __init__(self, sandbox: str, cast: Cast, total: int, rate: float, duplicate_share: float = 0.11,
                 seed: int = 15) -> None:
        self.cast, self.total, self.rate, self.dup = cast, total, rate, duplicate_share
        self.sent = Sent()
        self.http = httpx.Client(base_url=sandbox, timeout=30.0)
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._next_at = time.monotonic()
        self._gates: list[tuple[int, threading.Event]] = []  # (event count, may pass) for fault points
        self._threads: list[threading.Thread] = []

    # --- control -----------------------------------------------------------------------------------
    def gate(self, at_events: int) -> threading.Event:
        """The stream stops growing past `at_events` until the returned event is set."""
        event = threading.Event()
        self._gates.append((at_events, event))
        return event

    def reached(self, count: int) -> bool:
        return self.sent.events >= count

    def start(self) -> None:
        for i in range(self.cast.accounts):
            # every account starts funded through the stream itself: a deposit like any other; purchases
            # are large enough beside the deposits that some are declined "51" (and their redeliveries too)
            self._deposit(i, Decimal("60.00"))
        for i in range(self.cast.accounts):
            t = threading.Thread(target=self._worker, args=(i,), name=f"chaos-stream-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.http.close()

    # --- pacing ------------------------------------------------------------------------------------
    def _pace(self, events: int) -> bool:
        """Wait for this action's turn; False when the stream is complete."""
        while True:
            with self._lock:
                if self.sent.events >= self.total:
                    return False
                blocked = next((e for at, e in self._gates if self.sent.events >= at and not e.is_set()), None)
                if blocked is None:
                    now = time.monotonic()
                    wait = self._next_at - now
                    self._next_at = max(now, self._next_at) + events / self.rate
                    self.sent.events += events
                    break
            blocked.wait(1.0)
        if wait > 0:
            time.sleep(wait)
        return True

    def _delivery(self) -> dict[str, Any] | None:
        with self._lock:
            if self.rng.random() < self.dup:
                self.sent.duplicated += 1
                return {"duplicate": 1}
        return None

    # --- actions -----------------------------------------------------------------------------------
    def _worker(self, i: int) -> None:
        rng = random.Random(1000 + i)
        actions: list[tuple[Callable[[int, random.Random], bool], int]] = [
            (self._purchase, 40), (self._some_deposit, 15), (self._three_ds, 15), (self._transfer, 10),
            (self._topup, 8), (self._velocity, 2)]
        funcs, weights = zip(*actions)
        while True:
            action = rng.choices(funcs, weights)[0]
            try:
                if not action(i, rng):
                    if self.sent.events >= self.total:
                        return
            except httpx.HTTPError as exc:
                self.sent.errors.append(f"{action.__name__}: {type(exc).__name__}")

    def _post(self, path: str, body: dict[str, Any], simulate: bool = False) -> httpx.Response:
        headers = {"x-api-key": SIMULATE_KEY} if simulate else {}
        reply = self.http.post(path, json=body, headers=headers)
        if reply.status_code >= 300:
            self.sent.errors.append(f"{path} answered {reply.status_code}: {reply.text[:200]}")
        return reply

    def _purchase(self, i: int, rng: random.Random) -> bool:
        if not self._pace(2):  # authorization + authorized/declined
            return False
        amount = Decimal(rng.randint(100, 12000)) / 100
        card, account = self.cast.card(i), self.cast.account(i)
        txn = self._post("/_sandbox/trigger/authorization",
                         {"card_id": card, "bill_amount": str(amount), "delivery": self._delivery()}).json()
        purchase = Purchase(txn["id"], card, account, amount, txn["response_code"])
        with self._lock:
            self.sent.model.purchases.append(purchase)
        if txn["status"] != "approved":
            return True
        then = rng.choices(["cleared", "reversed", "open"], [55, 30, 15])[0]
        if then == "open" or not self._pace(1):
            return True
        path = "clearing" if then == "cleared" else "reversal"
        if self._post(f"/cards/webhook/simulate/{path}", {"card_id": card, "bill_amount": float(amount)},
                      simulate=True).status_code == 201:
            purchase.then = then
        if then == "cleared" and rng.random() < 0.3 and self._pace(1):
            refund = (amount / 2).quantize(CENT)
            if self._post("/cards/webhook/simulate/refund", {"card_id": card, "bill_amount": float(refund)},
                          simulate=True).status_code == 201:
                purchase.refund = refund
        return True

    def _deposit(self, i: int, amount: Decimal) -> None:
        wallet, account = self.cast.wallet(i), self.cast.account(i)
        reply = self._post("/_sandbox/trigger/deposit", {"product": "virtual_wallets", "wallet_id": wallet,
                                                         "amount": str(amount), "net_amount": str(amount),
                                                         "delivery": self._delivery()})
        if reply.status_code == 201 and reply.json().get("sent"):
            with self._lock:
                self.sent.model.deposit(account, amount)

    def _some_deposit(self, i: int, rng: random.Random) -> bool:
        if not self._pace(1):
            return False
        self._deposit(i, Decimal(rng.randint(100, 10000)) / 100)
        return True

    def _topup(self, _i: int, rng: random.Random) -> bool:
        if not self._pace(1):
            return False
        amount = Decimal(rng.randint(100, 5000)) / 100
        reply = self._post("/_sandbox/trigger/deposit", {
            "product": "virtual_wallets", "wallet_id": self.cast.topup_wallet, "amount": str(amount),
            "net_amount": str(amount), "delivery": self._delivery()})
        if reply.status_code == 201 and reply.json().get("sent"):
            with self._lock:
                self.sent.model.deposit(self.cast.topup_account, amount)
                self.sent.topup.append(amount)
        return True

    def _three_ds(self, i: int, rng: random.Random) -> bool:
        if not self._pace(1):
            return False
        reply = self._post("/_sandbox/trigger/3ds", {"card_id": self.cast.card(i),
                                                     "transaction_amount": str(Decimal(rng.randint(100, 9000)) / 100),
                                                     "delivery": self._delivery()})
        if reply.status_code == 201:
            with self._lock:
                self.sent.challenges.append(reply.json()["code"])
        return True

    def _transfer(self, _i: int, rng: random.Random) -> bool:
        if not self._pace(2):  # pending, then success / failed / manual_check
            return False
        op = f"wf_chaos_{rng.getrandbits(48):012x}"
        final = rng.choices(["success", "failed", "manual_check"], [80, 15, 5])[0]
        for status in ("pending", final):
            body = {"wallet_id": self.cast.treasury_wallet, "operation_id": op, "status": status,
                    "amount": str(Decimal(rng.randint(100, 100000)) / 100), "delivery": self._delivery()}
            if self._post("/_sandbox/trigger/transfer", body).status_code == 201:
                with self._lock:
                    self.sent.transfers.append((op, status))
        return True

    def _velocity(self, _i: int, _rng: random.Random) -> bool:
        with self._lock:
            n = len(self.sent.velocity_blocks)
            if n >= self.cast.velocity_cards:
                return True
            card = self.cast.velocity_card(n)
            self.sent.velocity_blocks.append(card)
        if not self._pace(1):
            with self._lock:
                self.sent.velocity_blocks.remove(card)
            return False
        self._post("/_sandbox/trigger/velocity_block", {"card_id": card, "max_authorizations": 3,
                                                         "time_window_seconds": 60, "delivery": self._delivery()})
        return True
