"""Probability that each arm is best, by numerical integration over posteriors.

For independent posteriors with densities ``f_j`` and CDFs ``F_j``::

    P(arm i is best) = ∫ f_i(x) · Π_{j≠i} F_j(x) dx
    E[max_j θ_j]     = ∫ (1 − Π_j F_j(x)) dx         (support starting at 0)

How it is computed (vectorised over experiments × arms):

1. *Range.*  ``lo = max_j (μ_j − cσ_j)`` and ``hi = max_j (μ_j + cσ_j)``.
   Below ``lo`` the product of CDFs is at most ``Π_j F_j(lo)`` and above
   ``hi`` the missing mass is ``1 − Π_j F_j(hi)``; both are evaluated with
   the exact incomplete beta/gamma function and ``c`` is widened until each
   is ≤ 1e-10.  An arm that lies entirely below ``lo`` contributes ``F ≈ 1``
   and a negligible density, which is what makes many-arm problems cheap.
2. *Panels.*  ``[lo, hi]`` is cut into panels no wider than ``PANEL_SIGMAS``
   standard deviations of the narrowest arm that reaches ``lo``; each panel
   carries ``NODES`` Chebyshev points.  (When the arms' widths differ by
   orders of magnitude, the panel edges are instead the union of every arm's
   own ``μ ± kσ`` grid.)
3. *Densities and CDFs.*  Densities are cheap (one ``exp`` per node and arm).
   The CDF at every node is ``F_j(lo)`` (one exact incomplete-beta call per
   arm) plus the spectral (Clenshaw–Curtis) integral of the density from the
   panel's start, so no incomplete-beta call is made per node.
4. *Products.*  ``Π_{j≠i} F_j`` is formed from prefix and suffix sums of
   ``log F`` (no division, so an arm with ``F = 0`` is harmless).
5. *Certificate.*  The integrated ``F_j(hi)`` is compared with the exact
   incomplete beta at ``hi``; the sum of those discrepancies plus the two
   truncation masses is returned as ``error``, an estimate of the absolute
   error of every probability.  If it exceeds ``tol`` the panels are halved
   once; if that is still not enough the caller falls back to Monte Carlo.

Two posterior families are supported: ``"beta"`` (Beta(a, b) for a rate
such as CTR or conversion rate) and ``"gamma"`` (Gamma(shape a, rate b) for
conversions per unit of spend, whose reciprocal is the CPA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev as _cheb

__all__ = [
    "FAMILIES",
    "Integrated",
    "integrate_prob_best",
    "monte_carlo_prob_best",
    "posterior_moments",
]

FAMILIES = ("beta", "gamma")
NODES = 12
PANEL_SIGMAS = 3.0
TRUNCATION_TOL = 1e-10
MAX_UNIFORM_PANELS = 256
IRRELEVANT_TOL = 1e-13
_SIGMA_STEPS = (9.0, 14.0, 24.0, 48.0, 96.0)
_CHUNK_ELEMENTS = 2_000_000


def _chebyshev_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev extreme points on [-1, 1] and the cumulative integration matrix.

    ``S @ f(t)`` gives ``∫_{-1}^{t_i} p(s) ds`` for the interpolating polynomial
    ``p`` of ``f``; the last row is the Clenshaw–Curtis weights.
    """
    t = -np.cos(np.pi * np.arange(n) / (n - 1))
    vander = _cheb.chebvander(t, n - 1)
    antider = np.empty((n, n))
    for k in range(n):
        coef = np.zeros(n)
        coef[k] = 1.0
        antider[:, k] = _cheb.chebval(t, _cheb.chebint(coef, lbnd=-1.0))
    return t, antider @ np.linalg.inv(vander)


_T, _S = _chebyshev_rule(NODES)


