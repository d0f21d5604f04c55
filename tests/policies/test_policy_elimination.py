"""Test design inside the policies: elimination, burn-in by expected clicks, stopping by relative loss."""

from __future__ import annotations

import numpy as np
import pytest

from policies.bandit import POLICY_NAMES, ThompsonSampling, get_policy

# Arm 2 is far behind arms 0 and 1 (about 1.0 % against 2.0 %) after 20k impressions each.
CLICKS = np.array([400, 390, 200])
IMPS = np.array([20_000, 20_000, 20_000])


def test_a_clear_loser_is_eliminated_and_the_contenders_stay():
    policy = ThompsonSampling(eliminate_below=0.01)
    out = policy.eliminate(CLICKS, IMPS)
    assert out.tolist() == [False, False, True]


def test_the_credible_bound_rule_eliminates_when_prob_best_alone_would_not():
    # Three arms near 2 % and one at 1.2 %: arm 3's P(best) is ~0 either way, but with a tiny
    # P(best) threshold only the bound rule (99 % upper bound below the leader's lower bound) takes it out.
    c, n = np.array([400, 405, 398, 240]), np.array([20_000] * 4)
    policy = ThompsonSampling(eliminate_below=1e-300)
    assert policy.eliminate(c, n).tolist() == [False, False, False, True]


def test_nothing_is_eliminated_during_burn_in_or_when_disabled():
    assert not ThompsonSampling().eliminate(CLICKS, IMPS).any()  # eliminate_below=None: off
    burn = ThompsonSampling(eliminate_below=0.01, burn_in_clicks=500)
    assert not burn.eliminate(CLICKS, IMPS).any()  # 20k imps x 1.65 % pooled = 330 expected clicks < 500


def test_uniform_never_eliminates():
    assert not get_policy("uniform", eliminate_below=0.2).eliminate(CLICKS, IMPS).any()


def test_elimination_keeps_at_least_two_arms():
    c, n = np.array([800, 10, 12]), np.array([20_000] * 3)
    out = ThompsonSampling(eliminate_below=0.01).eliminate(c, n)
    assert out.sum() == 1 and not out[0]


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_inactive_arms_get_nothing_and_the_floor_protects_only_contenders(name):
    policy = get_policy(name, floor=0.1, burn_in_impressions=0)
    active = np.array([True, True, False, True])
    c, n = np.array([100, 120, 500, 10]), np.array([10_000, 10_000, 10_000, 10_000])
    w = policy.allocate(c, n, np.random.default_rng(1), active=active)
    assert w[2] == 0.0
    assert np.isclose(w.sum(), 1.0)
    assert np.all(w[active] >= 0.1 - 1e-12)
    p = policy.prob_best(c, n, active=active)
    assert p[2] == 0.0 and np.isclose(p.sum(), 1.0)


def test_decide_and_best_so_far_ignore_inactive_arms():
    policy = ThompsonSampling()
    c, n = np.array([900, 300, 290]), np.array([20_000] * 3)
    active = np.array([False, True, True])
    assert policy.best_so_far(c, n, active=active) == 1
    d = policy.decide(c, n, active=active)
    assert d.leader == 1 and d.runner_up == 2 and d.prob_best[0] == 0.0
    d = policy.decide(c, n, budget_exhausted=True, active=active)
    assert d.winner == 1


def test_active_is_validated():
    with pytest.raises(ValueError, match="active: expected a boolean mask"):
        ThompsonSampling().allocate(CLICKS, IMPS, np.random.default_rng(0), active=[True, False])
    with pytest.raises(ValueError, match="at least one active arm"):
        ThompsonSampling().prob_best(CLICKS, IMPS, active=[False, False, False])


def test_burn_in_counts_expected_clicks_not_impressions():
    rng = np.random.default_rng(0)
    policy = ThompsonSampling(burn_in_impressions=0, burn_in_clicks=10, floor=0.0)
    # 2 % CTR: 400 impressions are 8 expected clicks per arm -> still equal.
    assert np.allclose(policy.allocate(np.array([12, 4]), np.array([400, 400]), rng), 0.5)
    # 600 impressions are 12 expected clicks -> the split adapts.
    w = policy.allocate(np.array([18, 6]), np.array([600, 600]), rng)
    assert w[0] > 0.8
    # At a 0.5 % CTR the same 600 impressions are only 3 expected clicks -> equal again.
    assert np.allclose(policy.allocate(np.array([4, 2]), np.array([600, 600]), rng), 0.5)


def test_relative_expected_loss_ends_a_test_of_practically_equal_arms():
    c, n = np.array([8000, 8016]), np.array([400_000, 400_000])
    assert ThompsonSampling().decide(c, n).winner is None
    d = ThompsonSampling(relative_loss_threshold=0.01).decide(c, n)
    assert d.winner == 1 and d.reason.startswith("expected_loss") and "of its rate" in d.reason
    # Close but not yet equal enough: 1 % is not reached with a tenth of the data.
    assert ThompsonSampling(relative_loss_threshold=0.01).decide(c // 10, n // 10).winner is None


def test_effective_counts_match_the_variance_of_an_over_dispersed_rate():
    from policies.objectives import effective_counts

    s, n, d, tau2 = np.array([400.0, 40.0]), np.array([20_000.0, 2_000.0]), np.array([10, 10]), 0.0064
    se, ne = effective_counts(s, n, d, tau2)
    np.testing.assert_allclose(se / ne, s / n)  # the rate is unchanged
    p = s / n
    target = p * (1 - p) / n + p * p * tau2 / d
    np.testing.assert_allclose(p * (1 - p) / ne, target, rtol=1e-12)  # same variance as the over-dispersed estimate
    assert ne[0] < n[0] and ne[0] / n[0] < ne[1] / n[1]  # large samples lose more: day noise does not average out
    np.testing.assert_array_equal(effective_counts(s, n, d, 0.0)[1], n)
    # simulated check: day-level lognormal noise on a 2 % CTR, 10 days x 2,000 impressions
    rng = np.random.default_rng(5)
    daily = rng.binomial(2000, 0.02 * np.exp(rng.normal(0, 0.08, size=(20_000, 10))))
    est = daily.sum(axis=1) / 20_000
    se1, ne1 = effective_counts(np.array([400.0]), np.array([20_000.0]), np.array([10]), 0.0064)
    assert abs(est.var() / (0.02 * 0.98 / ne1[0]) - 1) < 0.05
