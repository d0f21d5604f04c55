"""Batched multi-armed bandits that split a test budget among creative variants.

Every policy has the same four methods, vectorised over ``(experiments, arms)``
(a 1-D ``(arms,)`` array is one experiment):

- ``allocate(clicks, impressions, rng)`` -> weights, rows summing to 1: the
  share of tomorrow's test impressions per arm;
- ``prob_best(clicks, impressions, rng=None, draws=10_000)`` -> P(arm is best)
  under the Beta posterior (numerical integration, error <= 1e-6; Monte Carlo
  with ``draws`` samples only where the integration cannot certify itself);
- ``decide(clicks, impressions, rng=None)`` -> :class:`Decision` for one
  experiment;
- ``best_so_far(clicks, impressions)`` -> the arm with the highest posterior
  mean, for experiments that end without a confident winner.

``clicks`` and ``impressions`` are *successes* and *exposure* of the policy's
objective (see :mod:`policies.objectives`): clicks/impressions for ``ctr``,
conversions/clicks for ``conversion_rate``, conversions/spend for ``cpa``.
Always pass *delivered* counts, never the split that was requested.

Common rules (all policies):

- **burn-in**: while any arm of an experiment has fewer than
  ``burn_in_impressions`` of exposure, or fewer than ``burn_in_clicks``
  *expected* successes (its exposure times the experiment's pooled rate, so
  the burn-in means the same evidence at a 0.5 % and a 3 % CTR), the split is
  equal;
- **elimination** (``active=``): arms that are out of the test get nothing
  and count for nothing; :meth:`AllocationPolicy.eliminate` names the arms to
  take out: after burn-in, an arm whose P(best) is below
  ``eliminate_below``, or whose ``elimination_level`` upper credible bound is
  below the leader's lower one.  :class:`Uniform`, the classic A/B/n split,
  never eliminates;
- **floor**: every arm still in the test gets at least ``floor`` (the split
  is mixed with the uniform one over the active arms, ``w' = floor + (1 -
  K·floor)·w``, so rows still sum to 1; a floor above ``1/K`` becomes
  ``1/K``): the floor protects contenders, not eliminated arms;
- **stopping** (:meth:`AllocationPolicy.decide`): a winner is declared when
  the leader's P(best) >= ``target``, or, if ``loss_threshold`` is set, when
  the expected loss of choosing the leader (in objective units, e.g. CTR) is
  below it, or if ``relative_loss_threshold`` is set, when that loss is
  below this share of the leader's posterior mean (a 1 % threshold ends a
  test whose remaining arms are practically equal) — in each case only once
  the leader *and the runner-up* each have at least ``min_impressions`` of
  exposure (the runner-up is the arm
  that could still overturn the decision; the others are clearly behind).
  ``decide(..., budget_exhausted=True)`` ends an undecided experiment with
  the best arm so far and says so in ``reason`` and ``budget_exhausted``.

Registry: :func:`get_policy` with the names in :data:`POLICY_NAMES`.

``DiscountedThompson`` and every other policy accept per-day history through
the keywords ``daily_clicks=`` / ``daily_impressions=`` (arrays ``(days,
arms)`` or ``(experiments, days, arms)``, oldest first); the discounted policy
weighs a day of age ``k`` by ``discount**k``, the others simply sum the days.
When daily history is given, ``clicks`` and ``impressions`` may be ``None``
and are ignored.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from policies import objectives as _obj
from policies.posterior import (
    integrate_prob_best,
    monte_carlo_prob_best,
    posterior_moments,
)

__all__ = [
    "POLICY_NAMES",
    "AllocationPolicy",
    "Decision",
    "DiscountedThompson",
    "EpsilonGreedy",
    "ThompsonSampling",
    "TopTwoThompson",
    "UCB1",
    "Uniform",
    "get_policy",
    "policy_class",
]

PROB_BEST_TOL = 1e-7


@dataclass(frozen=True)
class Decision:
    """The verdict on one experiment.

    ``winner`` is an arm index or ``None``; ``reason`` is ``"prob_best"``,
    ``"expected_loss"``, ``"budget exhausted: ..."`` or ``"undecided: ..."``
    followed by the figures that led there.  When ``budget_exhausted`` is
    true the winner is only the best arm so far, not a confident one.
    """

    winner: int | None
    prob_best: np.ndarray
    expected_loss: np.ndarray
    reason: str
    budget_exhausted: bool = False
    leader: int = 0
    runner_up: int | None = None
    method: str = "integration"  # or "monte_carlo"
    error: float = 0.0  # certified bound of the integration (nan for Monte Carlo)


# -- argument checks ---------------------------------------------------------


@overload
def _check_number(
    name: str,
    value: object,
    *,
    lo: float | None = ...,
    hi: float | None = ...,
    lo_open: bool = ...,
    allow_none: Literal[False] = ...,
) -> float: ...
@overload
def _check_number(
    name: str,
    value: object,
    *,
    lo: float | None = ...,
    hi: float | None = ...,
    lo_open: bool = ...,
    allow_none: Literal[True],
) -> float | None: ...
def _check_number(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        op = ">" if lo_open else ">="
        raise ValueError(f"{name}: expected a number {op} {lo}, got {value!r}")
    if hi is not None and v > hi:
        raise ValueError(f"{name}: expected a number <= {hi}, got {value!r}")
    return v


def _check_rng(rng: object, *, allow_none: bool) -> np.random.Generator | None:
    if rng is None and allow_none:
        return None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_prior(name: str, value: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 2 or np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}: expected positive finite number(s), got {value!r}")
    return arr


class AllocationPolicy(ABC):
    """Base class: posterior bookkeeping, floor, burn-in and stopping.

    Subclasses implement :meth:`_weights`, the split before burn-in and floor.
    """

    name: str = ""

    def __init__(
        self,
        prior_alpha: npt.ArrayLike = 1.0,
        prior_beta: npt.ArrayLike = 1.0,
        *,
        floor: float = 0.02,
        burn_in_impressions: float = 1000,
        target: float = 0.95,
        min_impressions: float = 2000,
        loss_threshold: float | None = None,
        relative_loss_threshold: float | None = None,
        burn_in_clicks: float = 0.0,
        eliminate_below: float | None = None,
        elimination_level: float = 0.99,
        objective: str = "ctr",
    ) -> None:
        self.prior_alpha = _check_prior("prior_alpha", prior_alpha)
        self.prior_beta = _check_prior("prior_beta", prior_beta)
        self.floor = _check_number("floor", floor, lo=0.0, hi=1.0)
        self.burn_in_impressions = _check_number("burn_in_impressions", burn_in_impressions, lo=0.0)
        self.target = _check_number("target", target, lo=0.5, hi=1.0)
        self.min_impressions = _check_number("min_impressions", min_impressions, lo=0.0)
        self.loss_threshold = _check_number("loss_threshold", loss_threshold, lo=0.0, lo_open=True, allow_none=True)
        self.relative_loss_threshold = _check_number(
            "relative_loss_threshold", relative_loss_threshold, lo=0.0, hi=1.0, lo_open=True, allow_none=True
        )
        self.burn_in_clicks = _check_number("burn_in_clicks", burn_in_clicks, lo=0.0)
        self.eliminate_below = _check_number("eliminate_below", eliminate_below, lo=0.0, hi=0.5, allow_none=True)
        self.elimination_level = _check_number("elimination_level", elimination_level, lo=0.5, hi=1.0, lo_open=True)
        self.objective = _obj.check_objective(objective)
        self.family = _obj.family(objective)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(objective={self.objective!r}, floor={self.floor})"

    # -- counts ----------------------------------------------------------------

    def _counts(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        daily_clicks: npt.ArrayLike | None = None,
        daily_impressions: npt.ArrayLike | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Validated ``(successes, exposure, raw_exposure, was_1d)`` as 2-D floats."""
        if daily_clicks is not None or daily_impressions is not None:
            if daily_clicks is None or daily_impressions is None:
                raise ValueError("daily history: expected both daily_clicks and daily_impressions, got one")
            dc = np.asarray(daily_clicks, dtype=float)
            di = np.asarray(daily_impressions, dtype=float)
            if dc.shape != di.shape or dc.ndim not in (2, 3) or dc.shape[-2] == 0:
                raise ValueError(
                    "daily history: expected equal shapes (days, arms) or (experiments, days, arms) "
                    f"with at least one day, got {dc.shape} and {di.shape}"
                )
            self._check_values(dc, di, "daily_clicks", "daily_impressions")
            was_1d = dc.ndim == 2
            if was_1d:
                dc, di = dc[None], di[None]
            s, x = self._combine_days(dc, di)
            raw = di.sum(axis=1)
            return s, x, raw, was_1d
        if clicks is None or impressions is None:
            raise ValueError("clicks, impressions: expected arrays, got None")
        c = np.asarray(clicks, dtype=float)
        n = np.asarray(impressions, dtype=float)
        if c.shape != n.shape:
            raise ValueError(f"clicks, impressions: expected equal shapes, got {c.shape} and {n.shape}")
        if c.ndim not in (1, 2) or c.shape[-1] == 0:
            raise ValueError(f"clicks: expected shape (arms,) or (experiments, arms), got {c.shape}")
        self._check_values(c, n, "clicks", "impressions")
        was_1d = c.ndim == 1
        c2, n2 = np.atleast_2d(c), np.atleast_2d(n)
        return c2, n2, n2, was_1d

    def _check_values(self, c: np.ndarray, n: np.ndarray, cname: str, nname: str) -> None:
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(n))):
            raise ValueError(f"{cname}, {nname}: expected finite counts, got nan or inf")
        if np.any(c < 0) or np.any(n < 0):
            raise ValueError(f"{cname}, {nname}: expected non-negative counts, got a negative value")
        if self.family == "beta" and np.any(c > n):
            i = tuple(int(v) for v in np.argwhere(c > n)[0])
            raise ValueError(f"{cname}: expected at most {nname} per arm, got {c[i]:g} > {n[i]:g} at {i}")

    def _combine_days(self, dc: np.ndarray, di: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dc.sum(axis=1), di.sum(axis=1)

    def _posterior(
        self, s: np.ndarray, x: np.ndarray, prior: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        pa, pb = prior if prior is not None else (self.prior_alpha, self.prior_beta)
        try:
            a = np.broadcast_to(pa, s.shape) + s
            b = np.broadcast_to(pb, s.shape)
        except ValueError:
            raise ValueError(
                f"prior_alpha, prior_beta: expected shapes broadcastable to {s.shape}, "
                f"got {np.shape(pa)} and {np.shape(pb)}"
            ) from None
        b = b + (x - s if self.family == "beta" else x)
        return a, b

    def _prior_for(self, rows: np.ndarray, idx: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The priors restricted to experiments ``rows`` and arms ``idx`` (priors may be per arm or per cell)."""

        def narrow(prior: np.ndarray) -> np.ndarray:
            if prior.ndim == 0:
                return prior
            p2 = prior[None] if prior.ndim == 1 else prior
            if p2.shape[0] == n_rows and n_rows > 1:
                p2 = p2[rows]
            return p2[:, idx] if p2.shape[1] > 1 else p2

        return narrow(self.prior_alpha), narrow(self.prior_beta)

    # -- probabilities -----------------------------------------------------------

    def _summary(
        self,
        s: np.ndarray,
        x: np.ndarray,
        rng: np.random.Generator | None,
        draws: int,
        active: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """(prob_best, expected_loss, method, error) for 2-D successes/exposure.

        ``active`` (a boolean mask like ``s``) leaves arms out of the contest:
        their P(best) is 0 and their loss is measured against the best active arm.
        """
        if active is None or active.all():
            a, b = self._posterior(s, x)
            return self._summary_ab(a, b, rng, draws)
        prob, loss = np.zeros(s.shape), np.zeros(s.shape)
        error, method = np.zeros(s.shape[0]), "integration"
        mean = posterior_moments(self.family, *self._posterior(s, x))[0]
        for row in range(s.shape[0]):
            idx = np.flatnonzero(active[row])
            prior = self._prior_for(np.array([row]), idx, s.shape[0])
            a, b = self._posterior(s[row, idx][None], x[row, idx][None], prior)
            p, lo, m, e = self._summary_ab(a, b, rng, draws)
            prob[row, idx], loss[row, idx], error[row] = p[0], lo[0], e[0]
            method = m if m != "integration" else method
            out = ~active[row]
            loss[row, out] = np.maximum(np.max(mean[row, idx] + lo[0]) - mean[row, out], 0.0)
        return prob, loss, method, error

    def _summary_ab(
        self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None, draws: int
    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        res = integrate_prob_best(self.family, a, b, tol=PROB_BEST_TOL)
        prob, e_max = res.prob_best.copy(), res.expected_max.copy()
        error = res.error.copy()
        method = "integration"
        bad = ~res.ok | ~np.all(np.isfinite(prob), axis=1)
        if bad.any():
            draws = int(_check_number("draws", draws, lo=1))
            gen = rng if rng is not None else np.random.default_rng(0)
            p_mc, m_mc = monte_carlo_prob_best(self.family, a[bad], b[bad], gen, draws)
            prob[bad], e_max[bad], error[bad] = p_mc, m_mc, np.nan
            method = "monte_carlo"
        mean = posterior_moments(self.family, a, b)[0]
        loss = np.maximum(e_max[:, None] - mean, 0.0)
        return prob, loss, method, error

    def _active(self, active: npt.ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray | None:
        """The validated mask of arms still in the test (all of them when ``None``)."""
        if active is None:
            return None
        m = np.asarray(active, dtype=bool)
        m2 = np.broadcast_to(m if m.ndim == 2 else m[None], shape) if m.shape[-1:] == shape[-1:] else None
        if m2 is None or m.ndim > 2:
            raise ValueError(f"active: expected a boolean mask shaped like the counts {shape}, got {m.shape}")
        if not m2.any(axis=1).all():
            raise ValueError("active: expected at least one active arm per experiment, got none")
        return np.array(m2)

    def prob_best(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        rng: np.random.Generator | None = None,
        draws: int = 10_000,
        *,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> np.ndarray:
        """P(each arm has the highest rate), same shape as ``clicks``; 0 for inactive arms."""
        _check_rng(rng, allow_none=True)
        s, x, _, was_1d = self._counts(clicks, impressions, **daily)
        prob = self._summary(s, x, rng, draws, self._active(active, s.shape))[0]
        return prob[0] if was_1d else prob

    def expected_loss(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        rng: np.random.Generator | None = None,
        draws: int = 10_000,
        *,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> np.ndarray:
        """E[max_j θ_j − θ_i] over the active arms j: the rate given up by choosing arm i."""
        _check_rng(rng, allow_none=True)
        s, x, _, was_1d = self._counts(clicks, impressions, **daily)
        loss = self._summary(s, x, rng, draws, self._active(active, s.shape))[1]
        return loss[0] if was_1d else loss

    # -- allocation ----------------------------------------------------------------

    #: Whether :meth:`eliminate` may take arms out (a classic A/B/n split never does).
    eliminates: bool = True

    @abstractmethod
    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        """Split before burn-in and floor, rows summing to 1, shape of ``s``."""

    def _burning_in(self, s: np.ndarray, raw: np.ndarray, on: np.ndarray) -> np.ndarray:
        """Per experiment: is any active arm still short of the burn-in (exposure or expected successes)?"""
        short: np.ndarray = np.any(on & (raw < self.burn_in_impressions), axis=1)
        if self.burn_in_clicks > 0:
            pooled = s.sum(axis=1, keepdims=True) / np.maximum(raw.sum(axis=1, keepdims=True), 1e-12)
            short |= np.any(on & (raw * pooled < self.burn_in_clicks), axis=1) | (s.sum(axis=1) == 0)
        return short

    def allocate(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        rng: np.random.Generator,
        *,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> np.ndarray:
        """Share of the next batch per arm; rows sum to 1, active arms respect the floor, others get 0."""
        _check_rng(rng, allow_none=False)
        s, x, raw, was_1d = self._counts(clicks, impressions, **daily)
        mask = self._active(active, s.shape)
        on = np.ones(s.shape, dtype=bool) if mask is None else mask
        k = on.sum(axis=1, keepdims=True).astype(float)
        weights = on / k
        busy = ~self._burning_in(s, raw, on) & (k[:, 0] > 1)
        for rows in _groups(on, busy):
            sub = on[rows[0]]
            ss, xx = s[np.ix_(rows, sub)], x[np.ix_(rows, sub)]
            a, b = self._posterior(ss, xx, self._prior_for(rows, np.flatnonzero(sub), s.shape[0]))
            w = self._weights(ss, xx, a, b, rng)
            w = np.clip(w, 0.0, None)
            weights[np.ix_(rows, sub)] = w / w.sum(axis=1, keepdims=True)
        floor = np.minimum(self.floor, 1.0 / k)
        weights = np.where(on, floor + (1.0 - k * floor) * weights, 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        return weights[0] if was_1d else weights

    def eliminate(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        rng: np.random.Generator | None = None,
        *,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> np.ndarray:
        """Arms to take out of the test now (a boolean mask like ``clicks``; already inactive arms stay out).

        Nothing is eliminated during burn-in, when ``eliminate_below`` is ``None``,
        for a policy that never eliminates, or below two active arms.
        """
        _check_rng(rng, allow_none=True)
        s, x, raw, was_1d = self._counts(clicks, impressions, **daily)
        mask = self._active(active, s.shape)
        on = np.ones(s.shape, dtype=bool) if mask is None else mask
        out = np.zeros(s.shape, dtype=bool)
        if self.eliminates and self.eliminate_below is not None:
            prob = self._summary(s, x, rng, 10_000, None if mask is None else on)[0]
            a, b = self._posterior(s, x)
            lo, hi = _credible_bounds(self.family, a, b, self.elimination_level)
            leader = np.argmax(np.where(on, prob, -1.0), axis=1)
            leader_lo = lo[np.arange(s.shape[0]), leader][:, None]
            out = on & ((prob < self.eliminate_below) | (hi < leader_lo))
            out[np.arange(s.shape[0]), leader] = False
            ready = ~self._burning_in(s, raw, on) & (on.sum(axis=1) > 1)
            out &= ready[:, None]
            # Never leave fewer than two arms (a test of one arm decides nothing): the strongest of
            # the arms to go stays in.
            for row in np.flatnonzero((on & ~out).sum(axis=1) < 2):
                spare = np.flatnonzero(out[row])
                need = 2 - int((on[row] & ~out[row]).sum())
                out[row, spare[np.argsort(-prob[row, spare], kind="stable")[:need]]] = False
        return out[0] if was_1d else out

    # -- stopping ----------------------------------------------------------------------

    def best_so_far(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        *,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> int:
        """Arm with the highest posterior mean among the active ones (ties: lowest index), one experiment."""
        s, x, _, was_1d = self._counts(clicks, impressions, **daily)
        if not was_1d:
            raise ValueError(f"clicks: expected shape (arms,) for one experiment, got {s.shape}")
        mask = self._active(active, s.shape)
        a, b = self._posterior(s, x)
        mean = posterior_moments(self.family, a, b)[0][0]
        if mask is not None:
            mean = np.where(mask[0], mean, -np.inf)
        return int(np.argmax(mean))

    def decide(
        self,
        clicks: npt.ArrayLike | None,
        impressions: npt.ArrayLike | None,
        rng: np.random.Generator | None = None,
        *,
        budget_exhausted: bool = False,
        active: npt.ArrayLike | None = None,
        **daily: npt.ArrayLike | None,
    ) -> Decision:
        """Winner of one experiment, or ``None`` with the reason it is undecided."""
        _check_rng(rng, allow_none=True)
        s, x, raw, was_1d = self._counts(clicks, impressions, **daily)
        if not was_1d:
            raise ValueError(f"clicks: expected shape (arms,) for one experiment, got {s.shape}")
        mask = self._active(active, s.shape)
        on = np.ones(s.shape[1], dtype=bool) if mask is None else mask[0]
        prob, loss, method, error = self._summary(s, x, rng, 10_000, mask)
        prob, loss, raw = prob[0], loss[0], raw[0]
        a, b = self._posterior(s, x)
        mean = posterior_moments(self.family, a, b)[0][0]
        order = [int(i) for i in np.lexsort((-mean, -prob)) if on[i]]  # P(best) first, posterior mean breaks ties
        leader = order[0]
        runner = order[1] if len(order) > 1 else None
        checked = [leader] if runner is None else [leader, runner]
        short = [i for i in checked if raw[i] < self.min_impressions]
        unit = {"ctr": "impressions", "conversion_rate": "clicks", "cpa": "spend"}[self.objective]
        common = dict(
            prob_best=prob,
            expected_loss=loss,
            leader=leader,
            runner_up=runner,
            method=method,
            error=float(error[0]),
        )
        if not short and prob[leader] >= self.target:
            reason = f"prob_best: arm {leader} has P(best)={prob[leader]:.4f} >= {self.target}"
            return Decision(winner=leader, reason=reason, **common)
        if not short and self.loss_threshold is not None and loss[leader] < self.loss_threshold:
            reason = (
                f"expected_loss: arm {leader} loses {loss[leader]:.3g} in expectation "
                f"< {self.loss_threshold:.3g} (P(best)={prob[leader]:.4f})"
            )
            return Decision(winner=leader, reason=reason, **common)
        rel = self.relative_loss_threshold
        if not short and rel is not None and mean[leader] > 0 and loss[leader] < rel * mean[leader]:
            reason = (
                f"expected_loss: arm {leader} loses {loss[leader] / mean[leader]:.2%} of its rate in expectation "
                f"< {rel:.2%} (P(best)={prob[leader]:.4f})"
            )
            return Decision(winner=leader, reason=reason, **common)
        if short:
            why = "; ".join(f"arm {i} has {raw[i]:g} < {self.min_impressions:g} {unit}" for i in short)
        else:
            why = f"best P(best)={prob[leader]:.4f} (arm {leader}) < {self.target}"
        if budget_exhausted:
            best = int(np.argmax(np.where(on, mean, -np.inf)))
            reason = f"budget exhausted: best so far is arm {best}, not confident ({why})"
            return Decision(winner=best, reason=reason, budget_exhausted=True, **common)
        return Decision(winner=None, reason=f"undecided: {why}", **common)


def _groups(on: np.ndarray, rows_wanted: np.ndarray) -> list[np.ndarray]:
    """Rows of ``rows_wanted`` grouped by identical active-arm masks (vectorised per group)."""
    groups: dict[bytes, list[int]] = {}
    for r in np.flatnonzero(rows_wanted):
        groups.setdefault(on[r].tobytes(), []).append(int(r))
    return [np.array(g) for g in groups.values()]


def _credible_bounds(family: str, a: np.ndarray, b: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``level`` credible interval of each arm's rate.

    The functions ``scipy.stats.beta.ppf`` and ``scipy.stats.gamma.ppf`` evaluate (bit for bit, for
    the positive parameters a posterior has), without importing scipy.stats (about a second).
    """
    tail = (1.0 - level) / 2.0
    if family == "beta":
        try:
            from scipy.special._ufuncs import _beta_ppf  # Boost's beta quantile, as scipy.stats calls it
        except ImportError:  # a scipy that moved it
            from scipy.stats import beta

            return beta.ppf(tail, a, b), beta.ppf(1.0 - tail, a, b)
        return _beta_ppf(tail, a, b), _beta_ppf(1.0 - tail, a, b)
    from scipy.special import gammaincinv

    scale = 1.0 / b
    return gammaincinv(a, tail) * scale, gammaincinv(a, 1.0 - tail) * scale


class ThompsonSampling(AllocationPolicy):
    """Beta–Bernoulli Thompson sampling, batched as probability matching.

    A day's split is ``P(arm is best)`` under the posterior, computed exactly
    (the expectation of Thompson sampling's choice over a large batch), so the
    allocation is deterministic given the counts; ``rng`` is only used by the
    Monte Carlo fallback.

    ``variance_scale`` (α, Chapelle & Li 2011, "An Empirical Evaluation of
    Thompson Sampling") draws the split from the posterior with its variance
    scaled by about α and its mean kept: ``Beta(a/α, b/α)`` (``Gamma(a/α,
    b/α)`` for spend).  Below 1 it explores less while the arms are still
    close, which pays when a test stops as soon as it is confident rather than
    running for a long horizon.  Only the split uses it: P(best), the expected
    loss, elimination and the decision read the true posterior.  1 (the
    default) is plain Thompson sampling.
    """

    name = "thompson"

    def __init__(
        self,
        prior_alpha: npt.ArrayLike = 1.0,
        prior_beta: npt.ArrayLike = 1.0,
        *,
        variance_scale: float = 1.0,
        **kw: Any,
    ) -> None:
        super().__init__(prior_alpha, prior_beta, **kw)
        self.variance_scale = _check_number("variance_scale", variance_scale, lo=0.0, hi=4.0, lo_open=True)

    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        if self.variance_scale != 1.0:
            a, b = a / self.variance_scale, b / self.variance_scale
        return self._summary_ab(a, b, rng, 10_000)[0]


class TopTwoThompson(ThompsonSampling):
    """Top-two Thompson sampling (Russo 2016): spends ``1 - top_two_beta`` on challengers.

    With probability ``beta`` the Thompson choice ``I`` is played, otherwise
    the best of a re-draw conditioned on differing from ``I``.  The batched
    split uses the standard approximation ``ψ_i = β p_i + (1 − β) p_i Σ_{j≠i}
    p_j / (1 − p_j)``, which identifies the best arm faster than plain
    Thompson sampling at a slightly higher in-test regret.
    """

    name = "top_two_thompson"

    def __init__(
        self,
        prior_alpha: npt.ArrayLike = 1.0,
        prior_beta: npt.ArrayLike = 1.0,
        *,
        top_two_beta: float = 0.5,
        **kw: Any,
    ) -> None:
        super().__init__(prior_alpha, prior_beta, **kw)
        self.top_two_beta = _check_number("top_two_beta", top_two_beta, lo=0.0, hi=1.0)

    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        p = np.clip(super()._weights(s, x, a, b, rng), 0.0, 1.0)
        ratio = p / np.maximum(1.0 - p, 1e-12)
        challenger = p * (ratio.sum(axis=1, keepdims=True) - ratio)
        challenger = np.where(p >= 1.0 - 1e-12, 0.0, challenger)
        psi = self.top_two_beta * p + (1.0 - self.top_two_beta) * challenger
        total = psi.sum(axis=1, keepdims=True)
        split: np.ndarray = np.where(total > 0, psi / np.where(total > 0, total, 1.0), p)
        return split


class DiscountedThompson(ThompsonSampling):
    """Thompson sampling on discounted counts, for drifting rates.

    Needs per-day history (``daily_clicks=``, ``daily_impressions=``): a day of
    age ``k`` (0 = the latest) counts ``discount**k`` times.  With plain totals
    it behaves like :class:`ThompsonSampling`.  Burn-in and the minimum sample
    use the undiscounted exposure.
    """

    name = "discounted_thompson"

    def __init__(
        self, prior_alpha: npt.ArrayLike = 1.0, prior_beta: npt.ArrayLike = 1.0, *, discount: float = 0.9, **kw: Any
    ) -> None:
        super().__init__(prior_alpha, prior_beta, **kw)
        self.discount = _check_number("discount", discount, lo=0.0, hi=1.0, lo_open=True)

    def _combine_days(self, dc: np.ndarray, di: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        days = dc.shape[1]
        w = self.discount ** np.arange(days)[::-1]
        return np.einsum("edk,d->ek", dc, w), np.einsum("edk,d->ek", di, w)


class Uniform(AllocationPolicy):
    """A classic A/B/n split: equal shares whatever the data, and no arm eliminated."""

    name = "uniform"
    eliminates = False

    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        return np.full(s.shape, 1.0 / s.shape[1])


def _argmax_split(score: np.ndarray) -> np.ndarray:
    top = score == score.max(axis=1, keepdims=True)
    split: np.ndarray = top / top.sum(axis=1, keepdims=True)
    return split


class EpsilonGreedy(AllocationPolicy):
    """``epsilon`` spread evenly, the rest on the best empirical rate (ties split)."""

    name = "epsilon_greedy"

    def __init__(
        self, prior_alpha: npt.ArrayLike = 1.0, prior_beta: npt.ArrayLike = 1.0, *, epsilon: float = 0.1, **kw: Any
    ) -> None:
        super().__init__(prior_alpha, prior_beta, **kw)
        self.epsilon = _check_number("epsilon", epsilon, lo=0.0, hi=1.0)

    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(x > 0, s / np.where(x > 0, x, 1.0), np.inf)
        k = s.shape[1]
        split: np.ndarray = self.epsilon / k + (1.0 - self.epsilon) * _argmax_split(rate)
        return split


class UCB1(AllocationPolicy):
    """UCB1 (Auer et al. 2002) batched: the day goes to the arm with the highest index.

    ``index = rate + sqrt(c · ln N / n)``; untried arms come first.  For
    small rates such as CTRs the bonus dwarfs the gaps, so UCB1 explores for
    a long time — it is here as the textbook baseline.
    """

    name = "ucb1"

    def __init__(
        self, prior_alpha: npt.ArrayLike = 1.0, prior_beta: npt.ArrayLike = 1.0, *, c: float = 2.0, **kw: Any
    ) -> None:
        super().__init__(prior_alpha, prior_beta, **kw)
        self.c = _check_number("c", c, lo=0.0)

    def _weights(
        self, s: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        total = x.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = s / np.where(x > 0, x, 1.0)
            bonus = np.sqrt(self.c * np.log(np.maximum(total, 1.0)) / np.where(x > 0, x, 1.0))
        index = np.where(x > 0, rate + bonus, np.inf)
        return _argmax_split(index)


_REGISTRY: dict[str, type[AllocationPolicy]] = {
    cls.name: cls for cls in (ThompsonSampling, TopTwoThompson, DiscountedThompson, Uniform, EpsilonGreedy, UCB1)
}
POLICY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def policy_class(name: str) -> type[AllocationPolicy]:
    """The class registered as ``name`` (``ValueError`` if unknown)."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"policy: expected one of {', '.join(POLICY_NAMES)}, got {name!r}")
    return cls


def get_policy(name: str = "thompson", **params: Any) -> AllocationPolicy:
    """A policy by registry name, built with ``params`` (checked, ``ValueError`` if unknown)."""
    cls = policy_class(name)
    allowed = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            sig = inspect.signature(vars(klass)["__init__"])
            allowed |= {p for p in sig.parameters if p not in ("self", "kw")}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"policy {name!r}: expected parameters among {', '.join(sorted(allowed))}, got {', '.join(unknown)}"
        )
    return cls(**params)
