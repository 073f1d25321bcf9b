"""Money: credits, holds, captures, releases and refunds move balance/held/available exactly once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hookstream.ledger import Balance, InvalidAmount, Ledger, UnknownAccount

D = Decimal


def balance(ledger: Ledger, account: str = "acct") -> Balance:
    with ledger.unit_of_work(read_only=True) as uow:
        b = uow.balance(account)
        assert uow.recomputed_balance(account) == b  # running totals agree with the postings
        return b


def test_card_lifecycle_math_hold_capture_at_a_different_amount_release_refund(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        hold = uow.place_hold("acct", "card-1", "op-1", D("42.50"), "auth-op-1")
        assert (hold.placed, hold.reason, hold.available) == (True, "ok", D("957.50"))
        assert uow.place_hold("acct", "card-1", "op-2", D("100.00"), "auth-op-2").placed
    assert balance(funded) == Balance(D("1000.00"), D("142.50"), D("857.50"))

    with funded.unit_of_work() as uow:  # cleared with a tip: the final amount exceeds the hold
        captured = uow.capture_hold("card-1", "op-1", D("45.23"), "clear-op-1")
    assert (captured.reason, captured.amount, captured.hold_amount) == ("captured", D("45.23"), D("42.50"))
    assert balance(funded) == Balance(D("954.77"), D("100.00"), D("854.77"))

    with funded.unit_of_work() as uow:  # reversal of the second authorization
        released = uow.release_hold("card-1", "op-2", "reversal-op-2")
        assert uow.hold_status("card-1", "op-2") == "released"
    assert (released.applied, released.reason, released.amount) == (True, "released", D("100.00"))
    assert balance(funded) == Balance(D("954.77"), D("0.00"), D("954.77"))

    with funded.unit_of_work() as uow:
        refund = uow.credit("acct", D("5.23"), "refund-op-1", kind="refund", memo="merchant refund")
    assert refund.posted
    assert balance(funded) == Balance(D("960.00"), D("0.00"), D("960.00"))

    with funded.unit_of_work(read_only=True) as uow:
        lines = uow.statement("acct")
    assert [(p.kind, p.amount) for p in lines] == [
        ("credit", D("1000.00")), ("hold", D("42.50")), ("hold", D("100.00")), ("capture", D("45.23")),
        ("release", D("100.00")), ("refund", D("5.23"))]
    assert sum(p.balance_effect for p in lines) == D("960.00")
    assert all(isinstance(p.amount, Decimal) for p in lines)


def test_capture_below_the_hold_frees_the_whole_hold(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        uow.place_hold("acct", "card-1", "op-1", D("80.00"), "auth-op-1")
        uow.capture_hold("card-1", "op-1", D("79.99"), "clear-op-1")
    assert balance(funded) == Balance(D("920.01"), D("0.00"), D("920.01"))


def test_hold_beyond_available_is_declined_and_changes_nothing(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        assert uow.place_hold("acct", "card-1", "op-1", D("999.99"), "auth-op-1").placed
        declined = uow.place_hold("acct", "card-1", "op-2", D("0.02"), "auth-op-2")
        exact = uow.place_hold("acct", "card-1", "op-3", D("0.01"), "auth-op-3")
    assert (declined.placed, declined.reason, declined.available) == (False, "insufficient_funds", D("0.01"))
    assert (exact.placed, exact.available) == (True, D("0.00"))
    assert balance(funded) == Balance(D("1000.00"), D("1000.00"), D("0.00"))


def test_hold_on_unknown_account_is_declined_not_raised(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        result = uow.place_hold("ghost", "card-x", "op-1", D("1.00"), "auth-op-1")
    assert (result.placed, result.reason) == (False, "unknown_account")


def test_every_effect_posts_once_per_dedup_key(funded: Ledger) -> None:
    for _delivery in range(2):
        with funded.unit_of_work() as uow:
            uow.credit("acct", D("10.00"), "deposit-2")
            uow.credit("acct", D("3.00"), "refund-9", kind="refund")
            uow.debit("acct", D("1.00"), "withdraw-1")
            uow.place_hold("acct", "card-1", "op-1", D("20.00"), "auth-op-1")
            uow.capture_hold("card-1", "op-1", D("20.00"), "clear-op-1")
            uow.place_hold("acct", "card-1", "op-2", D("30.00"), "auth-op-2")
            uow.release_hold("card-1", "op-2", "reversal-op-2")
            uow.capture_hold("card-1", "op-unknown", D("7.00"), "clear-op-unknown")
    with funded.unit_of_work() as uow:
        lines = uow.statement("acct")
        again = uow.credit("acct", D("10.00"), "deposit-2")
        dup_hold = uow.place_hold("acct", "card-1", "op-1", D("20.00"), "auth-op-1")
        dup_capture = uow.capture_hold("card-1", "op-1", D("20.00"), "clear-op-1")
        dup_release = uow.release_hold("card-1", "op-2", "reversal-op-2")
        dup_unmatched = uow.capture_hold("card-1", "op-unknown", D("7.00"), "clear-op-unknown")
    assert len(lines) == 9  # deposit-1 + 8 effects, none doubled
    assert (again.posted, again.reason) == (False, "duplicate")
    assert (dup_hold.placed, dup_hold.reason) == (True, "duplicate")
    assert {dup_capture.reason, dup_release.reason, dup_unmatched.reason} == {"duplicate"}
    assert not (dup_capture.applied or dup_release.applied or dup_unmatched.applied)
    assert balance(funded) == Balance(D("985.00"), D("0.00"), D("985.00"))


def test_capture_without_a_hold_is_still_debited_and_reported_unmatched(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        result = uow.capture_hold("card-1", "op-never-authorized", D("12.34"), "clear-x")
    assert (result.applied, result.reason, result.account_id, result.amount) == (
        True, "unmatched", "acct", D("12.34"))
    assert balance(funded) == Balance(D("987.66"), D("0.00"), D("987.66"))


def test_capture_for_an_unlinked_card_posts_nothing(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        result = uow.capture_hold("card-unknown", "op-1", D("1.00"), "clear-1")
    assert (result.applied, result.reason) == (False, "unknown_card")


def test_release_of_an_unknown_or_settled_hold_is_unmatched_and_harmless(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        unknown = uow.release_hold("card-1", "op-none", "reversal-none")
        stranger = uow.release_hold("card-nobody", "op-none", "reversal-none-2")
        uow.place_hold("acct", "card-1", "op-1", D("10.00"), "auth-op-1")
        uow.capture_hold("card-1", "op-1", D("10.00"), "clear-op-1")
        late = uow.release_hold("card-1", "op-1", "reversal-op-1")
    assert (unknown.applied, unknown.reason) == (False, "unmatched")
    assert (stranger.applied, stranger.reason, stranger.account_id) == (False, "unmatched", None)
    assert (late.reason, late.hold_status) == ("unmatched", "captured")
    assert balance(funded) == Balance(D("990.00"), D("0.00"), D("990.00"))


def test_amounts_are_decimals_with_cents_never_floats(funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        for bad in (10.5, "1.234", "-1.00", "NaN", "ten"):
            with pytest.raises(InvalidAmount):
                uow.credit("acct", bad, f"bad-{bad}")
        assert uow.credit("acct", "0.10", "str-ok").amount == D("0.10")
        assert uow.credit("acct", D("0.200"), "trailing-zero-ok").amount == D("0.20")
    assert balance(funded).balance == D("1000.30")


def test_credit_to_an_unknown_account_raises_unknown_account(ledger: Ledger) -> None:
    with pytest.raises(UnknownAccount), ledger.unit_of_work() as uow:
        uow.credit("ghost", D("1.00"), "dep-ghost")
    with ledger.unit_of_work(read_only=True) as uow:
        assert uow.account_exists("ghost") is False
        with pytest.raises(UnknownAccount):
            uow.balance("ghost")


def test_links_resolve_accounts_and_card_flags_gate_activity(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        state = uow.link_card("card-1", "acct", "WEBHOOK")
        uow.link_wallet("wlt-1", "acct")
        assert state.active and state.approval_method == "WEBHOOK"
        assert uow.link_card("card-1", "acct").approval_method == "WEBHOOK"  # kept when not given
        assert uow.account_for_card("card-1") == "acct"
        assert uow.account_for_wallet("wlt-1") == "acct"
        assert uow.account_for_card("card-2") is None and uow.account_for_wallet("wlt-2") is None
        blocked = uow.set_card_state("card-1", blocked=True)
        assert blocked is not None and blocked.blocked and not blocked.frozen and not blocked.active
        frozen = uow.set_card_state("card-1", frozen=True, blocked=False)
        assert frozen is not None and frozen.frozen and not frozen.blocked and not frozen.active
        assert uow.set_card_state("card-unknown", frozen=True) is None
        assert [c.card_id for c in uow.cards_for_account("acct")] == ["card-1"]
        assert uow.balance("acct") == Balance(D("0.00"), D("0.00"), D("0.00"))


def test_redelivered_authorization_is_a_duplicate_even_when_its_own_hold_used_all_funds(
        funded: Ledger) -> None:
    with funded.unit_of_work() as uow:
        first = uow.place_hold("acct", "card-1", "op-1", D("1000.00"), "auth-op-1")
    with funded.unit_of_work() as uow:
        again = uow.place_hold("acct", "card-1", "op-1", D("1000.00"), "auth-op-1")
    assert (first.placed, first.reason) == (True, "ok")
    assert (again.placed, again.reason, again.hold_id) == (True, "duplicate", first.hold_id)
    assert balance(funded) == Balance(D("1000.00"), D("1000.00"), D("0.00"))


def test_in_memory_sqlite_ledger_works_for_quick_tools() -> None:
    with Ledger("sqlite://") as books, books.unit_of_work() as uow:
        uow.link_wallet("wlt-1", "acct")
        assert uow.credit("acct", D("2.50"), "dep-1").posted
        assert uow.balance("acct").available == D("2.50")
