"""Charts rendered on the server with matplotlib, as SVG (no JavaScript, no CDN).

Each function returns the SVG document as bytes; the pages and the offline
report embed it as a ``data:`` URI.  Figures are built with the object API
(``Figure``), never ``pyplot``, so no global figure state is shared between
requests; a lock serialises rendering because matplotlib's text layout
caches are not thread-safe.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from datetime import date

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from scipy import stats

_LOCK = threading.Lock()
_RC = {
    "svg.hashsalt": "creative-loop",  # stable ids: the same data gives the same SVG
    "svg.fonttype": "path",  # text as paths: no font needed where it is viewed
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
}
INK, MUTED, ACCENT, ALERT = "#1f2933", "#7b8794", "#2563eb", "#dc2626"
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5")


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    return buf.getvalue()


def data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _ctr_band(clicks: np.ndarray, imps: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily CTR and its equal-tailed interval under the bandit's Beta(1 + c, 1 + n − c) posterior."""
    c = clicks.astype(float)
    n = imps.astype(float)
    ctr = np.divide(c, n, out=np.full_like(c, np.nan), where=n > 0)
    tail = (1.0 - level) / 2.0
    lo = stats.beta.ppf(tail, 1.0 + c, 1.0 + n - c)
    hi = stats.beta.ppf(1.0 - tail, 1.0 + c, 1.0 + n - c)
    lo[n == 0] = np.nan
    hi[n == 0] = np.nan
    return ctr, lo, hi


def fatigue_chart(
    days: Sequence[date],
    impressions: np.ndarray,
    clicks: np.ndarray,
    *,
    baseline_ctr: float | None,
    detected_day: date | None,
    title: str,
) -> bytes:
    """Daily CTR with its 95% band, the creative's baseline and the day fatigue was detected."""
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=(9.0, 3.0), layout="constrained")
        ax = fig.add_subplot()
        if len(days) == 0:
            ax.text(0.5, 0.5, "no delivery reported yet", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            ax.set_axis_off()
        else:
            x = np.arange(len(days))
            ctr, lo, hi = _ctr_band(np.asarray(clicks), np.asarray(impressions))
            ax.fill_between(x, lo * 100, hi * 100, color=ACCENT, alpha=0.15, linewidth=0, label="95% interval")
            ax.plot(x, ctr * 100, color=ACCENT, marker="o", markersize=2.5, linewidth=1.2, label="daily CTR")
            if baseline_ctr is not None:
                ax.axhline(baseline_ctr * 100, color=INK, linestyle="--", linewidth=1, label="baseline")
            if detected_day is not None and detected_day in days:
                d = days.index(detected_day)
                ax.axvline(d, color=ALERT, linewidth=1.2, label=f"fatigue detected {detected_day.isoformat()}")
            step = max(1, len(days) // 8)
            ax.set_xticks(x[::step], [d.strftime("%b %d") for d in days[::step]])
            ax.set_ylabel("CTR (%)")
            ax.legend(loc="best", fontsize=7, frameon=False)
        ax.set_title(title, loc="left")
        return _svg(fig)


def posterior_chart(clicks: int, impressions: int, *, x_max: float, color: str = ACCENT, winner: bool = False) -> bytes:
    """A small density plot of one arm's CTR posterior, Beta(1 + clicks, 1 + impressions − clicks)."""
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=(2.4, 0.9), layout="constrained")
        ax = fig.add_subplot()
        x = np.linspace(0.0, x_max, 300)
        pdf = stats.beta.pdf(x, 1 + clicks, 1 + impressions - clicks)
        ax.fill_between(x * 100, pdf, color=color, alpha=0.35 if not winner else 0.6, linewidth=0)
        ax.plot(x * 100, pdf, color=color, linewidth=1)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlim(0, x_max * 100)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_xlabel("CTR (%)", fontsize=6)
        return _svg(fig)


def posterior_x_max(clicks: np.ndarray, impressions: np.ndarray) -> float:
    """A shared x range for the arms' density plots: past every arm's 99.9th percentile."""
    if len(clicks) == 0:
        return 0.05
    hi = stats.beta.ppf(0.999, 1 + clicks, 1 + impressions - clicks)
    return float(min(1.0, max(0.005, np.max(hi) * 1.1)))


def allocation_chart(days: Sequence[date], weights: Sequence[Sequence[float]], labels: Sequence[str]) -> bytes:
    """The bandit's share of the test budget per arm, day by day (stacked)."""
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=(9.0, 2.6), layout="constrained")
        ax = fig.add_subplot()
        if not days:
            ax.text(0.5, 0.5, "no allocation yet", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            ax.set_axis_off()
        else:
            w = np.asarray(weights, dtype=float).T * 100
            x = np.arange(len(days))
            bottom = np.zeros(len(days))
            for i, label in enumerate(labels):
                ax.bar(x, w[i], bottom=bottom, width=0.85, color=arm_color(i), label=label, linewidth=0)
                bottom += w[i]
            ax.set_ylim(0, 100)
            step = max(1, len(days) // 8)
            ax.set_xticks(x[::step], [d.strftime("%b %d") for d in days[::step]])
            ax.set_ylabel("share of test budget (%)")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
        ax.set_title("allocation over time", loc="left")
        return _svg(fig)


def arm_color(position: int) -> str:
    return PALETTE[position % len(PALETTE)]
