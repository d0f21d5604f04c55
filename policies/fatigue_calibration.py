"""Calibration of the fatigue CUSUM's thresholds, and the generator of :mod:`policies._fatigue_table`.

The false-alarm rate of a CUSUM with an *estimated* baseline depends on the
expected clicks per day ``λ`` and on the baseline length, so the detector
(:mod:`policies.fatigue`) reads its threshold ``h`` from a table,
``THRESHOLDS[delta][λ]``.  This module computes that table by simulating
stable binomial series: for each relative drop ``delta`` and each ``λ`` of
:data:`CALIBRATION_LAMBDAS`, the smallest ``h`` giving at most
``CALIBRATION_SAFETY × TARGET_FALSE_ALARM_RATE`` false alarms per monitored
ad-day (:func:`calibrate_threshold`), for the default baseline settings.
:func:`format_table` writes the table as the source of
:mod:`policies._fatigue_table`; ``bench/policies.py --calibrate`` runs both.

For other ``baseline_days`` / ``min_baseline_days`` than the table's, pass
``threshold=`` to :func:`policies.fatigue.detect`, e.g. from
:func:`calibrate_threshold`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policies._fatigue_table import BASELINE_DAYS, DELTAS, MIN_BASELINE_DAYS, TARGET_FALSE_ALARM_RATE
from policies.cusum import cusum_paths, first_crossing

__all__ = [
    "CALIBRATION_LAMBDAS",
    "CALIBRATION_SAFETY",
    "calibrate_threshold",
    "calibration_table",
    "false_alarm_rate",
    "format_table",
]

# The table is calibrated below the target so that fresh simulations, and
# volumes between the table's grid points, still stay within it.
CALIBRATION_SAFETY = 0.8
# Expected clicks per day at which the table is calibrated (dense where the
# threshold bends, so log-linear interpolation between points stays close).
CALIBRATION_LAMBDAS = (
    1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0,
    150.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0,
)  # fmt: skip


def false_alarm_rate(S: np.ndarray, tested: np.ndarray, h: float) -> tuple[float, int, int]:
    """Alarms per monitored day at constant threshold ``h``: ``(rate, alarms, days)``.

    A series is monitored from its first tested day up to its alarm (it
    would be replaced then) or its end.
    """
    day = first_crossing(S, tested, h)
    cum = np.cumsum(tested, axis=1)
    end = np.where(day >= 0, day, S.shape[1] - 1)
    monitored = cum[np.arange(S.shape[0]), end]
    alarms = int((day >= 0).sum())
    total = int(monitored.sum())
    return alarms / max(total, 1), alarms, total


def calibrate_threshold(
    expected_clicks: float,
    rng: np.random.Generator,
    *,
    delta: float = 0.15,
    series: int = 4000,
    days: int = 60,
    impressions: int = 20_000,
    target_rate: float = TARGET_FALSE_ALARM_RATE,
    baseline_days: int = BASELINE_DAYS,
    min_baseline_days: int = MIN_BASELINE_DAYS,
) -> float:
    """Threshold giving ``target_rate`` false alarms per monitored ad-day on stable series.

    Simulates ``series`` binomial series of ``days`` days with
    ``impressions`` per day and CTR ``expected_clicks / impressions``, and
    returns the smallest ``h`` at which the rate is at most ``target_rate``.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    p = float(expected_clicks) / impressions
    if not (0 < p < 1):
        raise ValueError(f"expected_clicks: expected a number in (0, impressions), got {expected_clicks!r}")
    n = np.full((series, days), float(impressions))
    c = rng.binomial(impressions, p, size=(series, days)).astype(float)
    S, tested, *_ = cusum_paths(
        c,
        n,
        np.ones((series, days), dtype=bool),
        kind="bernoulli",
        drop=delta,
        baseline_days=baseline_days,
        min_baseline_days=min_baseline_days,
    )
    # The path does not depend on h: bisect on h over the observed maxima.
    lo, hi = 0.0, float(S.max()) + 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if false_alarm_rate(S, tested, mid)[0] > target_rate:
            lo = mid
        else:
            hi = mid
    return hi


def calibration_table(
    rng: np.random.Generator,
    *,
    deltas: Sequence[float] = DELTAS,
    lambdas: Sequence[float] = CALIBRATION_LAMBDAS,
    series: int = 8000,
    days: int = 60,
    target_rate: float = CALIBRATION_SAFETY * TARGET_FALSE_ALARM_RATE,
) -> dict[float, tuple[float, ...]]:
    """The table of :mod:`policies._fatigue_table`: ``{delta: (h per λ, ...)}``."""
    table = {}
    for d in deltas:
        hs = [
            calibrate_threshold(
                lam,
                rng,
                delta=d,
                series=series,
                days=days,
                impressions=max(20_000, int(40 * lam)),
                target_rate=target_rate,
            )
            for lam in lambdas
        ]
        table[float(d)] = tuple(round(h, 3) for h in hs)
    return table


def format_table(
    table: dict[float, tuple[float, ...]], *, series: int, seed: int, lambdas: Sequence[float] = CALIBRATION_LAMBDAS
) -> str:
    """Source text of :mod:`policies._fatigue_table` for ``table``."""
    rows = "\n".join(f"    {d!r}: {tuple(hs)!r}," for d, hs in table.items())
    return f'''"""Calibrated CUSUM thresholds for :mod:`policies.fatigue` (generated, do not edit).

Regenerate with ``.venv/bin/python bench/policies.py --calibrate``: for each
relative drop ``delta`` and expected clicks per day ``λ``, the smallest ``h``
giving at most {CALIBRATION_SAFETY:g} x {TARGET_FALSE_ALARM_RATE:g} false alarms per monitored ad-day (a margin
for simulation noise and interpolation) on {series} stable
binomial series of 60 days (seed {seed}), baseline {BASELINE_DAYS} days, testing from day
{MIN_BASELINE_DAYS}.  See :func:`policies.fatigue_calibration.calibrate_threshold`.
"""

TARGET_FALSE_ALARM_RATE = {TARGET_FALSE_ALARM_RATE!r}
BASELINE_DAYS = {BASELINE_DAYS!r}
MIN_BASELINE_DAYS = {MIN_BASELINE_DAYS!r}
DELTAS = {tuple(table)!r}
LAMBDAS = {tuple(float(v) for v in lambdas)!r}
THRESHOLDS = {{
{rows}
}}
'''
