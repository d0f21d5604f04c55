"""Charts rendered on the server with matplotlib, as SVG (no JavaScript, no CDN).

Each chart function returns the SVG document as bytes; the pages and the
offline report embed it as a ``data:`` URI through :class:`ChartCache`, which
renders a chart once per distinct content and hands the same URI back after.

Thread safety: figures are built with the object API (``Figure`` and a
canvas of its own), never ``pyplot``, and the style is set on each figure's
artists rather than through ``rcParams``/``rc_context`` (a process-global that
another thread would see half-changed).  So requests render in parallel with
no lock on the request path; the cache's lock guards only its dictionary.

Every string drawn here may be user or platform text (ad names, headlines):
:func:`plain` makes it literal text.  Math text is off for every label
(``parse_math=False``: "Win $$ now" stays as written, no parser sees it), a
legend gets its labels explicitly (matplotlib hides a label that starts with
"_" only when it collects labels itself), characters the font cannot draw
become "□" and long names are shortened.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import io
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from scipy import stats

INK, MUTED, ACCENT, ALERT = "#1f2933", "#7b8794", "#2563eb", "#dc2626"
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5")
FONT_SIZE, SMALL, TITLE_SIZE = 8, 7, 9
MISSING_GLYPH = "□"
LABEL_LIMIT = 60  # characters of a label drawn in a chart; the page around it shows the whole name


# -- text --------------------------------------------------------------------------------
@functools.cache
def _drawable() -> frozenset[int]:
    """Code points the default sans-serif font can draw (matplotlib warns on any other)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(findfont(FontProperties(family=["sans-serif"]))).get_charmap())


def plain(text: object, limit: int = LABEL_LIMIT) -> str:
    """``text`` as literal chart text: no control characters, only drawable glyphs, at most ``limit`` long."""
    drawable = _drawable()
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(" " if ch in "\t\n\r\u2028\u2029" else "")  # controls, bidi overrides: not drawn
        elif ord(ch) in drawable:
            out.append(ch)
        else:
            out.append(MISSING_GLYPH)
    s = " ".join("".join(out).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _title(ax: Axes, text: str) -> None:
    ax.set_title(plain(text, 110), loc="left", fontsize=TITLE_SIZE, fontweight="bold", color=INK, parse_math=False)


def _legend(ax: Axes, handles: list[Any], labels: Sequence[str], **kwargs: Any) -> None:
    legend = ax.legend(handles, [plain(s) for s in labels], fontsize=SMALL, frameon=False, **kwargs)
    for t in legend.get_texts():
        t.set_parse_math(False)


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=SMALL, colors=INK)


def _message(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, transform=ax.transAxes, parse_math=False)
    ax.set_axis_off()


