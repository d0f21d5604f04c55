"""What a bandit optimises, and how raw platform counts become posterior counts.

Every allocation policy works on *successes* and *exposure* per arm:

=================  =============  ==================  ====================
objective          successes      exposure            posterior
=================  =============  ==================  ====================
``ctr``            clicks         impressions         Beta (higher better)
``conversion_rate``  conversions  clicks              Beta (higher better)
``cpa``            conversions    spend               Gamma rate per unit of
                                                      spend; CPA = 1 / rate,
                                                      so a higher rate is a
                                                      lower (better) CPA
=================  =============  ==================  ====================

Conversions arrive late (attribution windows): a day's conversions keep
growing for several days.  :func:`mature` turns daily series into totals
that do not count the not-yet-reported conversions of recent days as
failures, either by dropping immature days or by discounting their exposure
by the fraction of conversions already reported (``delay_cdf``).

:func:`prior_from_parent` turns the parent creative's history into a
shrunk prior for its variants.

Real daily rates vary more than binomial noise (a day's audience, placement
and auction differ): :func:`effective_counts` shrinks each arm's counts to the
binomial sample with the same variance of its estimated rate, so that a
Beta posterior is not more certain than the data allow.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["OBJECTIVES", "counts", "effective_counts", "family", "mature", "prior_from_parent"]

OBJECTIVES = ("ctr", "conversion_rate", "cpa")


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def family(objective: str) -> str:
    """Posterior family of an objective: ``"beta"`` or ``"gamma"``."""
    return "gamma" if check_objective(objective) == "cpa" else "beta"


def counts(
    objective: str,
    *,
    impressions: npt.ArrayLike | None = None,
    clicks: npt.ArrayLike | None = None,
    conversions: npt.ArrayLike | None = None,
    spend: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(successes, exposure)`` for ``objective`` from the platform's counts.

    Only the counts the objective needs are required (see the module table).
    """
    need = {
        "ctr": (("clicks", clicks), ("impressions", impressions)),
        "conversion_rate": (("conversions", conversions), ("clicks", clicks)),
        "cpa": (("conversions", conversions), ("spend", spend)),
    }[check_objective(objective)]
    out = []
    for name, value in need:
        if value is None:
            raise ValueError(f"{name}: expected an array for objective {objective!r}, got None")
        arr = np.asarray(value, dtype=float)
        if np.any(arr < 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: expected finite non-negative counts, got {value!r}")
        out.append(arr)
    return out[0], out[1]


def mature(
    daily_successes: npt.ArrayLike,
    daily_exposure: npt.ArrayLike,
    *,
    attribution_days: int | None = None,
    delay_cdf: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Totals over days (axis ``-2``, oldest first) that respect late conversions.

    Arrays are ``(days, arms)`` or ``(experiments, days, arms)``; the last
    day is today (age 0).

    - ``attribution_days=N``: the last ``N`` days are immature and dropped
      from both successes and exposure.
    - ``delay_cdf=[F0, F1, ...]``: ``F_k`` is the fraction of a day's
      conversions reported by age ``k`` (ages past the end count as 1).  All
      reported successes are kept and each day's exposure is weighted by
      ``F_age``, so an immature day is a partial trial, never a failure.

    With neither, the plain sums are returned.
    """
    s = np.asarray(daily_successes, dtype=float)
    x = np.asarray(daily_exposure, dtype=float)
    if s.shape != x.shape or s.ndim not in (2, 3):
        raise ValueError(
            "daily arrays: expected equal shapes (days, arms) or (experiments, days, arms), "
            f"got {s.shape} and {x.shape}"
        )
    if attribution_days is not None and delay_cdf is not None:
        raise ValueError("expected attribution_days or delay_cdf, got both")
    days = s.shape[-2]
    if attribution_days is not None:
        if int(attribution_days) != attribution_days or attribution_days < 0:
            raise ValueError(f"attribution_days: expected an integer >= 0, got {attribution_days!r}")
        keep = max(0, days - int(attribution_days))
        return s[..., :keep, :].sum(axis=-2), x[..., :keep, :].sum(axis=-2)
    if delay_cdf is not None:
        cdf = np.asarray(delay_cdf, dtype=float)
        if cdf.ndim != 1 or np.any(cdf < 0) or np.any(cdf > 1) or np.any(np.diff(cdf) < 0):
            raise ValueError(f"delay_cdf: expected a non-decreasing 1-D array in [0, 1], got {delay_cdf!r}")
        age = np.arange(days)[::-1]
        weight = np.where(age < cdf.size, cdf[np.minimum(age, max(cdf.size - 1, 0))], 1.0)
        return s.sum(axis=-2), (x * weight[:, None]).sum(axis=-2)
    return s.sum(axis=-2), x.sum(axis=-2)


def prior_from_parent(
    successes: float,
    exposure: float,
    *,
    objective: str = "ctr",
    relative_sd: float = 0.25,
) -> tuple[float, float]:
    """A shrunk prior ``(alpha, beta)`` for a variant from its parent's history.

    The prior is centred on the parent's rate but only as confident as the
    spread of variants around their parent: its relative standard deviation
    is ``relative_sd`` (0.25 matches a log-normal lift with sigma 0.25), and
    never more confident than the parent's own data.  A variant therefore
    needs its own data before it can be judged, while a clearly worse variant
    is not given the benefit of a flat prior.
    """
    fam = family(objective)
    if not (np.isfinite(relative_sd) and relative_sd > 0):
        raise ValueError(f"relative_sd: expected a positive number, got {relative_sd!r}")
    if not (np.isfinite(successes) and np.isfinite(exposure)) or successes < 0 or exposure <= 0:
        raise ValueError(f"parent history: expected successes >= 0 and exposure > 0, got {successes!r}, {exposure!r}")
    if fam == "beta" and successes > exposure:
        raise ValueError(f"parent history: expected successes <= exposure, got {successes!r} > {exposure!r}")
    rate = (successes + 0.5) / (exposure + 1.0) if fam == "beta" else (successes + 0.5) / exposure
    if fam == "beta":
        # Beta(m p, m (1-p)) has relative sd sqrt((1-p) / (p (m+1))).
        m = (1.0 - rate) / (rate * relative_sd**2) - 1.0
        m = float(np.clip(m, 2.0, exposure + 1.0))
        return m * rate, m * (1.0 - rate)
    # Gamma(k, k / rate) has relative sd 1 / sqrt(k).
    k = float(np.clip(1.0 / relative_sd**2, 1.0, successes + 0.5))
    return k, k / rate


def effective_counts(
    successes: np.ndarray, exposure: np.ndarray, days: np.ndarray, extra_variance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Counts shrunk to the binomial sample with the same variance, under day-level over-dispersion.

    With ``extra_variance`` τ² (variance of a day's log rate beyond binomial
    noise) and an arm seen on ``days`` days, its rate estimate has variance
    ``p(1−p)/n + p²τ²/days``; the binomial sample with that variance is
    ``n_eff = n / (1 + n·p·τ²/((1−p)·days))``.  Successes and exposure are both
    scaled by ``n_eff/n``, so the rate is unchanged and only the certainty drops.
    Arrays are shaped ``(arms,)`` or ``(experiments, arms)``; τ² = 0 returns the counts.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(exposure, dtype=float)
    d = np.maximum(np.asarray(days, dtype=float), 1.0)
    if not (np.isfinite(extra_variance) and extra_variance >= 0):
        raise ValueError(f"extra_variance: expected a finite number >= 0, got {extra_variance!r}")
    if s.shape != n.shape or np.broadcast_shapes(d.shape, n.shape) != n.shape:
        raise ValueError(f"successes, exposure, days: expected equal shapes, got {s.shape}, {n.shape}, {d.shape}")
    if extra_variance == 0:
        return s, n
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.clip(np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0), 1e-6, 0.5)
    factor = 1.0 / (1.0 + n * p * extra_variance / ((1.0 - p) * d))
    return s * factor, n * factor
