"""The test plan: sample size per arm, arms the money resolves, and a plan that cannot test."""

from __future__ import annotations

import math

import pytest

from policies.planning import ExperimentPlan, plan_experiment, sample_per_arm


def test_sample_size_is_the_textbook_two_proportion_formula():
    # p1 = 2 %, p2 = 2.4 %, one-sided 95 %, power 80 %: (1.645 + 0.842)^2 (pq + pq) / delta^2.
    z = 1.6448536269514722 + 0.8416212335729143
    expected = z * z * (0.02 * 0.98 + 0.024 * 0.976) / 0.004**2
    assert sample_per_arm(0.02, 0.2) == math.ceil(expected)


def test_over_dispersion_and_smaller_lifts_need_more_impressions():
    base = sample_per_arm(0.02, 0.2)
    assert sample_per_arm(0.02, 0.2, extra_variance=0.0064, days=10) > base
    assert sample_per_arm(0.02, 0.1) > 3.5 * base  # ~ 1 / lift^2
    # Day-level noise that alone hides the lift over the test's days: no sample is enough.
    assert sample_per_arm(0.02, 0.05, extra_variance=0.04, days=2) > 10**15


def money(**kw):
    args = dict(baseline_rate=0.02, cpm_minor=1000.0, daily_budget_minor=10_000, max_days=21, max_arms=6)
    return plan_experiment(**{**args, **kw})


def test_arms_follow_the_money():
    n = sample_per_arm(0.02, 0.15)
    small, large = money(budget_left_minor=50_000), money(budget_left_minor=2_000_000)
    assert small.days == 1 + (50_000 - 12_500) // 10_000 == 4
    assert small.impressions == 4 * 10_000 * 1000 // 1000
    assert small.arms == min(6, small.impressions // n)
    assert large.days == 21 and large.arms == 6
    assert large.can_test and "of 6 arms" in large.summary()


def test_a_cap_too_small_to_resolve_two_arms_says_so():
    plan = money(budget_left_minor=25_000)
    assert not plan.can_test and plan.arms < 2
    assert plan.reason.startswith("test plan:") and "2 needed" in plan.reason
    assert plan.resolvable_lift is not None and plan.resolvable_lift > 0.15
    broke = money(budget_left_minor=12_000)  # under one reserved day (10,000 x 1.25)
    assert broke.days == 0 and "cannot fund one day" in broke.reason


def test_resolvable_lift_is_the_lift_two_arms_can_resolve():
    plan = money(budget_left_minor=25_000)
    per_arm = plan.impressions // 2
    assert sample_per_arm(0.02, plan.resolvable_lift) <= per_arm
    assert sample_per_arm(0.02, plan.resolvable_lift * 0.98) > per_arm


def test_a_plan_settles_for_two_arms_at_a_larger_lift_within_max_lift():
    refused = money(budget_left_minor=25_000)
    lift = refused.resolvable_lift
    assert lift is not None and 0.15 < lift < 0.3
    plan = money(budget_left_minor=25_000, max_lift=0.3)
    assert plan.can_test and plan.arms == 2
    assert plan.lift == lift and plan.asked_lift == 0.15  # sized for the lift it can resolve; the asked one kept
    assert plan.per_arm_impressions == sample_per_arm(0.02, lift) <= plan.impressions // 2
    assert plan.days == refused.days and plan.spend_minor == refused.spend_minor  # the same money
    assert "2 arm(s) resolvable at a" in plan.reason and "cannot resolve 15%" in plan.reason
    assert f"({lift:.1%} lift at 80% power; 15% asked)" in plan.summary()
    # A plan that resolves the asked lift is unchanged by max_lift.
    rich = money(budget_left_minor=2_000_000, max_lift=0.3)
    assert rich == money(budget_left_minor=2_000_000) and rich.asked_lift is None


def test_a_lift_beyond_max_lift_is_still_refused():
    plan = money(budget_left_minor=25_000, max_lift=0.16)
    assert not plan.can_test and "2 needed" in plan.reason and "more than the 16% allowed" in plan.reason
    assert money(budget_left_minor=12_000, max_lift=0.3).days == 0  # no day affordable: nothing to settle for
    with pytest.raises(ValueError, match=r"max_lift: expected >= lift"):
        money(budget_left_minor=25_000, max_lift=0.1)
    # The largest the config allows (plan_lift 5 x plan_lift_tolerance 5) is a lift, not an error.
    assert money(budget_left_minor=25_000, lift=5.0, max_lift=25.0).can_test


def test_a_plan_stored_before_asked_lift_existed_still_reads():
    stored = money(budget_left_minor=2_000_000).to_dict()
    del stored["asked_lift"]
    assert ExperimentPlan.from_dict(stored).asked_lift is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"baseline_rate": 0.0}, "baseline_rate"),
        ({"baseline_rate": float("nan")}, "baseline_rate"),
        ({"cpm_minor": 0.0}, "cpm_minor"),
        ({"budget_left_minor": -1}, "budget_left_minor"),
        ({"max_days": 0}, "max_days"),
        ({"lift": 0.0}, "lift"),
        ({"power": 1.0}, "power"),
    ],
)
def test_bad_arguments_name_the_argument(kw, message):
    with pytest.raises(ValueError, match=message):
        money(**{"budget_left_minor": 50_000, **kw})