def _date_ticks(ax: Axes, days: Sequence[date]) -> None:
    x = np.arange(len(days))
    step = max(1, len(days) // 8)
    ax.set_xticks(x[::step], [d.strftime("%b %d") for d in days[::step]])


_PATH_DATA = re.compile(rb'\b(?:d|x|y)="[^"]*"')
_LONG_DECIMAL = re.compile(rb"(\d\.\d)\d+")


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    # Coordinates to 0.1 pt (a tenth of a pixel on screen): a year-long chart's SVG shrinks by a third.
    return _PATH_DATA.sub(lambda m: _LONG_DECIMAL.sub(rb"\1", m.group(0)), buf.getvalue())


def data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


# -- statistics ----------------------------------------------------------------------------
def ctr_interval(clicks: Any, impressions: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval of the CTR under the bandit's Beta(1 + c, 1 + n − c) posterior."""
    c = np.asarray(clicks, dtype=float)
    n = np.asarray(impressions, dtype=float)
    tail = (1.0 - level) / 2.0
    return stats.beta.ppf(tail, 1.0 + c, 1.0 + n - c), stats.beta.ppf(1.0 - tail, 1.0 + c, 1.0 + n - c)


def _ctr_band(clicks: np.ndarray, imps: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = clicks.astype(float)
    n = imps.astype(float)
    ctr = np.divide(c, n, out=np.full_like(c, np.nan), where=n > 0)
    lo, hi = ctr_interval(c, n, level)
    lo[n == 0] = np.nan
    hi[n == 0] = np.nan
    return ctr, lo, hi


def posterior_x_max(clicks: np.ndarray, impressions: np.ndarray) -> float:
    """A shared x range for the arms' densities: past every arm's 99.9th percentile."""
    if len(clicks) == 0:
        return 0.05
    hi = stats.beta.ppf(0.999, 1 + np.asarray(clicks), 1 + np.asarray(impressions) - np.asarray(clicks))
    return float(min(1.0, max(0.005, np.max(hi) * 1.1)))


def arm_color(position: int) -> str:
    return PALETTE[position % len(PALETTE)]


# -- charts ----------------------------------------------------------------------------------
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
    fig = Figure(figsize=(9.0, 3.0))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88)
    ax = fig.add_subplot()
    _style(ax)
    if len(days) == 0:
        _message(ax, "no delivery reported yet")
    else:
        x = np.arange(len(days))
        ctr, lo, hi = _ctr_band(np.asarray(clicks), np.asarray(impressions))
        handles = [
            ax.fill_between(x, lo * 100, hi * 100, color=ACCENT, alpha=0.15, linewidth=0),
            # A dot per day while a dot is readable; a long series is a line.
            ax.plot(x, ctr * 100, color=ACCENT, marker="o" if len(days) <= 90 else "", markersize=2.5, linewidth=1.2)[
                0
            ],
        ]
        labels = ["95% interval", "daily CTR"]
        if baseline_ctr is not None:
            handles.append(ax.axhline(baseline_ctr * 100, color=INK, linestyle="--", linewidth=1))
            labels.append("baseline")
        if detected_day is not None and days[0] <= detected_day:
            # On the day's point if it has one, else between the neighbours (the tick day follows the data).
            pos = bisect.bisect_left(days, detected_day)
            at = pos if pos < len(days) and days[pos] == detected_day else pos - 0.5
            handles.append(ax.axvline(at, color=ALERT, linewidth=1.2))
            labels.append(f"fatigue detected {detected_day.isoformat()}")
        _date_ticks(ax, days)
        ax.set_ylabel("CTR (%)", fontsize=FONT_SIZE)
        _legend(ax, handles, labels, loc="upper right")
    _title(ax, title)
    return _svg(fig)


def posteriors_chart(
    clicks: Sequence[int],
    impressions: Sequence[int],
    labels: Sequence[str],
    positions: Sequence[int],
    legend: bool = True,
) -> bytes:
    """Every arm's CTR posterior, Beta(1 + clicks, 1 + impressions − clicks), on one axis: overlap is doubt.

    ``legend=False`` when the page shows the key itself (the dashboard's arm table, in the same colours).
    """
    fig = Figure(figsize=(9.0, 2.6))
    fig.subplots_adjust(left=0.03, right=0.84 if legend else 0.98, bottom=0.17, top=0.88)
    ax = fig.add_subplot()
    _style(ax)
    if len(clicks) == 0 or sum(impressions) == 0:
        _message(ax, "no test delivery reported yet")
    else:
        c, n = np.asarray(clicks), np.asarray(impressions)
        x_max = posterior_x_max(c, n)
        x = np.linspace(0.0, x_max, 200)
        handles = []
        for ci, ni, pos in zip(c, n, positions, strict=True):
            pdf = stats.beta.pdf(x, 1 + ci, 1 + ni - ci)
            ax.fill_between(x * 100, pdf, color=arm_color(pos), alpha=0.18, linewidth=0)
            handles.append(ax.plot(x * 100, pdf, color=arm_color(pos), linewidth=1.3)[0])
        ax.set_xlim(0, x_max * 100)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlabel("CTR (%)", fontsize=FONT_SIZE)
        if legend:
            _legend(ax, handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _title(ax, "what each arm's CTR may be (posterior density)")
    return _svg(fig)


def posterior_chart(clicks: int, impressions: int, *, x_max: float, color: str = ACCENT, winner: bool = False) -> bytes:
    """A small density plot of one arm's CTR posterior, Beta(1 + clicks, 1 + impressions − clicks)."""
    fig = Figure(figsize=(2.4, 0.9))
    fig.subplots_adjust(left=0.04, right=0.96, bottom=0.42, top=0.97)
    ax = fig.add_subplot()
    _style(ax)
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


def allocation_chart(
    days: Sequence[date],
    weights: Sequence[Sequence[float]],
    labels: Sequence[str],
    positions: Sequence[int] = (),
    legend: bool = True,
) -> bytes:
    """The bandit's share of the test budget per arm, day by day (stacked); ``legend`` as in posteriors_chart."""
    fig = Figure(figsize=(9.0, 2.6))
    fig.subplots_adjust(left=0.07, right=0.84 if legend else 0.98, bottom=0.14, top=0.88)
    ax = fig.add_subplot()
    _style(ax)
    if not days:
        _message(ax, "no allocation yet")
    else:
        w = np.asarray(weights, dtype=float).T * 100
        # One stepped band per arm (one artist each, not one bar per arm and day: a year of days stays cheap).
        edges = np.repeat(np.arange(len(days) + 1) - 0.5, 2)[1:-1]
        bottom = np.zeros(len(days))
        handles = []
        for i in range(len(labels)):
            top = bottom + w[i]
            color = arm_color(positions[i] if i < len(positions) else i)
            handles.append(ax.fill_between(edges, np.repeat(bottom, 2), np.repeat(top, 2), color=color, linewidth=0))
            bottom = top
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.5, len(days) - 0.5)
        _date_ticks(ax, days)
        ax.set_ylabel("share of test budget (%)", fontsize=FONT_SIZE)
        if legend:
            _legend(ax, handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _title(ax, "allocation over time")
    return _svg(fig)


# -- the cache -------------------------------------------------------------------------------
def _feed(h: Any, value: Any) -> None:
    # Arrays by their bytes (a numpy repr elides the middle of a long array), containers element by element.
    if isinstance(value, np.ndarray):
        h.update(f"nd{value.dtype}{value.shape}:".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, list | tuple):
        h.update(f"{type(value).__name__}{len(value)}[".encode())
        for item in value:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(f"{type(value).__name__}:{value!r}".encode())
    h.update(b"\x1f")


def _digest(parts: Sequence[Any]) -> str:
    h = hashlib.sha256()
    _feed(h, list(parts))
    return h.hexdigest()


class ChartCache:
    """Rendered charts as data URIs, keyed by a hash of everything drawn (LRU, bounded in bytes).

    The lock covers the dictionary only: two requests that miss on the same
    chart both render it (the same bytes), and nothing waits for a render.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def uri(self, render: Callable[..., bytes], *args: Any, **kwargs: Any) -> str:
        """``data_uri(render(*args, **kwargs))``, rendered once per distinct arguments."""
        key = _digest([render.__module__, render.__qualname__, args, sorted(kwargs.items())])
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        value = data_uri(render(*args, **kwargs))
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._size += len(value)
                while self._size > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
        return value
