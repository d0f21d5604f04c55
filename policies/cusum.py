"""The CUSUM recursion behind fatigue detection, shared by the detector and its calibration.

One-sided CUSUM of a log-likelihood ratio against each row's own running
baseline (see :mod:`policies.fatigue` for the test and why)::

    S_t = max(0, S_{t−1} + LLR_t / φ_t)

:func:`cusum_paths` runs it over rows (creatives) for every day at once and
:func:`first_crossing` finds each row's first alarm at a threshold.  Both are
prefix-consistent: outputs at day ``t`` use only days ``<= t``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cusum_paths", "first_crossing"]


def _bernoulli_llr(c: np.ndarray, n: np.ndarray, p0: np.ndarray, delta: float) -> np.ndarray:
    p0 = np.clip(p0, 1e-12, 0.5)
    p1 = p0 * (1.0 - delta)
    llr: np.ndarray = c * np.log(1.0 - delta) + (n - c) * (np.log1p(-p1) - np.log1p(-p0))
    return llr


def _poisson_llr(c: np.ndarray, x: np.ndarray, r0: np.ndarray, rise: float) -> np.ndarray:
    r1 = r0 / (1.0 + rise)
    llr: np.ndarray = -c * np.log1p(rise) - x * (r1 - r0)
    return llr


def cusum_paths(
    successes: np.ndarray,
    exposure: np.ndarray,
    usable: np.ndarray,
    *,
    kind: str,
    drop: float,
    baseline_days: int,
    min_baseline_days: int,
    phi_tau2: np.ndarray | None = None,
    phi_const: np.ndarray | None = None,
    factors: np.ndarray | None = None,
    reset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run one CUSUM over rows; returns per-day ``(S, tested, base_rate, base_per_day, phi)``.

    ``kind`` is ``"bernoulli"`` (successes of exposure trials, drop of the
    rate by ``drop``) or ``"poisson"`` (successes per unit exposure; the rate
    falls by a factor ``1 + drop``).  ``usable`` marks days that may be
    tested or enter the baseline; ``reset`` marks days after which baseline
    and statistic restart.  Arrays are ``(rows, days)``; ``phi_tau2`` is the
    extra variance ``τ²`` per row and day (``φ`` then follows each day's
    volume), ``phi_const`` a fixed ``φ`` per row and day, and ``factors`` the
    expected rate's multiplier per row and day (seasonality).  All outputs at
    day ``t`` use only days ``<= t``.
    """
    rows, days = successes.shape
    if factors is None:
        factors = np.ones_like(exposure)
    if reset is None:
        reset = np.zeros_like(usable)
    weighted = exposure * factors
    stat = np.zeros(rows)
    base_s = np.zeros(rows)
    base_x = np.zeros(rows)
    base_n = np.zeros(rows)
    S = np.zeros((rows, days))
    tested = np.zeros((rows, days), dtype=bool)
    rate = np.zeros((rows, days))
    per_day = np.zeros((rows, days))
    phi_out = np.ones((rows, days))
    for t in range(days):
        r = reset[:, t]
        if r.any():
            stat[r] = 0.0
            base_s[r] = base_x[r] = base_n[r] = 0.0
        u = usable[:, t]
        test = u & (base_n >= min_baseline_days) & (base_x > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            p0 = np.where(base_x > 0, base_s / np.where(base_x > 0, base_x, 1.0), 0.0)
            lam = np.where(base_n > 0, base_s / np.maximum(base_n, 1.0), 0.0)
        ct, nt, ft = successes[:, t], exposure[:, t], factors[:, t]
        if kind == "bernoulli":
            pt = p0 * ft
            llr = _bernoulli_llr(ct, nt, pt, drop)
            if phi_tau2 is not None:
                phi = 1.0 + nt * pt * phi_tau2[:, t] / np.maximum(1.0 - pt, 1e-12)
            else:
                phi = phi_const[:, t] if phi_const is not None else np.ones(rows)
        else:
            llr = _poisson_llr(ct, nt, p0 * ft, drop)
            phi = np.ones(rows)
        stat = np.where(test, np.maximum(0.0, stat + llr / phi), stat)
        S[:, t] = stat
        tested[:, t] = test
        rate[:, t] = p0
        per_day[:, t] = lam
        phi_out[:, t] = phi
        join = u & (base_n < baseline_days)
        base_s = base_s + np.where(join, ct, 0.0)
        base_x = base_x + np.where(join, weighted[:, t], 0.0)
        base_n = base_n + join
    return S, tested, rate, per_day, phi_out


def first_crossing(S: np.ndarray, tested: np.ndarray, h: np.ndarray | float) -> np.ndarray:
    """Per row, the first tested day whose statistic exceeds ``h`` (same shape as ``S``, or a number); -1 if none."""
    over = tested & np.greater(S, h)
    if over.shape[1] == 0:  # no days yet: nothing can have crossed (argmax of nothing is an error)
        return np.full(over.shape[0], -1)
    any_ = over.any(axis=1)
    day: np.ndarray = np.where(any_, over.argmax(axis=1), -1)
    return day
