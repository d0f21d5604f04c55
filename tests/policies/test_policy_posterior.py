"""P(best) by integration: agreement with an independent quadrature and with Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from policies.posterior import integrate_prob_best, monte_carlo_prob_best


def reference_beta(a, b):
    """P(best) by adaptive quadrature with exact incomplete-beta CDFs."""
    out = []
    for i in range(len(a)):

        def g(x, i=i):
            v = stats.beta.pdf(x, a[i], b[i])
            for j in range(len(a)):
                if j != i:
                    v *= special.betainc(a[j], b[j], x)
            return v

        m = a[i] / (a[i] + b[i])
        s = np.sqrt(a[i] * b[i] / ((a[i] + b[i]) ** 2 * (a[i] + b[i] + 1)))
        lo, hi = max(0.0, m - 20 * s), min(1.0, m + 20 * s)
        pts = [p for p in (m - 3 * s, m, m + 3 * s) if lo < p < hi]
        out.append(integrate.quad(g, lo, hi, points=pts, epsabs=1e-13, epsrel=1e-12, limit=500)[0])
    return np.array(out)


CASES = {
    "similar": ([41, 52, 47, 60, 38], [2960, 2949, 2954, 2941, 2963]),
    "no data and much data": ([1, 1, 401], [1, 1001, 20001]),
    "flat vs sharp": ([1, 401, 3], [1, 20001, 20]),
    "uneven": ([1, 1, 3, 21, 2001], [1, 11, 99, 981, 98001]),
    "two arms": ([301, 331], [19701, 19671]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_integration_matches_reference_within_1e6(case):
    a, b = (np.array(v, dtype=float) for v in CASES[case])
    res = integrate_prob_best("beta", a[None], b[None])
    assert res.ok[0]
    assert res.error[0] <= 1e-6
    np.testing.assert_allclose(res.prob_best[0], reference_beta(a, b), atol=1e-6, rtol=0)


def test_vectorised_rows_equal_single_rows():
    rng = np.random.default_rng(4)
    n = rng.integers(1000, 50_000, size=(30, 6)).astype(float)
    c = rng.binomial(n.astype(int), 0.02).astype(float)
    many = integrate_prob_best("beta", 1 + c, 1 + n - c)
    for r in range(0, 30, 7):
        one = integrate_prob_best("beta", 1 + c[r : r + 1], 1 + n[r : r + 1] - c[r : r + 1])
        np.testing.assert_allclose(many.prob_best[r], one.prob_best[0], atol=1e-9)
    np.testing.assert_allclose(many.prob_best.sum(axis=1), 1.0, atol=1e-6)


def test_monte_carlo_agrees_with_integration():
    a = np.array([[31.0, 36.0, 40.0, 28.0]])
    b = np.array([[1970.0, 1965.0, 1961.0, 1973.0]])
    exact = integrate_prob_best("beta", a, b)
    mc, e_max = monte_carlo_prob_best("beta", a, b, np.random.default_rng(0), 200_000)
    # 200k draws: standard error <= 0.0012
    np.testing.assert_allclose(mc[0], exact.prob_best[0], atol=0.005)
    assert e_max[0] == pytest.approx(exact.expected_max[0], abs=2e-5)


def test_gamma_family_matches_monte_carlo():
    a = np.array([[20.0, 25.0, 18.0]])  # conversions
    b = np.array([[1000.0, 1100.0, 950.0]])  # spend
    exact = integrate_prob_best("gamma", a, b)
    assert exact.ok[0]
    mc, _ = monte_carlo_prob_best("gamma", a, b, np.random.default_rng(1), 200_000)
    np.testing.assert_allclose(mc[0], exact.prob_best[0], atol=0.005)


def test_many_arms_far_behind_get_zero_and_leader_gets_one():
    k = 200
    a = np.full((1, k), 101.0)
    b = np.full((1, k), 9900.0)
    a[0, 7], b[0, 7] = 301.0, 9700.0  # 3% vs 1%
    res = integrate_prob_best("beta", a, b)
    assert res.prob_best[0, 7] == pytest.approx(1.0, abs=1e-6)
    assert res.prob_best.sum() == pytest.approx(1.0, abs=1e-6)


def test_single_arm_is_best_with_certainty():
    res = integrate_prob_best("beta", np.array([[3.0]]), np.array([[10.0]]))
    assert res.prob_best[0, 0] == 1.0
