"""What wins: a Bayesian model of a variant's CTR lift as a sum of its traits' effects.

Every generated variant carries named traits (``grade = "warm"``,
``aspect = "4:5"``, a prompt's ``palette = "pastel"`` …).  Once its test is
decided, each observation of a tested variant (its log CTR on one day, over
its parent's baseline) is modelled as

    log lift_i = α_group(i) + Σ_traits β_family,level + u_variant(i) + e_i

- ``α``: what the observations of one group share, a group being one
  experiment on one day: the parent (its measured baseline, its own traits),
  the weekday, a new ad's learning phase.  Each group has its own offset
  under a wide fixed prior (N(0, ``group_scale``²)), so trait effects are
  learnt only from arms compared on the same day.  That matters twice: arms
  eliminated early have seen mostly their first (novelty) days, and once the
  model picks the drafts, a later test's drafts share traits with their
  parent, the last winner: a shrunk offset would bias every effect;
- ``β``: one effect per trait level, ``β ~ N(0, s_f²)`` with one scale ``s_f``
  per trait family; the families' scales scatter (inverse-χ², ``family_df``)
  around a shared scale with a half-normal(``effect_scale``) prior, so a
  family whose levels do not differ is shrunk to nothing (its intervals then
  cover zero), a family that matters is let go, and the families learn from
  each other how large effects are in this account;
- ``u``: what the traits do not explain, one per variant (all its days share
  it), with a half-Cauchy(``noise_scale``) scale;
- ``e``: the measurement noise of the observation, known from its exposure
  (``variance``: the Beta posterior's variance of log CTR plus the day-level
  over-dispersion).

The posterior is sampled by Gibbs: the Gaussian block (α, u, β) in one draw,
α integrated out by its Schur complement (each observation is in one group,
so its block is diagonal and the dense factorisation stays the size of
u and β), then the scales, each conditional conjugate (the half-Cauchy by its
inverse-gamma mixture form).  The RNG is injected, so a fit is reproducible
to the last digit.

An effect is reported *centred*: a level's β minus the mean β of its family's
levels, i.e. against the average variant (with ``levels`` naming every level
the generator can produce, tried or not).  ``exp(effect) − 1`` is the CTR
change in percent.  The average variant's lift over its parent is the mean of
the groups' offsets plus each family's mean effect.

:func:`select_drafts` is the Thompson step of the draft selection: each test
slot takes one posterior draw of the effects and the best draft under it that
no earlier slot took.  Untried levels are drawn from their family's prior, so
they keep a chance to be tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TraitEffect",
    "TraitPosterior",
    "TraitPrior",
    "fit_traits",
    "gaussian_draw",
    "log_ctr_moments",
    "select_drafts",
]


@dataclass(frozen=True)
class TraitPrior:
    """The model's priors and its sampler's length (log scale throughout).

    ``effect_scale`` is the half-Cauchy scale of a family's spread: 0.1 says
    "a trait level typically moves CTR by about ±10 %", leaving room for far
    more.  ``noise_scale`` is that of a variant's idiosyncratic lift, and
    ``group_scale`` the (fixed, wide) prior sd of what one experiment's
    variants share.
    """

    effect_scale: float = 0.1
    family_df: float = 4.0  # how far one family's scale may stray from the shared one (inverse-χ² degrees of freedom)
    noise_scale: float = 0.25
    group_scale: float = 1.0
    draws: int = 1000
    burn_in: int = 300
    level: float = 0.9  # the credible interval reported

    def __post_init__(self) -> None:
        for name in ("effect_scale", "family_df", "noise_scale", "group_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        if self.draws < 10 or self.burn_in < 0:
            raise ValueError(f"draws, burn_in: expected >= 10 and >= 0, got {self.draws!r}, {self.burn_in!r}")
        if not 0.5 < self.level < 1.0:
            raise ValueError(f"level: expected a number in (0.5, 1), got {self.level!r}")


@dataclass(frozen=True)
class TraitEffect:
    """One trait level's centred effect: log scale, and as a CTR change."""

    family: str
    value: str
    mean: float  # posterior mean of the centred log effect
    lo: float  # the credible interval's bounds (log scale)
    hi: float
    variants: int  # tested variants that carry this level
    level: float = 0.9

    @property
    def pct(self) -> float:
        """The CTR change in percent at the posterior mean: ``+6.2`` for exp(0.06) − 1."""
        return 100.0 * math.expm1(self.mean)

    @property
    def pct_lo(self) -> float:
        return 100.0 * math.expm1(self.lo)

    @property
    def pct_hi(self) -> float:
        return 100.0 * math.expm1(self.hi)

    @property
    def reliable(self) -> bool:
        """The credible interval excludes zero (and some variant was tested with the level)."""
        return self.variants > 0 and (self.lo > 0 or self.hi < 0)

    def covers(self, truth: float) -> bool:
        return self.lo <= truth <= self.hi


