"""The pure decisions behind the card program processors: no broker, no database."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hookstream.domain.card_events import FollowUp, Hold, action_for, follow_up, operation_aliases
from hookstream.domain.effects import Close, Settle, UnmatchedEvent
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


HELD = Hold("life_1", "held", "acct-1", D("20.00"))


def _follow(event_type, status="success", operation_id="life_1", amount="20.00", **facts) -> FollowUp:
    return FollowUp(event_type, status, operation_id, "crd_a", D(amount) if amount is not None else None, **facts)


def test_a_settlement_settles_the_hold_it_found_by_identity():
    fx = follow_up(_follow("cleared", amount="21.25", hold=HELD))
    assert (fx.settlements, fx.outcome, fx.closes) == ([Settle("capture", "crd_a", "life_1", "captured", D("21.25"))],
                                                      "ok", [])
    alias = follow_up(_follow("reversal", operation_id="txn_1", hold=HELD))  # found under life_1, its alias
    assert alias.settlements == [Settle("release", "crd_a", "life_1", "released")]


def test_a_settlement_without_a_hold_is_a_debit_kept_for_an_operator_and_closes_the_operation():
    fx = follow_up(_follow("cleared", operation_id="txn_9", card_account="acct-1"))
    assert fx.settlements == [Settle("capture", "crd_a", "txn_9", "unmatched", D("20.00"))]
    assert fx.closes == [Close("crd_a", ("txn_9", "life_evt_9"), "cleared")]
    assert fx.unmatched == UnmatchedEvent("cleared", "txn_9", "crd_a", D("20.00"), "unmatched", posted=True)
    unknown = follow_up(_follow("cleared"))  # and no linked card: nothing posted
    assert (unknown.settlements, unknown.unmatched.reason, unknown.outcome) == ([], "unknown_card", "unmatched")


def test_a_decline_with_nothing_held_is_normal_a_reversal_with_nothing_held_is_not():
    declined = follow_up(_follow("declined", card_account="acct-1"))
    assert (declined.outcome, declined.settlements, declined.unmatched) == ("nothing_held", [], None)
    reversal = follow_up(_follow("reversal", hold=Hold("life_1", "captured", "acct-1", D("20.00"))))
    assert (reversal.outcome, reversal.settlements, reversal.closes) == ("unmatched", [], [])


def test_an_authorization_answered_with_a_decline_releases_its_own_hold_unless_first_approved():
    fx = follow_up(_follow("authorization", "pending", hold=HELD, response_code="05"))
    assert fx.settlements == [Settle("release", "crd_a", "life_1", "released", key_suffix=":answered-decline",
                                     memo="authorization answered with a decline")]
    kept = follow_up(_follow("authorization", "pending", hold=HELD, response_code="05", first_answer="00"))
    assert (kept.settlements, kept.outcome) == ([], "redelivery_decline_kept_hold")
    approved = follow_up(_follow("authorization", "pending", response_code="00"))
    assert (approved.settlements, approved.outcome) == ([], "approved_without_hold")


def test_a_settlement_without_an_amount_is_refused_and_a_refund_credits_the_cards_account():
    with pytest.raises(ValueError, match="without data.bill_amount"):
        follow_up(_follow("cleared", amount=None, hold=HELD))
    refund = follow_up(_follow("refund", amount="5.00", card_account="acct-1"))
    assert [(p.account_id, p.kind, p.amount) for p in refund.postings] == [("acct-1", "refund", D("5.00"))]


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