@dataclass(frozen=True)
class Integrated:
    """Result of :func:`integrate_prob_best`, arrays shaped ``(experiments, arms)``."""

    prob_best: np.ndarray
    expected_max: np.ndarray  # shape (experiments,)
    error: np.ndarray  # shape (experiments,): estimated absolute error bound
    ok: np.ndarray  # shape (experiments,): error <= tol


def posterior_moments(family: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of Beta(a, b) or Gamma(a, rate=b)."""
    if family == "beta":
        s = a + b
        return a / s, np.sqrt(a * b / (s * s * (s + 1.0)))
    return a / b, np.sqrt(a) / b


def _cdf(family: str, a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    from scipy import special  # here, not at the top: reading a config (policy names) stays light

    # scipy ships no type hints: its ufuncs are Any to mypy.
    out: np.ndarray
    if family == "beta":
        out = special.betainc(a, b, np.clip(x, 0.0, 1.0))
    else:
        out = special.gammainc(a, b * np.maximum(x, 0.0))
    return out


def _log_norm(family: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy import special

    out: np.ndarray
    if family == "beta":
        out = -special.betaln(a, b)
    else:
        out = a * np.log(b) - special.gammaln(a)
    return out


def _range(
    family: str, a: np.ndarray, b: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integration range per experiment, with the exact CDFs at both ends."""
    mean, sd = posterior_moments(family, a, b)
    upper_cap = 1.0 if family == "beta" else np.inf
    lo = np.zeros(a.shape[0])
    hi = np.zeros(a.shape[0])
    lo_done = np.zeros(a.shape[0], dtype=bool)
    hi_done = np.zeros(a.shape[0], dtype=bool)
    f_lo = np.zeros_like(a)
    f_hi = np.ones_like(a)
    for c in _SIGMA_STEPS:
        todo = ~lo_done
        if todo.any():
            cand = np.clip((mean[todo] - c * sd[todo]).max(axis=1), 0.0, None)
            flo = _cdf(family, a[todo], b[todo], cand[:, None])
            good = np.prod(flo, axis=1) <= tol
            good |= cand <= 0.0
            idx = np.flatnonzero(todo)[good]
            lo[idx], f_lo[idx] = cand[good], flo[good]
            lo_done[idx] = True
        todo = ~hi_done
        if todo.any():
            cand = np.minimum((mean[todo] + c * sd[todo]).max(axis=1), upper_cap)
            fhi = _cdf(family, a[todo], b[todo], cand[:, None])
            good = (1.0 - fhi).sum(axis=1) <= tol
            good |= cand >= upper_cap
            idx = np.flatnonzero(todo)[good]
            hi[idx], f_hi[idx] = cand[good], fhi[good]
            hi_done[idx] = True
    # Whatever is still open (pathological priors) takes the widest range.
    for done, end, vals, fill in ((lo_done, lo, f_lo, 0.0), (hi_done, hi, f_hi, upper_cap)):
        rest = np.flatnonzero(~done)
        if rest.size:
            if np.isfinite(fill):
                end[rest] = fill
            else:
                end[rest] = (mean[rest] + _SIGMA_STEPS[-1] * 2 * sd[rest]).max(axis=1)
            vals[rest] = _cdf(family, a[rest], b[rest], end[rest, None])
    return lo, hi, f_lo, f_hi, mean, sd


def _integrate_panels(
    family: str, a: np.ndarray, b: np.ndarray, edges: np.ndarray, f_lo: np.ndarray, log_norm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core quadrature on given panel edges ``(E, P+1)``; see the module docstring."""
    half = 0.5 * (edges[:, 1:] - edges[:, :-1])  # (E, P)
    mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    x = mid[:, :, None] + half[:, :, None] * _T  # (E, P, n)
    a4 = a[:, None, None, :]
    b4 = b[:, None, None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if family == "beta":
            xs = np.clip(x, 1e-300, 1.0 - 1e-16)[..., None]
            logf = (a4 - 1.0) * np.log(xs) + (b4 - 1.0) * np.log1p(-xs)
        else:
            xs = np.maximum(x, 1e-300)[..., None]
            logf = (a4 - 1.0) * np.log(xs) - b4 * xs
        logf += log_norm[:, None, None, :]
        f = np.exp(logf)  # (E, P, n, K)
        f[~np.isfinite(f)] = 0.0
    partial = np.matmul(_S, f) * half[:, :, None, None]
    panel = partial[:, :, -1, :]  # (E, P, K)
    start = f_lo[:, None, :] + np.cumsum(panel, axis=1) - panel
    cdf = start[:, :, None, :] + partial  # (E, P, n, K)
    np.clip(cdf, 0.0, 1.0, out=cdf)
    with np.errstate(divide="ignore", invalid="ignore"):
        logcdf = np.log(cdf)
        total = logcdf.sum(axis=-1, keepdims=True)
        # Π_{j≠i} F_j = exp(Σ log F − log F_i).  Where F_i = 0 the density of
        # arm i is 0 to rounding as well, so the product is not needed there.
        others = np.exp(total - logcdf)
    others[cdf <= 0.0] = 0.0
    integrand = f * others * half[:, :, None, None]
    w = _S[-1]  # Clenshaw–Curtis weights on [-1, 1]
    prob = np.matmul(w, integrand).sum(axis=1)  # (E, K)
    prod_all = np.exp(total[..., 0])  # (E, P, n)
    e_max_inner = (np.matmul(1.0 - prod_all, w) * half).sum(axis=1)
    f_hi_quad = f_lo + panel.sum(axis=1)
    return prob, e_max_inner, f_hi_quad


def _bucket(n: int) -> int:
    """Round a panel count up to 2^k or 1.5·2^k, so few distinct shapes occur."""
    p = 1 << max(1, (n - 1).bit_length())
    return p * 3 // 4 if p * 3 // 4 >= n else p


def _uniform_edges(lo: np.ndarray, hi: np.ndarray, n_panels: int) -> np.ndarray:
    frac = np.linspace(0.0, 1.0, n_panels + 1)
    edges: np.ndarray = lo[:, None] + (hi - lo)[:, None] * frac
    return edges


def _union_edges(lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, sd: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Panel edges from every relevant arm's own μ ± kσ grid (uneven widths)."""
    ks = np.arange(-_SIGMA_STEPS[0], _SIGMA_STEPS[0] + 1e-9, PANEL_SIGMAS)
    rows = []
    for e in range(lo.shape[0]):
        m, s = mean[e, relevant[e]], sd[e, relevant[e]]
        pts = (m[:, None] + s[:, None] * ks).ravel()
        pts = pts[(pts > lo[e]) & (pts < hi[e])]
        rows.append(np.unique(np.concatenate([[lo[e], hi[e]], pts])))
    width = max(len(r) for r in rows)
    edges = np.empty((lo.shape[0], width))
    for e, r in enumerate(rows):
        edges[e, : len(r)] = r
        edges[e, len(r) :] = r[-1]
    return edges


def integrate_prob_best(family: str, a: np.ndarray, b: np.ndarray, *, tol: float = 1e-7) -> Integrated:
    """P(best) and E[max] for posteriors ``a``, ``b`` shaped ``(experiments, arms)``.

    ``family`` is ``"beta"`` or ``"gamma"`` (shape ``a``, rate ``b``).  The
    returned ``error`` is the certificate of the module docstring; ``ok`` says
    whether it is within ``tol``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n_exp, n_arms = a.shape
    prob = np.zeros((n_exp, n_arms))
    e_max = np.zeros(n_exp)
    error = np.full(n_exp, np.inf)
    if n_arms == 1:
        return Integrated(
            np.ones((n_exp, 1)), posterior_moments(family, a, b)[0][:, 0], np.zeros(n_exp), np.ones(n_exp, dtype=bool)
        )
    lo, hi, f_lo, f_hi, mean, sd = _range(family, a, b, TRUNCATION_TOL)
    log_norm = _log_norm(family, a, b)
    # An arm whose mass lies below ``lo`` has P(best) <= 1 - F(lo) and F ~ 1 on
    # the range: it is left out of the quadrature and its bound is added to
    # the error.  Arms are reordered so the relevant ones come first.
    outside = 1.0 - f_lo
    relevant = outside > IRRELEVANT_TOL
    dropped = np.where(relevant, 0.0, outside).sum(axis=1)
    order = np.argsort(~relevant, axis=1, kind="stable")
    n_rel = max(2, int(relevant.sum(axis=1).max()))
    cols = order[:, :n_rel]
    rows_ix = np.arange(n_exp)[:, None]

    def take(v: np.ndarray) -> np.ndarray:
        picked: np.ndarray = v[rows_ix, cols]
        return picked

    a_r, b_r, flo_r, fhi_r, ln_r = take(a), take(b), take(f_lo), take(f_hi), take(log_norm)
    mean_r, sd_r, rel_r = take(mean), take(sd), take(relevant)
    sd_min = np.where(rel_r, sd_r, np.inf).min(axis=1)
    need = np.ceil((hi - lo) / (PANEL_SIGMAS * np.maximum(sd_min, 1e-300)))
    need = np.maximum(need, 2.0)
    buckets = np.array([_bucket(int(v)) if v <= MAX_UNIFORM_PANELS else 0 for v in need])

    def run(idx: np.ndarray, edges: np.ndarray) -> None:
        p, inner, fq = _integrate_panels(family, a_r[idx], b_r[idx], edges, flo_r[idx], ln_r[idx])
        trunc_lo = np.prod(f_lo[idx], axis=1)
        trunc_hi = (1.0 - f_hi[idx]).sum(axis=1)
        err = np.abs(fq - fhi_r[idx]).sum(axis=1) + trunc_lo + trunc_hi + dropped[idx]
        better = err < error[idx]
        sel = idx[better]
        prob[sel[:, None], cols[sel]] = p[better]
        e_max[sel] = lo[sel] + inner[better]
        error[sel] = err[better]

    for size in np.unique(buckets):
        idx_all = np.flatnonzero(buckets == size)
        if size == 0:
            per = max(1, _CHUNK_ELEMENTS // (NODES * n_rel * 64))
        else:
            per = max(1, _CHUNK_ELEMENTS // (int(size) * NODES * n_rel))
        for start in range(0, idx_all.size, per):
            idx = idx_all[start : start + per]
            if size == 0:
                edges = _union_edges(lo[idx], hi[idx], mean_r[idx], sd_r[idx], rel_r[idx])
            else:
                edges = _uniform_edges(lo[idx], hi[idx], int(size))
            run(idx, edges)
            retry = idx[error[idx] > tol]
            if retry.size and size != 0:
                run(retry, _uniform_edges(lo[retry], hi[retry], 4 * int(size)))
    return Integrated(prob, e_max, error, error <= tol)


def monte_carlo_prob_best(
    family: str,
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    draws: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo P(best) and E[max] with ``draws`` samples (ties split evenly)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n_exp, n_arms = a.shape
    wins = np.zeros((n_exp, n_arms))
    e_max = np.zeros(n_exp)
    per = max(1, _CHUNK_ELEMENTS // max(1, n_exp * n_arms))
    done = 0
    while done < draws:
        m = min(per, draws - done)
        if family == "beta":
            theta = rng.beta(a, b, size=(m, n_exp, n_arms))
        else:
            theta = rng.gamma(a, 1.0 / b, size=(m, n_exp, n_arms))
        best = theta.max(axis=-1, keepdims=True)
        is_best = theta == best
        wins += (is_best / is_best.sum(axis=-1, keepdims=True)).sum(axis=0)
        e_max += best[..., 0].sum(axis=0)
        done += m
    return wins / draws, e_max / draws