@dataclass
class TraitPosterior:
    """Posterior draws of the model; see the module docstring."""

    levels: list[tuple[str, str]]  # (family, value) per column of ``beta``
    beta: np.ndarray  # (draws, levels): raw effects
    mean_lift: np.ndarray  # (draws,): the average variant's log lift over its parent (empty without data)
    family_scale: dict[str, np.ndarray]  # family -> (draws,) s_f
    noise_sd: np.ndarray  # (draws,): σ of the idiosyncratic lift
    counts: np.ndarray  # (levels,): tested variants with the level
    variants: int
    experiments: int
    level: float = 0.9
    _index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {lv: i for i, lv in enumerate(self.levels)}

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.levels))

    def centred(self) -> np.ndarray:
        """(draws, levels): each level's effect minus its family's mean effect."""
        out = np.empty_like(self.beta)
        for fam in self.families:
            cols = [i for i, (f, _) in enumerate(self.levels) if f == fam]
            block = self.beta[:, cols]
            out[:, cols] = block - block.mean(axis=1, keepdims=True)
        return out

    def effects(self) -> list[TraitEffect]:
        """Every level's centred effect with its credible interval, in ``levels`` order."""
        c = self.centred()
        tail = (1.0 - self.level) / 2.0
        lo, hi = np.quantile(c, [tail, 1.0 - tail], axis=0) if c.shape[0] else (np.zeros(0), np.zeros(0))
        mean = c.mean(axis=0)
        return [
            TraitEffect(f, v, float(mean[i]), float(lo[i]), float(hi[i]), int(self.counts[i]), self.level)
            for i, (f, v) in enumerate(self.levels)
        ]

    def mean_lift_interval(self) -> tuple[float, float, float]:
        """The average variant's log lift over its parent: mean and credible bounds."""
        tail = (1.0 - self.level) / 2.0
        lo, hi = np.quantile(self.mean_lift, [tail, 1.0 - tail])
        return float(self.mean_lift.mean()), float(lo), float(hi)

    def design(self, traits: Sequence[Mapping[str, str]]) -> np.ndarray:
        """(variants, levels) one-hot rows; a level outside the model adds nothing."""
        x = np.zeros((len(traits), len(self.levels)))
        for r, t in enumerate(traits):
            for fam, value in t.items():
                j = self._index.get((fam, str(value)))
                if j is not None:
                    x[r, j] = 1.0
        return x


