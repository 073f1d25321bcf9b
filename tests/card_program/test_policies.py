"""The pure decisions behind the card program processors: no broker, no database."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hookstream.domain.card_events import action_for, operation_aliases
from hookstream.domain.deposits import credit_for
from hookstream.domain.three_ds import ThreeDSFacts, ThreeDSRules, decide


@pytest.mark.parametrize(("event_type", "status", "action"), [
    ("authorization", "pending", "record"),
    ("authorized", "success", "record"),
    ("clearing", "pending", "record"),
    ("cleared", "success", "capture"),
    ("cleared", None, "capture"),
    ("clearing", "success", "capture"),
    ("declined", "success", "release"),  # [NEW] example status
    ("declined", "failed", "release"),  # [OBS]
    ("reversal", "success", "release"),
    ("clearing", "failed", "release"),
    ("refund", "success", "refund"),
    ("visa_direct_deposit", "success", "credit"),
])
def test_each_documented_card_event_maps_to_its_ledger_action(event_type, status, action):
    assert action_for(event_type, status) == (action, True)


@pytest.mark.parametrize(("event_type", "status"), [
    ("refund", "failed"), ("clearing", "canceled"), ("reversal", "failed"), ("cleared", "pending"),
])
def test_an_undocumented_status_moves_no_money(event_type, status):
    assert action_for(event_type, status) == ("record", False)


def test_authorized_operation_ids_lead_back_to_the_authorization():
    assert operation_aliases("txn_abc123") == ["life_evt_abc123"]
    assert operation_aliases("life_evt_abc123") == []
    assert operation_aliases("rfd_abc123") == []


def _facts(**over) -> ThreeDSFacts:
    values = dict(card_linked=True, card_active=True, available=D("100.00"), amount=D("42.50"),
                  currency="USD", merchant_country="USA")
    values.update(over)
    return ThreeDSFacts(**values)


def test_3ds_approves_a_linked_active_card_with_the_funds():
    verdict = decide(_facts(), ThreeDSRules())
    assert (verdict.approve, verdict.reason, verdict.amount_checked) == (True, "approved", True)


@pytest.mark.parametrize(("facts", "rules", "reason"), [
    (dict(card_linked=False, card_active=False, available=None), {}, "card_not_linked"),
    (dict(card_active=False), {}, "card_inactive"),
    (dict(amount=D("100.01")), {}, "insufficient_funds"),
    (dict(currency="840", amount=D("100.01")), {}, "insufficient_funds"),
    (dict(merchant_country="BRA"), dict(country_allow=frozenset({"USA", "840"})), "country_not_allowed"),
    (dict(merchant_country=None), dict(country_allow=frozenset({"USA"})), "country_not_allowed"),
    (dict(mcc="7995"), dict(mcc_deny=frozenset({"7995"})), "mcc_denied"),
    (dict(amount=D("60.00")), dict(max_amount=D("50")), "over_transaction_maximum"),
])
def test_3ds_declines_what_the_policy_rules_out(facts, rules, reason):
    verdict = decide(_facts(**facts), ThreeDSRules(**rules))
    assert (verdict.approve, verdict.reason) == (False, reason)


def test_3ds_in_a_foreign_currency_leaves_the_funds_check_to_the_authorization():
    verdict = decide(_facts(currency="EUR", amount=D("500.00")), ThreeDSRules())
    assert (verdict.approve, verdict.amount_checked) == (True, False)


def test_3ds_numeric_country_passes_an_allow_list_that_names_it():
    assert decide(_facts(merchant_country="840"), ThreeDSRules(country_allow=frozenset({"USA", "840"}))).approve


def test_deposit_credits_the_net_amount_cut_down_to_cents():
    credit = credit_for("virtual_wallets", D("12.345678"), D("12.339999"))
    assert (credit.amount, credit.received, credit.rounded) == (D("12.33"), D("12.339999"), True)
    assert credit_for("virtual_wallets", D("100.00"), None).amount == D("100.00")
    assert not credit_for("virtual_wallets", D("100"), None).rounded


def test_deposit_below_the_notification_minimum_is_still_credited_and_flagged():
    credit = credit_for("cards", D("5.00"), None)
    assert (credit.amount, credit.below_minimum) == (D("5.00"), D("10"))
    assert credit_for("treasury", D("1.00"), None).below_minimum is None


def test_negative_deposit_is_refused():
    with pytest.raises(ValueError):
        credit_for("cards", D("-1"), None)
