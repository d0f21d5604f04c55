"""The test plan: how many arms the test money can resolve, computed before launch.

A test arm costs money, and a test budget resolves only a few arms.  Before a
single variant goes live, :func:`plan_experiment` turns what is known — the parent's
rate, the cost per 1000 impressions, the daily test budget, the money left
under the cap and the longest test allowed — into the number of arms worth
launching: each arm needs enough exposure that a ``lift`` (relative, e.g. 15 %)
over another arm is found with probability ``power`` at the one-sided
``confidence`` of the stopping rule (the classic two-proportion sample size).

Over-dispersion (day-level noise on top of binomial noise, ``extra_variance``
as a variance of the daily log rate) makes every day count for less, so the
per-arm sample grows with it.

When the money cannot resolve ``lift`` with two arms but can resolve a lift
no larger than ``max_lift``, the plan settles for two arms sized for that
larger lift (``asked_lift`` keeps the one asked for): on accounts whose
variants differ by 20-40 %, a test that finds a 25 % lift is worth running,
and refusing it leaves a fatigued creative running with nothing to replace it.
A plan with fewer than two arms means the money cannot conclude a test; the
loop says so instead of spending it.  Money is integer minor units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ExperimentPlan", "plan_experiment", "sample_per_arm"]


@dataclass(frozen=True)
class ExperimentPlan:
    """What the money can buy and how many arms it resolves; ``arms < 2`` means it cannot test."""

    arms: int
    wanted_arms: int
    per_arm_impressions: int
    impressions: int  # affordable test impressions over ``days``
    days: int
    daily_budget_minor: int
    spend_minor: int  # expected spend of the whole plan
    baseline_rate: float
    cpm_minor: float
    lift: float
    power: float
    confidence: float
    resolvable_lift: float | None  # the smallest lift two arms resolve with this money (None: nothing affordable)
    reason: str
    digits: int = 2  # decimals of the money's minor unit (0 for JPY), for the lines people read
    asked_lift: float | None = None  # the lift asked for, when the plan settled for a larger one (``max_lift``)

    @property
    def can_test(self) -> bool:
        return self.arms >= 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentPlan:
        """The plan as stored on an experiment (:meth:`to_dict`)."""
        return cls(**data)

    def summary(self) -> str:
        """One line a person can read: ``3 arms x 31,000 imps (15% lift, 80% power), 9 days, 640.00``."""
        if not self.can_test:
            return self.reason
        # A plan that settled for more than was asked shows both lifts, its own to a tenth of a percent.
        asked = f"; {self.asked_lift:.0%} asked" if self.asked_lift is not None else ""
        lift = f"{self.lift:.1%}" if asked else f"{self.lift:.0%}"
        return (
            f"{self.arms} of {self.wanted_arms} arms x {self.per_arm_impressions:,} impressions "
            f"({lift} lift at {self.power:.0%} power{asked}), {self.days} day(s), "
            f"~{_major(self.spend_minor, self.digits)} of test spend"
        )


def _major(minor: int, digits: int) -> str:
    """Minor units as a readable amount: ``1,234.50`` (2 decimals), ``1,234`` (JPY)."""
    return f"{minor / 10**digits:,.{digits}f}"


def sample_per_arm(
    rate: float,
    lift: float,
    *,
    power: float = 0.8,
    confidence: float = 0.95,
    extra_variance: float = 0.0,
    days: int = 1,
) -> int:
    """Impressions per arm for a one-sided two-proportion test of ``rate`` vs ``rate·(1+lift)``.

    ``extra_variance`` (variance of a day's log rate) adds ``rate²·extra_variance/days``
    to each arm's variance of the estimated rate, spread over ``days`` of testing.
    """
    _check(rate, "rate", 0.0, 1.0)
    _check(lift, "lift", 0.0, 10.0)
    _check(power, "power", 0.0, 1.0)
    _check(confidence, "confidence", 0.5, 1.0)
    if extra_variance < 0 or not math.isfinite(extra_variance):
        raise ValueError(f"extra_variance: expected a finite number >= 0, got {extra_variance!r}")
    from scipy.special import ndtri  # the normal quantile (scipy.stats.norm.ppf is ndtri), without scipy.stats

    p1, p2 = rate, min(rate * (1.0 + lift), 1.0 - 1e-12)
    z = float(ndtri(confidence) + ndtri(power))
    delta2 = (p2 - p1) ** 2
    binomial = p1 * (1 - p1) + p2 * (1 - p2)
    dispersion = (p1 * p1 + p2 * p2) * extra_variance / max(days, 1)
    # n·delta² = z²·(binomial + n·dispersion)  ->  n = z²·binomial / (delta² − z²·dispersion)
    room = delta2 - z * z * dispersion
    if room <= 0:
        return 2**62  # day-level noise alone hides the lift within ``days``
    return math.ceil(z * z * binomial / room)


def plan_experiment(
    *,
    baseline_rate: float,
    cpm_minor: float,
    daily_budget_minor: int,
    budget_left_minor: int,
    max_days: int,
    max_arms: int,
    lift: float = 0.15,
    power: float = 0.8,
    confidence: float = 0.95,
    overspend: float = 1.25,
    extra_variance: float = 0.0,
    digits: int = 2,
    max_lift: float | None = None,
) -> ExperimentPlan:
    """How many of ``max_arms`` drafts the money can test to a conclusion (see the module doc).

    The money is what can be reserved: a day reserves ``ceil(daily·overspend)``
    (the platform may overspend) and settles at about ``daily``, so
    ``budget_left_minor`` funds ``1 + (left − reserved) // daily`` days, never
    more than ``max_days``.  ``max_lift`` (None: never) is the largest lift a
    two-arm plan may settle for when the money cannot resolve ``lift``.
    """
    # 1. check inputs
    _check(baseline_rate, "baseline_rate", 0.0, 1.0)
    if not (math.isfinite(cpm_minor) and cpm_minor > 0):
        raise ValueError(f"cpm_minor: expected a finite number > 0, got {cpm_minor!r}")
    for name, v in (("daily_budget_minor", daily_budget_minor), ("budget_left_minor", budget_left_minor)):
        if v < 0:
            raise ValueError(f"{name}: expected >= 0, got {v!r}")
    if max_days < 1 or max_arms < 1:
        raise ValueError(f"max_days, max_arms: expected >= 1, got {max_days!r}, {max_arms!r}")
    if max_lift is not None:
        _check(max_lift, "max_lift", 0.0, math.inf)  # any finite lift: plan_lift x plan_lift_tolerance reaches 25
        if max_lift < lift:
            raise ValueError(f"max_lift: expected >= lift ({lift!r}), got {max_lift!r}")
    # 2. what the money buys
    # Each day reserves daily·overspend and settles at what was spent (about the daily budget),
    # so the money left funds one reserved day plus as many spent days as fit beside it.
    per_day_reserved = math.ceil(daily_budget_minor * overspend)
    days = 0
    if 0 < per_day_reserved <= budget_left_minor:
        days = min(max_days, 1 + (budget_left_minor - per_day_reserved) // daily_budget_minor)
    spend = days * daily_budget_minor
    impressions = int(spend * 1000 / cpm_minor)
    # 3. the sample an arm needs, and how many arms fit
    n = sample_per_arm(baseline_rate, lift, power=power, confidence=confidence, extra_variance=extra_variance,
                       days=max(days, 1))  # fmt: skip
    arms = min(max_arms, impressions // n) if n > 0 else 0
    resolvable = _resolvable_lift(baseline_rate, impressions // 2, power, confidence, extra_variance, max(days, 1))
    plan = dict(
        wanted_arms=max_arms, per_arm_impressions=n, impressions=impressions, days=days,
        daily_budget_minor=daily_budget_minor, spend_minor=spend, baseline_rate=baseline_rate,
        cpm_minor=cpm_minor, lift=lift, power=power, confidence=confidence, resolvable_lift=resolvable,
        digits=digits,
    )  # fmt: skip
    if arms >= 2:
        return ExperimentPlan(arms=int(arms), reason=f"{arms} arm(s) resolvable", **plan)  # type: ignore[arg-type]
    if days > 0 and resolvable is not None and max_lift is not None and resolvable <= max_lift:
        settled = sample_per_arm(baseline_rate, resolvable, power=power, confidence=confidence,
                                 extra_variance=extra_variance, days=days)  # fmt: skip
        plan.update(per_arm_impressions=settled, lift=resolvable, asked_lift=lift)
        why = (
            f"2 arm(s) resolvable at a {resolvable:.1%} lift: {impressions:,} affordable impressions ({days} day(s)) "
            f"cannot resolve {lift:.0%}, and {resolvable:.1%} is within the {max_lift:.0%} allowed"
        )
        return ExperimentPlan(arms=2, reason=why, **plan)  # type: ignore[arg-type]
    if days == 0:
        left, daily = _major(budget_left_minor, digits), _major(daily_budget_minor, digits)
        why = f"test plan: {left} left cannot fund one day at {daily}"
    else:
        lift_txt = f"; two arms would resolve a {resolvable:.1%} lift" if resolvable is not None else ""
        if resolvable is not None and max_lift is not None:
            lift_txt += f", more than the {max_lift:.0%} allowed"
        why = (
            f"test plan: {impressions:,} affordable impressions ({days} day(s)) resolve {int(arms)} arm(s) at a "
            f"{lift:.0%} lift, {n:,} impressions each; 2 needed{lift_txt}"
        )
    return ExperimentPlan(arms=int(arms), reason=why, **plan)  # type: ignore[arg-type]


def _resolvable_lift(
    rate: float, per_arm: int, power: float, confidence: float, extra_variance: float, days: int
) -> float | None:
    """Smallest relative lift whose sample fits ``per_arm`` impressions (bisection), or None."""
    if per_arm <= 0 or rate <= 0:
        return None
    lo, hi = 1e-4, 5.0
    if sample_per_arm(rate, hi, power=power, confidence=confidence, extra_variance=extra_variance, days=days) > per_arm:
        return None
    for _ in range(60):
        mid = (lo + hi) / 2
        n = sample_per_arm(rate, mid, power=power, confidence=confidence, extra_variance=extra_variance, days=days)
        lo, hi = (mid, hi) if n > per_arm else (lo, mid)
    return math.ceil(hi * 1e4) / 1e4  # rounded up: the lift stays resolvable


def _check(value: float, name: str, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if not lo < value < hi:
        raise ValueError(f"{name}: expected a number in ({lo}, {hi}), got {value!r}")
