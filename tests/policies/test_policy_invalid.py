"""Invalid arguments: every one is a ValueError that says what was expected and what came.

(An unknown keyword is Python's own TypeError, naming the keyword.)
"""

from __future__ import annotations

import numpy as np
import pytest

from policies.bandit import UCB1, DiscountedThompson, EpsilonGreedy, ThompsonSampling, TopTwoThompson, get_policy
from policies.delivery import check_delivery
from policies.fatigue import calibrate_threshold, detect, detect_many, estimate_noise, estimate_overdispersion
from policies.objectives import counts, mature, prior_from_parent

RNG = np.random.default_rng(0)
C, N = np.array([1, 2]), np.array([100, 100])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"floor": -0.1}, "floor: expected a number >= 0.0, got -0.1"),
        ({"floor": 1.5}, "floor: expected a number <= 1.0"),
        ({"floor": "a"}, "floor: expected a number, got 'a'"),
        ({"target": 0.3}, "target: expected a number >= 0.5"),
        ({"target": float("nan")}, "target: expected a finite number"),
        ({"min_impressions": -1}, "min_impressions: expected a number >= 0.0"),
        ({"burn_in_impressions": None}, "burn_in_impressions: expected a number, got None"),
        ({"loss_threshold": 0}, "loss_threshold: expected a number > 0.0"),
        ({"objective": "roas"}, "objective: expected one of ctr, conversion_rate, cpa, got 'roas'"),
        ({"prior_alpha": 0}, "prior_alpha: expected positive finite"),
        ({"prior_beta": -1.0}, "prior_beta: expected positive finite"),
    ],
)
def test_thompson_constructor(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        ThompsonSampling(**kwargs)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: TopTwoThompson(top_two_beta=1.2), "top_two_beta: expected a number <= 1.0"),
        (lambda: DiscountedThompson(discount=0.0), "discount: expected a number > 0.0"),
        (lambda: EpsilonGreedy(epsilon=-0.1), "epsilon: expected a number >= 0.0"),
        (lambda: UCB1(c=-1), "c: expected a number >= 0.0"),
    ],
)
def test_policy_specific_parameters(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_registry_errors():
    with pytest.raises(ValueError, match="policy: expected one of thompson, top_two_thompson, .*ucb1, got 'greedy'"):
        get_policy("greedy")
    with pytest.raises(ValueError, match="expected parameters among .*, got epsilon"):
        get_policy("thompson", epsilon=0.1)


@pytest.mark.parametrize(
    ("clicks", "impressions", "match"),
    [
        ([1, 2, 3], [10, 10], "expected equal shapes, got \\(3,\\) and \\(2,\\)"),
        ([5, 2], [4, 10], "clicks: expected at most impressions per arm, got 5 > 4 at \\(0,\\)"),
        ([-1, 2], [4, 10], "expected non-negative counts"),
        ([np.nan, 2], [4, 10], "expected finite counts"),
        (np.zeros((2, 2, 2)), np.ones((2, 2, 2)), "expected shape \\(arms,\\) or \\(experiments, arms\\)"),
        ([], [], "expected shape \\(arms,\\) or \\(experiments, arms\\), got \\(0,\\)"),
        (None, [1, 2], "clicks, impressions: expected arrays, got None"),
    ],
)
def test_bad_counts(clicks, impressions, match):
    with pytest.raises(ValueError, match=match):
        ThompsonSampling().allocate(clicks, impressions, RNG)


def test_bad_rng():
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator, got int"):
        ThompsonSampling().allocate(C, N, 42)
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator, got NoneType"):
        ThompsonSampling().allocate(C, N, None)
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator, got RandomState"):
        ThompsonSampling().prob_best(C, N, np.random.RandomState(0))


def test_decide_wants_one_experiment():
    with pytest.raises(ValueError, match="expected shape \\(arms,\\) for one experiment, got \\(2, 2\\)"):
        ThompsonSampling().decide(np.ones((2, 2)), np.full((2, 2), 10))
    with pytest.raises(ValueError, match="for one experiment"):
        ThompsonSampling().best_so_far(np.ones((2, 2)), np.full((2, 2), 10))


def test_bad_daily_history():
    with pytest.raises(ValueError, match="expected both daily_clicks and daily_impressions, got one"):
        DiscountedThompson().allocate(None, None, RNG, daily_clicks=np.ones((3, 2)))
    with pytest.raises(ValueError, match="daily history: expected equal shapes"):
        DiscountedThompson().allocate(None, None, RNG, daily_clicks=np.ones((3, 2)), daily_impressions=np.ones((2, 2)))


def test_prior_shape_mismatch():
    with pytest.raises(ValueError, match="prior_alpha, prior_beta: expected shapes broadcastable to \\(1, 2\\)"):
        ThompsonSampling(prior_alpha=[1.0, 2.0, 3.0]).prob_best(C, N)


def test_objective_helpers():
    with pytest.raises(ValueError, match="conversions: expected an array for objective 'cpa', got None"):
        counts("cpa", spend=[1.0])
    with pytest.raises(ValueError, match="expected attribution_days or delay_cdf, got both"):
        mature(np.ones((2, 2)), np.ones((2, 2)), attribution_days=1, delay_cdf=[0.5])
    with pytest.raises(ValueError, match="delay_cdf: expected a non-decreasing 1-D array in \\[0, 1\\]"):
        mature(np.ones((2, 2)), np.ones((2, 2)), delay_cdf=[0.5, 0.2])
    with pytest.raises(ValueError, match="attribution_days: expected an integer >= 0, got -1"):
        mature(np.ones((2, 2)), np.ones((2, 2)), attribution_days=-1)
    with pytest.raises(ValueError, match="parent history: expected successes <= exposure"):
        prior_from_parent(10, 5)
    with pytest.raises(ValueError, match="relative_sd: expected a positive number, got 0"):
        prior_from_parent(1, 5, relative_sd=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": -1}, "threshold: expected a positive number, got -1"),
        ({"threshold": "high"}, "threshold: expected a positive number, got 'high'"),
        ({"baseline_days": 0}, "baseline_days: expected an integer >= 1, got 0"),
        ({"baseline_days": 5, "min_baseline_days": 7}, "min_baseline_days: expected at most baseline_days=5, got 7"),
        ({"delta": 0}, "delta: expected a number in \\(0, 0.95\\], got 0"),
        ({"overdispersion": 0.5}, "overdispersion: expected a number >= 1 or 'auto', got 0.5"),
        ({"overdispersion": "estimate"}, "overdispersion: expected a number >= 1 or 'auto', got 'estimate'"),
        ({"overdispersion": 2.0, "extra_variance": 0.1}, "expected at most one, got both"),
        ({"extra_variance": -0.1}, "extra_variance: expected a number >= 0, got -0.1"),
        ({"seasonality": [1, 2]}, "seasonality: expected 7 positive factors"),
        ({"seasonality": "weekly"}, "seasonality: expected 7 factors or 'auto', got 'weekly'"),
        ({"seasonality": np.ones((19, 7))}, "seasonality: expected 7 positive factors .* or one row of 7 per day"),
        ({"extra_variance": np.ones(19)}, "extra_variance: expected a number or shape \\(20,\\) or \\(1, 20\\)"),
        ({"extra_variance": [0.1] * 19 + [-1.0]}, "extra_variance: expected values >= 0, got a negative or nan"),
        ({"extra_variance": "auto"}, "extra_variance: expected a number >= 0, got 'auto'"),
        ({"start_weekday": 7}, "start_weekday: expected an integer 0..6"),
        ({"confounders": [True]}, "confounders: expected shape \\(20,\\), got \\(1,\\)"),
        ({"confounder_policy": "drop"}, "confounder_policy: expected 'rebaseline' or 'skip', got 'drop'"),
        ({"spend": np.ones(20)}, "spend, conversions: expected both for the CPA signal, got one"),
        ({"frequency": -np.ones(20)}, "frequency: expected finite non-negative values"),
        ({"start": -2}, "start: expected an integer >= 0, got -2"),
        ({"min_baseline_days": 0}, "min_baseline_days: expected an integer >= 1, got 0"),
    ],
)
def test_detect_keywords(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detect(np.full(20, 1000), np.full(20, 15), **kwargs)
    if "confounders" not in kwargs:  # a series of the wrong shape is detect's own check
        with pytest.raises(ValueError, match=match):
            detect_many(np.full((1, 20), 1000), np.full((1, 20), 15), **_one_row(kwargs))


def _one_row(kwargs):
    """detect's keywords as detect_many takes them for a single creative."""
    series = ("spend", "conversions", "frequency", "confounders")
    return {k: (np.asarray(v)[None] if k in series else v) for k, v in kwargs.items()}


@pytest.mark.parametrize("many", [False, True])
def test_detect_unknown_keyword(many):
    signals = {"delta": 0.2, "windows": 3}
    n, c = np.full(20, 1000), np.full(20, 15)
    call = (lambda: detect_many(n[None], c[None], **signals)) if many else (lambda: detect(n, c, **signals))
    with pytest.raises(TypeError, match="unexpected keyword argument 'windows'"):
        call()


@pytest.mark.parametrize(
    ("impressions", "clicks", "match"),
    [
        (np.full(20, 1000), np.full(19, 15), "expected 1-D daily series|expected equal shapes"),
        (np.full((2, 20), 1000), np.full((2, 20), 15), "expected 1-D daily series, got shapes \\(2, 20\\)"),
        (np.full(20, 10), np.full(20, 15), "clicks: expected at most impressions, got 15 > 10 \\(row 0, day 0\\)"),
        (np.full(20, -10), np.full(20, 0), "expected non-negative counts"),
        (np.full(20, np.inf), np.full(20, 0), "expected finite counts"),
    ],
)
def test_detect_series(impressions, clicks, match):
    with pytest.raises(ValueError, match=match):
        detect(impressions, clicks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prior_overdispersion": 0}, "prior_overdispersion: expected a number in \\(0, 2.0\\], got 0"),
        ({"prior_df": -1}, "prior_df: expected a number >= 0, got -1"),
        ({"baseline_days": 0}, "baseline_days: expected an integer >= 1, got 0"),
        ({"start_weekday": [1, 2, 3]}, "start_weekday: expected an integer 0..6 \\(Monday=0\\) or one per row"),
        ({"confounders": np.zeros((2, 3), dtype=bool)}, "confounders: expected shape \\(2, 20\\), got \\(2, 3\\)"),
        ({"seasonality": [1.0] * 6}, "seasonality: expected 7 positive factors"),
    ],
)
def test_estimate_noise_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_noise(np.full((2, 20), 1000), np.full((2, 20), 15), **kwargs)


