"""Did the ad platform deliver the split we asked for?

The ad-platform analogue of an A/B test's sample-ratio-mismatch check: a
chi-square goodness-of-fit test of the delivered impressions per arm against
the requested weights.  Platforms deliver with some noise, so a mismatch is
only flagged at a small ``alpha`` (default 0.001); when it is, the loop
records it, and the bandit keeps using the *delivered* counts, never the
requested ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DeliveryCheck", "check_delivery"]


@dataclass(frozen=True)
class DeliveryCheck:
    """Result of :func:`check_delivery`; ``statistic`` is Pearson's chi-square."""

    mismatch: bool
    p_value: float
    statistic: float
    expected: np.ndarray | None = None
    reason: str = ""


def check_delivery(
    requested_weights: npt.ArrayLike, delivered_impressions: npt.ArrayLike, alpha: float = 0.001
) -> DeliveryCheck:
    """Chi-square test of ``delivered_impressions`` (per arm) against ``requested_weights``.

    Weights are normalised to sum to 1; an arm requested at weight 0 that
    received impressions is a mismatch outright (p-value 0).  No delivery at
    all is no evidence either way (p-value 1).
    """
    w = np.asarray(requested_weights, dtype=float)
    d = np.asarray(delivered_impressions, dtype=float)
    if w.ndim != 1 or w.shape != d.shape or w.size == 0:
        raise ValueError(
            f"requested_weights, delivered_impressions: expected equal 1-D shapes, got {w.shape} and {d.shape}"
        )
    if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"requested_weights: expected non-negative weights with a positive sum, got {w.tolist()}")
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"delivered_impressions: expected non-negative counts, got {d.tolist()}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    w = w / w.sum()
    total = d.sum()
    expected = w * total
    if total == 0:
        return DeliveryCheck(False, 1.0, 0.0, expected, "nothing delivered")
    zero = w == 0
    if np.any(d[zero] > 0):
        arm = int(np.flatnonzero(zero & (d > 0))[0])
        return DeliveryCheck(
            True, 0.0, float("inf"), expected, f"arm {arm} was not requested but got {d[arm]:g} impressions"
        )
    keep = ~zero
    if keep.sum() < 2:
        return DeliveryCheck(False, 1.0, 0.0, expected, "a single requested arm")
    contribution = np.where(keep, (d - expected) ** 2 / np.where(keep, expected, 1.0), 0.0)
    stat = float(contribution.sum())
    from scipy.special import chdtrc  # what scipy.stats.chi2.sf computes, without importing scipy.stats

    p = float(chdtrc(keep.sum() - 1, stat))
    worst = int(np.argmax(contribution))
    reason = (
        f"chi-square {stat:.1f} on {int(keep.sum()) - 1} df, p={p:.3g}; arm {worst} got {d[worst]:g} "
        f"impressions vs {expected[worst]:.0f} requested"
    )
    return DeliveryCheck(p < alpha, p, stat, expected, reason)
