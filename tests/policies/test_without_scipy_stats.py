"""The policies compute what scipy.stats computed, bit for bit, without importing scipy.stats.

scipy.stats takes about a second to import; the loop needs three of its
functions, which it takes from scipy.special (issue 14).  These tests pin
the equality, so a scipy upgrade that changes either side shows here first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from policies import bandit, delivery, planning


@pytest.mark.parametrize("family", ["beta", "gamma"])
@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_credible_bounds_are_scipy_stats_quantiles(family: str, level: float) -> None:
    rng = np.random.default_rng(7)
    a = 1.0 + rng.integers(0, 200_000, size=(40, 5)) * rng.random((40, 5))
    b = 1.0 + rng.integers(0, 2_000_000, size=(40, 5)) * rng.random((40, 5))
    lo, hi = bandit._credible_bounds(family, a, b, level)
    tail = (1.0 - level) / 2.0
    if family == "beta":
        want = stats.beta.ppf(tail, a, b), stats.beta.ppf(1.0 - tail, a, b)
    else:
        want = stats.gamma.ppf(tail, a, scale=1.0 / b), stats.gamma.ppf(1.0 - tail, a, scale=1.0 / b)
    assert np.array_equal(lo, want[0]) and np.array_equal(hi, want[1])


def test_the_delivery_p_value_is_the_chi_square_survival_function() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        arms = int(rng.integers(2, 8))
        weights = rng.random(arms) + 0.01
        delivered = rng.integers(0, 5000, size=arms).astype(float)
        if delivered.sum() == 0:
            continue
        check = delivery.check_delivery(weights, delivered)
        assert check.p_value == float(stats.chi2.sf(check.statistic, arms - 1))


@pytest.mark.parametrize("power", [0.5, 0.8, 0.9, 0.99])
@pytest.mark.parametrize("confidence", [0.6, 0.9, 0.95, 0.975, 0.999])
@pytest.mark.parametrize("extra_variance", [0.0, 0.004])
def test_the_sample_size_uses_the_normal_quantiles(power: float, confidence: float, extra_variance: float) -> None:
    # The formula of planning.sample_per_arm with scipy.stats' normal quantiles, as it was written.
    z = float(stats.norm.ppf(confidence) + stats.norm.ppf(power))
    for rate, lift, days in ((0.012, 0.2, 9), (0.03, 0.1, 21), (0.2, 0.5, 1)):
        p1, p2 = rate, min(rate * (1.0 + lift), 1.0 - 1e-12)
        binomial = p1 * (1 - p1) + p2 * (1 - p2)
        room = (p2 - p1) ** 2 - z * z * (p1 * p1 + p2 * p2) * extra_variance / days
        want = math.ceil(z * z * binomial / room) if room > 0 else 2**62
        got = planning.sample_per_arm(
            rate, lift, power=power, confidence=confidence, extra_variance=extra_variance, days=days
        )
        assert got == want
