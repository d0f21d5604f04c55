"""The bandit: allocations, convergence, stopping, the registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies.bandit import (
    POLICY_NAMES,
    AllocationPolicy,
    Decision,
    DiscountedThompson,
    ThompsonSampling,
    TopTwoThompson,
    get_policy,
)
from policies.objectives import mature, prior_from_parent


def test_registry_names_and_default():
    assert POLICY_NAMES == (
        "thompson",
        "top_two_thompson",
        "discounted_thompson",
        "uniform",
        "epsilon_greedy",
        "ucb1",
    )
    assert isinstance(get_policy(), ThompsonSampling)
    for name in POLICY_NAMES:
        policy = get_policy(name)
        assert isinstance(policy, AllocationPolicy)
        assert policy.name == name
    assert get_policy("top_two_thompson", top_two_beta=0.3).top_two_beta == 0.3


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_allocates_rows_summing_to_one_with_floor(name):
    policy = get_policy(name, floor=0.05, burn_in_impressions=500)
    rng = np.random.default_rng(0)
    n = np.array([[3000, 3000, 3000, 3000], [600, 5000, 700, 900], [100, 5000, 5000, 5000]])
    c = np.array([[30, 45, 60, 90], [6, 100, 7, 9], [1, 50, 60, 70]])
    w = policy.allocate(c, n, rng)
    assert w.shape == n.shape
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(w >= 0.05 - 1e-12)
    # burn-in: the third experiment has an arm below 500 impressions
    np.testing.assert_allclose(w[2], 0.25)
    one = policy.allocate(c[0], n[0], rng)
    assert one.shape == (4,)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_has_the_same_surface(name):
    policy = get_policy(name)
    c, n = np.array([20, 40]), np.array([3000, 3000])
    p = policy.prob_best(c, n)
    assert p.shape == (2,) and p.sum() == pytest.approx(1.0, abs=1e-6)
    d = policy.decide(c, n)
    assert isinstance(d, Decision)
    assert policy.best_so_far(c, n) == 1


@given(
    clicks=arrays(np.int64, 5, elements=st.integers(0, 200)),
    extra=arrays(np.int64, 5, elements=st.integers(0, 20_000)),
    floor=st.floats(0.0, 0.3),
)
@settings(max_examples=40, deadline=None)
def test_thompson_weights_are_a_distribution_respecting_the_floor(clicks, extra, floor):
    policy = ThompsonSampling(floor=floor, burn_in_impressions=0)
    w = policy.allocate(clicks, clicks + extra, np.random.default_rng(0))
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(w >= min(floor, 0.2) - 1e-9)


def test_allocation_is_probability_matching():
    policy = ThompsonSampling(floor=0.0, burn_in_impressions=0)
    c, n = np.array([30, 45, 60]), np.array([3000, 3000, 3000])
    np.testing.assert_allclose(policy.allocate(c, n, np.random.default_rng(0)), policy.prob_best(c, n), atol=1e-9)


def test_variance_scale_matches_the_tempered_posterior_and_leaves_decisions_alone():
    c, n = np.array([30, 45, 60]), np.array([3000, 3000, 3000])
    rng = np.random.default_rng(0)
    plain = ThompsonSampling(floor=0.0, burn_in_impressions=0)
    sharp = ThompsonSampling(floor=0.0, burn_in_impressions=0, variance_scale=0.25)
    # The split is probability matching under Beta(a/α, b/α): the same as plain Thompson sampling
    # given four times the data at the same rates (the uniform prior scaled with it).
    four = ThompsonSampling(floor=0.0, burn_in_impressions=0, prior_alpha=4.0, prior_beta=4.0)
    np.testing.assert_allclose(sharp.allocate(c, n, rng), four.prob_best(4 * c, 4 * n), atol=1e-9)
    split, matched = sharp.allocate(c, n, rng), plain.allocate(c, n, rng)
    assert split[2] > matched[2] and split[0] < matched[0] and split[1] < matched[1]  # less on the arms behind
    # P(best), the expected loss and the decision read the true posterior, whatever the scale.
    np.testing.assert_allclose(sharp.prob_best(c, n), plain.prob_best(c, n))
    np.testing.assert_allclose(sharp.expected_loss(c, n), plain.expected_loss(c, n))
    assert sharp.decide(c, n).reason == plain.decide(c, n).reason
    # 1 is plain Thompson sampling; the top-two policy takes its Thompson split through the same scale.
    np.testing.assert_allclose(
        ThompsonSampling(variance_scale=1.0).allocate(c, n, rng), ThompsonSampling().allocate(c, n, rng)
    )
    assert get_policy("top_two_thompson", variance_scale=0.25).variance_scale == 0.25
    for bad in (0.0, -1.0, 5.0, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="variance_scale"):
            ThompsonSampling(variance_scale=bad)
    with pytest.raises(ValueError, match="variance_scale"):
        get_policy("epsilon_greedy", variance_scale=0.25)  # only Thompson policies take it


def simulate(policy, ctrs, days, per_day, seed):
    rng = np.random.default_rng(seed)
    k = len(ctrs)
    clicks = np.zeros(k, dtype=np.int64)
    impressions = np.zeros(k, dtype=np.int64)
    for _ in range(days):
        w = policy.allocate(clicks, impressions, rng)
        n = rng.multinomial(per_day, w)
        clicks += rng.binomial(n, ctrs)
        impressions += n
    return clicks, impressions


def test_thompson_converges_to_the_best_arm_and_declares_it():
    ctrs = np.array([0.010, 0.015, 0.025, 0.012])
    policy = ThompsonSampling()
    clicks, impressions = simulate(policy, ctrs, days=20, per_day=10_000, seed=11)
    assert int(np.argmax(impressions)) == 2
    assert impressions[2] > 0.7 * impressions.sum()
    decision = policy.decide(clicks, impressions)
    assert decision.winner == 2
    assert decision.reason.startswith("prob_best")
    assert decision.prob_best[2] >= 0.95


def test_seeded_runs_replay_exactly():
    ctrs = np.array([0.010, 0.02, 0.018])
    a = simulate(TopTwoThompson(), ctrs, days=5, per_day=5000, seed=3)
    b = simulate(TopTwoThompson(), ctrs, days=5, per_day=5000, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_min_sample_blocks_an_early_winner():
    policy = ThompsonSampling(min_impressions=2000)
    d = policy.decide(np.array([0, 30]), np.array([1500, 1500]))
    assert d.winner is None
    assert d.reason.startswith("undecided") and "1500 < 2000" in d.reason
    d = policy.decide(np.array([0, 40]), np.array([2000, 2000]))
    assert d.winner == 1


def test_expected_loss_rule_and_budget_exhausted():
    c, n = np.array([300, 302]), np.array([20_000, 20_000])
    assert ThompsonSampling().decide(c, n).winner is None
    d = ThompsonSampling(loss_threshold=0.001).decide(c, n)
    assert d.winner == 1 and d.reason.startswith("expected_loss")
    assert d.expected_loss[1] < 0.001
    d = ThompsonSampling().decide(c, n, budget_exhausted=True)
    assert d.winner == 1 and d.budget_exhausted and d.reason.startswith("budget exhausted")


def test_expected_loss_matches_monte_carlo():
    policy = ThompsonSampling()
    c, n = np.array([40, 50, 45]), np.array([3000, 3000, 3000])
    loss = policy.expected_loss(c, n)
    rng = np.random.default_rng(0)
    theta = rng.beta(1 + c, 1 + n - c, size=(400_000, 3))
    mc = (theta.max(axis=1, keepdims=True) - theta).mean(axis=0)
    np.testing.assert_allclose(loss, mc, atol=3e-5)


def test_discounted_thompson_follows_a_drift():
    # arm 0 was better long ago, arm 1 is better lately
    daily_c = np.array([[60, 20]] * 10 + [[20, 40]] * 5)
    daily_n = np.full((15, 2), 2000)
    plain = ThompsonSampling(floor=0.0).allocate(daily_c.sum(0), daily_n.sum(0), np.random.default_rng(0))
    disc = DiscountedThompson(discount=0.7, floor=0.0).allocate(
        None, None, np.random.default_rng(0), daily_clicks=daily_c, daily_impressions=daily_n
    )
    assert plain[0] > 0.99
    assert disc[1] > 0.99


def test_daily_history_is_accepted_by_every_policy():
    daily_c = np.array([[[3, 4], [5, 9]], [[1, 1], [2, 2]]])
    daily_n = np.full((2, 2, 2), 1000)
    for name in POLICY_NAMES:
        w = get_policy(name, burn_in_impressions=0).allocate(
            None, None, np.random.default_rng(0), daily_clicks=daily_c, daily_impressions=daily_n
        )
        assert w.shape == (2, 2)


def test_conversion_objectives():
    cr = ThompsonSampling(objective="conversion_rate", min_impressions=100)
    d = cr.decide(np.array([10, 40]), np.array([500, 500]))  # conversions of clicks
    assert d.winner == 1
    cpa = ThompsonSampling(objective="cpa", prior_alpha=1.0, prior_beta=10.0, min_impressions=100)
    # arm 0: 50 conversions for 1000 spent (CPA 20); arm 1: 20 for 1000 (CPA 50)
    d = cpa.decide(np.array([50.0, 20.0]), np.array([1000.0, 1000.0]))
    assert d.winner == 0


def test_immature_days_are_not_failures():
    daily_conv = np.array([[10, 10], [10, 10], [2, 2]])  # today's conversions are still arriving
    daily_clicks = np.array([[100, 100], [100, 100], [100, 100]])
    s, x = mature(daily_conv, daily_clicks, attribution_days=1)
    np.testing.assert_array_equal(s, [20, 20])
    np.testing.assert_array_equal(x, [200, 200])
    s, x = mature(daily_conv, daily_clicks, delay_cdf=[0.2, 0.8])
    np.testing.assert_allclose(x, [100 + 80 + 20, 100 + 80 + 20])
    assert s[0] / x[0] == pytest.approx(0.11)


def test_prior_from_parent_is_shrunk():
    a, b = prior_from_parent(300, 20_000)
    assert a / (a + b) == pytest.approx(301 / 20_001 * 0 + 300.5 / 20_001, rel=1e-9)
    assert a + b < 20_000 / 10  # far weaker than the parent's own data
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    assert sd / (a / (a + b)) == pytest.approx(0.25, rel=0.01)
    policy = ThompsonSampling(prior_alpha=a, prior_beta=b)
    assert policy.decide(np.array([0, 0]), np.array([0, 0])).winner is None


def test_monte_carlo_fallback_for_singular_priors():
    # Beta(0.5, ...) has an infinite density at 0: the quadrature cannot certify
    # itself there, so the seeded Monte Carlo fallback answers instead.
    policy = ThompsonSampling(prior_alpha=0.5, prior_beta=0.5)
    c, n = np.array([0, 0, 1]), np.array([3000, 3000, 3000])
    d = policy.decide(c, n, np.random.default_rng(0))
    assert d.method == "monte_carlo"
    np.testing.assert_allclose(d.prob_best, [0.1497, 0.1497, 0.7005], atol=0.01)
    again = policy.decide(c, n, np.random.default_rng(0))
    np.testing.assert_array_equal(d.prob_best, again.prob_best)
