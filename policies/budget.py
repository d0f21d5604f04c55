"""The budget guard: finance caps as invariants.

A cap is never crossed because money is *reserved* before it is committed and
a commitment is only made when the reservation fits::

    spent + reserved + new_reservation <= cap

Ad platforms may overspend a daily budget (Meta: up to 25 % on a given day),
so committing a daily budget ``B`` for ``d`` days reserves
``ceil(B * overspend) * d``.  When the platform reports what was really spent,
the reservation is released and the actual recorded (reconciliation).  As long
as the platform honours its overspend bound, ``spent <= cap`` holds at every
moment.  All amounts are integer minor units (cents).

A cap may hold per calendar month, per ISO week or over a campaign's life
(:data:`CAP_PERIODS`).  The period arithmetic is here, pure: the period that
holds a day (:func:`period_start`, :func:`period_end`), a budget window cut
at every period boundary (:func:`split_window`), so that each part is held
against its own period's cap, and the largest daily budget that fits every
cap a window touches (:func:`affordable_across`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

DEFAULT_OVERSPEND = 1.25


@dataclass(frozen=True)
class CapState:
    """Where one capped account of one campaign stands."""

    cap: int
    spent: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        for name in ("cap", "spent", "reserved"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name}: expected int minor units, got {value!r}")
            if value < 0:
                raise ValueError(f"{name}: expected >= 0, got {value}")

    @property
    def left(self) -> int:
        """What can still be reserved (never negative)."""
        return max(0, self.cap - self.spent - self.reserved)

    def fits(self, amount: int) -> bool:
        return amount <= self.left


def reservation_for(daily_budget: int, days: int = 1, overspend: float = DEFAULT_OVERSPEND) -> int:
    """The worst-case spend of a daily budget committed for ``days`` days."""
    if daily_budget < 0:
        raise ValueError(f"daily_budget: expected >= 0, got {daily_budget}")
    if days < 1:
        raise ValueError(f"days: expected >= 1, got {days}")
    if overspend < 1.0:
        raise ValueError(f"overspend: expected >= 1.0, got {overspend}")
    return math.ceil(daily_budget * overspend) * days


def affordable_daily_budget(state: CapState, wanted: int, days: int = 1, overspend: float = DEFAULT_OVERSPEND) -> int:
    """The largest daily budget ``<= wanted`` whose reservation fits what is left."""
    if wanted < 0:
        raise ValueError(f"wanted: expected >= 0, got {wanted}")
    budget = min(wanted, math.floor(state.left / days / overspend))
    # floor() of a float division can be off by one unit; step down until it fits.
    while budget > 0 and reservation_for(budget, days, overspend) > state.left:
        budget -= 1
    return max(0, budget)


def split_budget(total: int, weights: list[float] | tuple[float, ...], minimum: int = 0) -> list[int]:
    """Split ``total`` minor units by ``weights``; shares below ``minimum`` become 0.

    The result never sums to more than ``total``: each share is rounded down,
    and money freed by a paused arm is given to the others in weight order.
    """
    if total < 0:
        raise ValueError(f"total: expected >= 0, got {total}")
    if any(w < 0 for w in weights) or not weights:
        raise ValueError(f"weights: expected non-negative, non-empty, got {list(weights)}")
    active = [i for i, w in enumerate(weights) if w > 0]
    while True:
        mass = sum(weights[i] for i in active)
        if not active or mass <= 0:
            return [0] * len(weights)
        shares = [0] * len(weights)
        for i in active:
            shares[i] = math.floor(total * weights[i] / mass)
        low = [i for i in active if shares[i] < minimum]
        if not low:
            return shares
        # Pause the weakest arm that cannot reach the minimum, re-split the rest.
        active.remove(min(low, key=lambda i: weights[i]))


# -- caps per period --------------------------------------------------------------
# A cap may hold per calendar month, per ISO week (Monday first) or over the
# campaign's life.  Periods follow the ad platform's calendar day (the day a
# tick runs for), never the wall clock, so a simulation and a replay agree.
CAP_PERIODS = ("month", "week", "lifetime")


def _check_period(period: str) -> None:
    if period not in CAP_PERIODS:
        raise ValueError(f"period: expected one of {', '.join(CAP_PERIODS)}, got {period!r}")


def period_start(day: date, period: str) -> date | None:
    """The first day of the period that holds ``day``; None for ``lifetime`` (no start)."""
    _check_period(period)
    if period == "month":
        return day.replace(day=1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    return None


def period_end(day: date, period: str) -> date | None:
    """The first day of the period after the one that holds ``day`` (exclusive end); None for ``lifetime``."""
    start = period_start(day, period)
    if start is None:
        return None
    if period == "week":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def period_label(start: date | None, period: str) -> str:
    """How reports name a period: ``2026-01``, ``2026-W03``, ``lifetime``."""
    _check_period(period)
    if start is None or period == "lifetime":
        return "lifetime"
    if period == "month":
        return start.strftime("%Y-%m")
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"


def split_window(start: date, days: int, periods: Iterable[str]) -> list[tuple[date, int]]:
    """Cut ``days`` days from ``start`` at every boundary of every period in ``periods``.

    Returns consecutive ``(first_day, days)`` parts that cover the window
    exactly; each part lies inside one period of each kind.  A reservation
    is made part by part, so that each part is held against the caps of the
    periods in which its money will be spent.
    """
    if days < 1:
        raise ValueError(f"days: expected >= 1, got {days}")
    kinds = list(periods)
    for period in kinds:
        _check_period(period)
    parts: list[tuple[date, int]] = []
    day, end = start, start + timedelta(days=days)
    while day < end:
        cut = min([e for e in (period_end(day, p) for p in kinds) if e is not None] + [end])
        parts.append((day, (cut - day).days))
        day = cut
    return parts


def affordable_across(caps: Iterable[tuple[CapState, int]], wanted: int, overspend: float = DEFAULT_OVERSPEND) -> int:
    """The largest daily budget ``<= wanted`` that fits every cap a window touches.

    ``caps`` holds each cap state with the number of the window's days that
    fall in its period: a daily budget ``B`` then needs
    ``reservation_for(B, days)`` of that cap.  With no caps, ``wanted``.
    """
    budget = wanted
    for state, days in caps:
        budget = min(budget, affordable_daily_budget(state, wanted, days, overspend))
    return budget
