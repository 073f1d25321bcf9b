"""The chaos stream's expected books, computed in plain Python from what was sent and what was answered."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal("0.00")


@dataclass
class Purchase:
    """One authorization on a WEBHOOK card and what the platform did with it afterwards."""

    txn_id: str  # life_evt_…: the hold's operation id
    card_id: str
    account: str
    amount: Decimal
    platform_code: str | None  # what the platform decided (the sandbox's transaction)
    receiver_code: str | None = None  # what the receiver answered on the first delivery (None: no answer)
    then: str = "open"  # open | cleared | reversed
    refund: Decimal = ZERO


@dataclass
class Model:
    """What the ledger must hold at the end, fed with the stream as the test drove it."""

    deposits: dict[str, list[Decimal]] = field(default_factory=lambda: defaultdict(list))  # account → net amounts
    purchases: list[Purchase] = field(default_factory=list)

    def deposit(self, account: str, net: Decimal) -> None:
        self.deposits[account].append(net)

    def hold_allowed(self, p: Purchase, fell_back: bool = False) -> frozenset[str | None]:
        """The hold row's possible status at the end (None: no hold row at all).

        A hold exists iff the receiver answered "00"; the platform's decision then says what happens to it:
        approved → captured on clearing, released on reversal, held otherwise; declined although the receiver
        approved (its answer came after the platform's deadline) → released by the `declined` event. When the
        receiver's answer never reached the platform (timeout), either no hold or a released one. When the
        receiver answered with the fallback code (`fell_back`: its budget ran out, the ledger's record says
        reason timeout/error), the decision still under way may have placed a hold the compensation then
        released: no hold or a released one, never a held or captured one.
        """
        if p.platform_code == "00":
            return frozenset({{"cleared": "captured", "reversed": "released", "open": "held"}[p.then]})
        if p.receiver_code == "00":
            return frozenset({"released"})
        if p.receiver_code is None or fell_back:
            return frozenset({None, "released"})
        return frozenset({None})

    def books(self) -> dict[str, tuple[Decimal, Decimal]]:
        """account → (balance, held); a released or absent hold moves nothing."""
        balance: dict[str, Decimal] = defaultdict(lambda: ZERO)
        held: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for account, amounts in self.deposits.items():
            balance[account] += sum(amounts, ZERO)
        for p in self.purchases:
            balance[p.account] += ZERO
            if p.platform_code != "00":
                continue
            if p.then == "cleared":
                balance[p.account] += p.refund - p.amount
            elif p.then == "open":
                held[p.account] += p.amount
        return {a: (balance[a], held[a]) for a in set(balance) | set(held)}

    def credits(self) -> dict[str, Counter[str]]:
        """account → postings that do not come from a hold: one credit per deposit, one refund per refund."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for account, amounts in self.deposits.items():
            out[account]["credit"] += len(amounts)
        for p in self.purchases:
            if p.refund:
                out[p.account]["refund"] += 1
        return out