def log_ctr_moments(
    clicks: np.ndarray, impressions: np.ndarray, *, days: np.ndarray | None = None, extra_variance: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of log CTR under a Beta(½ + c, ½ + n − c) posterior.

    ``extra_variance`` (τ² of a day's log CTR) adds ``τ²/days`` for the
    day-level noise a variant's days do not average away.
    """
    from scipy.special import digamma, polygamma

    c = np.asarray(clicks, dtype=float)
    n = np.asarray(impressions, dtype=float)
    if c.shape != n.shape or np.any(c < 0) or np.any(n < c):
        raise ValueError("clicks, impressions: expected equal shapes with 0 <= clicks <= impressions")
    a, b = 0.5 + c, 0.5 + n - c
    mean = digamma(a) - digamma(a + b)
    var = polygamma(1, a) - polygamma(1, a + b)
    if extra_variance:
        d = np.maximum(np.asarray(days if days is not None else np.ones_like(n), dtype=float), 1.0)
        var = var + extra_variance / d
    return mean, var


def fit_traits(
    traits: Sequence[Mapping[str, str]],
    log_lift: Sequence[float] | np.ndarray,
    variance: Sequence[float] | np.ndarray,
    groups: Sequence[object],
    rng: np.random.Generator,
    *,
    levels: Mapping[str, Sequence[str]] | None = None,
    prior: TraitPrior | None = None,
    variants: Sequence[object] | None = None,
) -> TraitPosterior:
    """Sample the posterior of the trait model (module docstring).

    Observation ``i`` is a measured log CTR of a variant with traits
    ``traits[i]`` over its parent's (``log_lift``) with that value's
    measurement variance (:func:`log_ctr_moments`); ``groups[i]`` names what
    it is compared within (its experiment, or its experiment and day).
    ``variants[i]`` names the variant when a variant has several observations
    (one per day): they share its idiosyncratic lift; by default each
    observation is a variant of its own.  ``levels`` lists every level per
    family, tried or not (observed ones are added).  No data gives the prior.
    """
    # 1. check inputs
    prior = prior or TraitPrior()
    y = np.asarray(log_lift, dtype=float).reshape(-1)
    v = np.asarray(variance, dtype=float).reshape(-1)
    n = len(traits)
    if not (y.size == v.size == len(groups) == n):
        raise ValueError(
            f"traits, log_lift, variance, groups: expected equal lengths, got {n}, {y.size}, {v.size}, {len(groups)}"
        )
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v)) and np.all(v >= 0)):
        raise ValueError("log_lift, variance: expected finite numbers and variances >= 0")
    variant_of = list(range(n)) if variants is None else list(variants)
    if len(variant_of) != n:
        raise ValueError(f"variants: expected {n} names, got {len(variant_of)}")
    # 2. the levels (declared first, then any observed) and the design
    vocab: dict[str, list[str]] = {f: [str(x) for x in ls] for f, ls in (levels or {}).items()}
    for t in traits:
        for fam, value in t.items():
            known = vocab.setdefault(str(fam), [])
            if str(value) not in known:
                known.append(str(value))
    cols = [(f, lv) for f, ls in vocab.items() for lv in ls]
    index = {c: j for j, c in enumerate(cols)}
    p = len(cols)
    x = np.zeros((n, p))
    for i, t in enumerate(traits):
        for fam, value in t.items():
            x[i, index[(str(fam), str(value))]] = 1.0
    group_ids = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    g_count = len(group_ids)
    variant_ids = {name: k for k, name in enumerate(dict.fromkeys(variant_of))}
    v_count = len(variant_ids)
    # One row per variant (its first observation) for the counts: a level's variants, not its days.
    first_rows = list({name: i for i, name in reversed(list(enumerate(variant_of)))}.values())
    fam_of = [f for f, _ in cols]
    families = list(vocab)
    fam_cols = {f: np.array([j for j, c in enumerate(fam_of) if c == f], dtype=int) for f in families}
    # 3. the data's part of the Gaussian block, once: r = [u (one per variant), β (one per level)],
    # the group offsets α integrated out (their block of the precision is diagonal)
    r_size = v_count + p
    w = 1.0 / np.maximum(v, 1e-9)
    g_of = np.array([group_ids[g] for g in groups], dtype=np.int64)
    d = np.zeros((n, r_size))  # the observations' rows over r
    d[np.arange(n), [variant_ids[name] for name in variant_of]] = 1.0
    d[:, v_count:] = x
    a_diag = np.bincount(g_of, w, minlength=g_count) + 1.0 / prior.group_scale**2
    b_alpha = np.bincount(g_of, w * y, minlength=g_count)
    b0 = np.zeros((g_count, r_size))  # the α-r block of the precision
    np.add.at(b0, g_of, w[:, None] * d)
    wd = w[:, None] * d
    # Dense products once per fit: the per-iteration work is one factorisation of size len(r).
    s0 = wd.T @ d - (b0 / a_diag[:, None]).T @ b0
    t0 = wd.T @ y - b0.T @ (b_alpha / a_diag)
    # 4. Gibbs sampling
    sigma2 = prior.noise_scale**2
    s2 = {f: prior.effect_scale**2 for f in families}
    shared2 = prior.effect_scale**2
    nu = prior.family_df
    a_sigma = 1.0
    total = prior.burn_in + prior.draws
    out_beta = np.empty((prior.draws, p))
    out_mu = np.empty(prior.draws)
    out_sigma = np.empty(prior.draws)
    out_scale = {f: np.empty(prior.draws) for f in families}
    prec = np.empty(r_size)
    diagonal, alpha_sd = np.diag_indices(r_size), np.sqrt(a_diag)
    for it in range(total):
        # 4a. u and β given the scales (α integrated out), then α given them
        prec[:v_count] = 1.0 / sigma2
        for f in families:
            prec[v_count + fam_cols[f]] = 1.0 / s2[f]
        q = s0.copy()
        q[diagonal] += prec
        r = gaussian_draw(q, t0, rng.standard_normal(r_size))
        alpha = (b_alpha - b0 @ r) / a_diag + rng.standard_normal(g_count) / alpha_sd
        u, beta = r[:v_count], r[v_count:]
        # 4b. the scales: half-Cauchy as an inverse-gamma mixture (Wand et al. 2011)
        sigma2 = _inv_gamma(rng, (v_count + 1) / 2.0, 1.0 / a_sigma + float(u @ u) / 2.0)
        a_sigma = _inv_gamma(rng, 1.0, 1.0 / sigma2 + 1.0 / prior.noise_scale**2)
        for f in families:
            b = beta[fam_cols[f]]
            s2[f] = _inv_gamma(rng, (nu + b.size) / 2.0, (nu * shared2 + float(b @ b)) / 2.0)
        if families:
            # The shared scale: half-normal(effect_scale), so s² ~ Gamma(½, 1/(2A²)), conjugate to the families'.
            rate = 1.0 / (2.0 * prior.effect_scale**2) + nu / 2.0 * sum(1.0 / s2[f] for f in families)
            shared2 = float(rng.gamma(0.5 + nu * len(families) / 2.0, 1.0 / rate))
        k = it - prior.burn_in
        if k >= 0:
            out_beta[k] = beta
            out_mu[k] = alpha.mean() + sum(float(beta[fam_cols[f]].mean()) for f in families) if n else 0.0
            out_sigma[k] = math.sqrt(sigma2)
            for f in families:
                out_scale[f][k] = math.sqrt(s2[f])
    return TraitPosterior(
        levels=cols,
        beta=out_beta,
        mean_lift=out_mu if n else np.zeros(0),
        family_scale=out_scale,
        noise_sd=out_sigma,
        counts=x[first_rows].sum(axis=0).astype(int) if n else np.zeros(p, dtype=int),
        variants=v_count,
        experiments=g_count,  # the groups: experiments, or experiment-days
        level=prior.level,
    )


def gaussian_draw(precision: np.ndarray, shift: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """One draw of N(Q⁻¹t, Q⁻¹) for precision ``Q`` and shift ``t``, given standard normal ``noise``.

    With ``Q = L Lᵀ``: ``Q⁻¹t + L⁻ᵀ noise``.  The LAPACK routines are called
    directly, exactly as ``scipy.linalg.cholesky(Q, lower=True)``,
    ``cho_solve((L, True), t)`` and ``solve_triangular(L.T, noise)`` call them
    (the same numbers, bit for bit), without those functions' per-call checks
    and batch wrappers, which were most of a small model's Gibbs iteration.
    """
    if precision.size == 0:
        return noise.copy()  # nothing to solve: no variants and no levels (the prior alone)
    # Here, not at the top: scipy.linalg (and the numpy test modules it pulls in) costs a tick
    # that fits no trait model about 0.15 s of imports.
    from scipy.linalg import LinAlgError
    from scipy.linalg.lapack import dpotrf, dpotrs, dtrtrs

    chol, info = dpotrf(precision, lower=True, clean=True)
    if info != 0:
        raise LinAlgError(f"trait model: the precision matrix is not positive definite (potrf info {info})")
    mean, _ = dpotrs(chol, shift, lower=True)
    z, _ = dtrtrs(chol, noise, lower=True, trans=1)
    draw: np.ndarray = mean + z
    return draw


def _inv_gamma(rng: np.random.Generator, shape: float, scale: float) -> float:
    """One draw of InvGamma(shape, scale) (density ∝ x^−shape−1 e^−scale/x)."""
    return float(scale / rng.gamma(shape))


def select_drafts(
    posterior: TraitPosterior,
    drafts: Sequence[Mapping[str, str]],
    k: int,
    rng: np.random.Generator,
    *,
    prior: TraitPrior | None = None,
) -> list[int]:
    """Indices of the ``k`` drafts to test, in the order they were picked (batch Thompson sampling).

    Slot ``j`` draws one set of effects from the posterior and takes the
    draft it scores highest among those not yet taken.  A level the model
    has never seen (a new prompt attribute) is drawn from its family's
    sampled scale, or from ``prior.effect_scale`` for a family never seen.
    """
    if k < 0:
        raise ValueError(f"k: expected >= 0, got {k!r}")
    k = min(k, len(drafts))
    if k == 0:
        return []
    x = posterior.design(drafts)
    # Levels the posterior has no column for, per draft, each drawn from its family's scale.
    unseen = [[(f, str(val)) for f, val in t.items() if (f, str(val)) not in posterior._index] for t in drafts]
    unseen_keys = list(dict.fromkeys(key for keys in unseen for key in keys))
    fallback = (prior or TraitPrior()).effect_scale
    chosen: list[int] = []
    draws = posterior.beta.shape[0]
    for _ in range(k):
        d = int(rng.integers(draws)) if draws else -1
        beta = posterior.beta[d] if draws else np.zeros(len(posterior.levels))
        score = x @ beta
        if unseen_keys:
            extra = {}
            for f, val in unseen_keys:
                scales = posterior.family_scale.get(f)
                s = float(scales[d]) if scales is not None and draws else fallback
                extra[(f, val)] = s * float(rng.standard_normal())
            score = score + np.array([sum(extra[key] for key in keys) for keys in unseen])
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))  # ties: the earliest draft
    return chosen