def test_detect_many_and_helpers():
    with pytest.raises(ValueError, match="impressions: expected a 2-D array \\(creatives, days\\), got 1-D"):
        detect_many(np.full(20, 1000), np.full(20, 15))
    with pytest.raises(ValueError, match="expected equal shapes"):
        estimate_overdispersion(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator, got int"):
        calibrate_threshold(10, 3)
    with pytest.raises(ValueError, match="expected_clicks: expected a number in \\(0, impressions\\)"):
        calibrate_threshold(0, RNG)


@pytest.mark.parametrize(
    ("weights", "delivered", "alpha", "match"),
    [
        ([0.5, 0.5], [1, 2, 3], 0.001, "expected equal 1-D shapes, got \\(2,\\) and \\(3,\\)"),
        ([0.0, 0.0], [1, 2], 0.001, "requested_weights: expected non-negative weights with a positive sum"),
        ([-0.5, 1.5], [1, 2], 0.001, "requested_weights: expected non-negative weights"),
        ([0.5, 0.5], [-1, 2], 0.001, "delivered_impressions: expected non-negative counts"),
        ([0.5, 0.5], [1, 2], 1.5, "alpha: expected a number in \\(0, 1\\), got 1.5"),
    ],
)
def test_check_delivery(weights, delivered, alpha, match):
    with pytest.raises(ValueError, match=match):
        check_delivery(weights, delivered, alpha)
