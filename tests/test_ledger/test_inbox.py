"""The inbox: an event's claim and its effect commit together or not at all."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hookstream.ledger import Ledger


class EffectFailed(Exception):
    pass


def test_first_claim_wins_and_a_redelivery_is_reported_duplicate(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        assert uow.claim("cards", "cards|cleared|success|op-1", "cryptomate.cards.transactions", 2, 41)
    with ledger.unit_of_work() as uow:
        assert uow.claim("cards", "cards|cleared|success|op-1", "cryptomate.cards.transactions", 2, 41) is False
        entry = uow.inbox_entry("cards", "cards|cleared|success|op-1")
    assert entry is not None
    assert (entry.topic, entry.partition, entry.offset) == ("cryptomate.cards.transactions", 2, 41)
    assert entry.processed_at.tzinfo is not None


def test_claims_are_per_processor(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        assert uow.claim("deposits", "k")
        assert uow.claim("treasury", "k")
        assert uow.claim("deposits", "k") is False


def test_failed_effect_rolls_back_its_claim_so_the_redelivery_is_processed(funded: Ledger) -> None:
    with pytest.raises(EffectFailed), funded.unit_of_work() as uow:
        assert uow.claim("deposits", "dep-2")
        uow.credit("acct", Decimal("50.00"), "dep-2")
        raise EffectFailed("API call failed after the posting")
    with funded.unit_of_work() as uow:
        assert uow.inbox_entry("deposits", "dep-2") is None
        assert uow.balance("acct").balance == Decimal("1000.00")
        assert uow.claim("deposits", "dep-2")  # the redelivered event gets its effect
        uow.credit("acct", Decimal("50.00"), "dep-2")
    with funded.unit_of_work() as uow:
        assert uow.balance("acct").balance == Decimal("1050.00")


def test_outcome_is_recorded_with_the_claim(ledger: Ledger) -> None:
    with ledger.unit_of_work() as uow:
        uow.claim("three-ds", "k1", outcome="pending")
        assert uow.set_outcome("three-ds", "k1", "expired")
        assert uow.set_outcome("three-ds", "never-claimed", "ok") is False
    with ledger.unit_of_work(read_only=True) as uow:
        entry = uow.inbox_entry("three-ds", "k1")
    assert entry is not None and entry.outcome == "expired"
