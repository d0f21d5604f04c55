"""How a policy comparison is shown: the table (terminal, Markdown), the SVG charts and the HTML report.

:mod:`loop.compare` runs the comparison and computes its statistics; this
module only presents a :class:`~loop.compare.Comparison`.  The plotting
library and the dashboard's templates load when a chart or the report is
made, not when the table is printed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loop.compare import Comparison

# -- the table -------------------------------------------------------------------

COLUMNS = (
    "policy",
    "regret (± s.e.)",
    "% of uniform",
    "confident",
    "spend/winner",
    "winner = best",
    "simple regret",
    "net clicks/spend",
    "clicks/run",
    "detect delay",
    "false alarms",
    "test spend",
)


def table_rows(comparison: Comparison) -> list[list[str]]:
    """The comparison table as strings, one list per policy, in :data:`COLUMNS` order."""
    out = []
    for r in comparison.rows:
        out.append(
            [
                r.policy,
                f"{r.regret_mean:,.1f} ± {r.regret_se:,.1f}",
                _fmt(r.regret_pct_of_uniform, "{:.1f}%"),
                f"{r.confident_decisions}/{r.confident_decisions + r.best_so_far_decisions} "
                f"({_fmt(r.confident_share, '{:.0%}')})",
                _fmt(r.spend_per_decided_winner, "{:,.2f}"),
                _fmt(r.winners_truly_best, "{:.0%}"),
                _fmt(r.simple_regret_pct, "{:.1f}%"),
                _fmt(r.net_clicks_per_spend, "{:,.2f}"),
                f"{r.clicks:,.0f}",
                f"{_fmt(r.delay_mean, '{:.1f}')} / {_fmt(r.delay_median, '{:.0f}')} d",
                f"{r.false_alarms_per_run:.2f}",
                f"{r.test_spend:,.2f}",
            ]
        )
    return out


def rich_table(comparison: Comparison) -> Any:
    """The comparison as a ``rich.table.Table`` (what the CLI prints)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from loop.logs import printable

    # The caption names the scenario file a user typed: "[/x]" in it is text, not markup.
    table = Table(title=Text(printable(table_caption(comparison))), box=box.SIMPLE_HEAD)
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in table_rows(comparison):
        table.add_row(*row)
    return table


def markdown_table(comparison: Comparison) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(comparison)]
    return "\n".join(lines)


SELECTION_COLUMNS = (
    "selection",
    "winner CTR / root (± s.e.)",
    "winner / parent",
    "regret (± s.e.)",
    "regret % of best",
    "regret at root CTR (± s.e.)",
    "simple regret",
    "trait coverage (90 %)",
    "runs with a reliable trait",
    "test spend",
    "credits",
    "winners scaled",
    "cost / winning asset",
)


def selection_rows(comparison: Comparison) -> list[list[str]]:
    """The draft-selection table (``--selection``), one list per row, in :data:`SELECTION_COLUMNS` order."""
    out = []
    for r in comparison.rows:
        out.append(
            [
                r.policy,
                f"{_fmt(r.winner_ctr, '{:.4f}')} ± {_fmt(r.winner_ctr_se, '{:.4f}')}",
                _fmt(r.winner_lift, "{:.4f}"),
                f"{r.regret_mean:,.1f} ± {r.regret_se:,.1f}",
                _fmt(r.regret_share, "{:.1%}"),
                f"{_fmt(r.regret_at_root_mean, '{:,.1f}')} ± {_fmt(r.regret_at_root_se, '{:,.1f}')}",
                _fmt(r.simple_regret_pct, "{:.1f}%"),
                _fmt(r.trait_coverage, "{:.1%}"),
                f"{r.runs_with_reliable_trait}/{r.runs}",
                f"{r.test_spend:,.2f}",
                f"{r.credit_spend:,.2f}",
                f"{r.scaled_winners / r.runs:.2f}",
                _fmt(r.cost_per_winning_asset, "{:,.2f}"),
            ]
        )
    return out


def selection_table(comparison: Comparison) -> Any:
    """The draft-selection table as a ``rich.table.Table``."""
    from rich import box
    from rich.table import Table

    table = Table(title="draft selection (means per run; winner CTR relative to the root creative's true CTR)",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    for i, name in enumerate(SELECTION_COLUMNS):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in selection_rows(comparison):
        table.add_row(*row)
    return table


def selection_markdown(comparison: Comparison) -> str:
    lines = ["| " + " | ".join(SELECTION_COLUMNS) + " |", "|" + "|".join(" --- " for _ in SELECTION_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in selection_rows(comparison)]
    return "\n".join(lines)


def table_caption(comparison: Comparison) -> str:
    c = comparison
    return (
        f"policy comparison: {c.scenario} · {c.tiering} · {c.days} days · {c.runs} run(s) per policy "
        f"(seeds {c.seed}–{c.seed + c.runs - 1}, common random numbers)"
    )


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else spec.format(value)


# -- the report ------------------------------------------------------------------


def regret_curves(comparison: Comparison) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per policy: cumulative regret by day, mean over runs, and its standard error."""
    curves = {}
    for p, runs in comparison.summaries.items():
        cum = np.cumsum(np.array([s.daily_regret for s in runs]), axis=1)
        se = cum.std(axis=0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else np.zeros(cum.shape[1])
        curves[p] = (cum.mean(axis=0), se)
    return curves


def _svg_figure(draw: Callable[[Any], None], size: tuple[float, float]) -> bytes:
    import io

    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    # The dashboard's look (charts._RC): stable ids, text as paths, no font needed offline.
    rc: dict[Any, Any] = {"svg.hashsalt": "creative-loop", "svg.fonttype": "path", "font.size": 8,
          "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 9, "axes.titleweight": "bold"}  # fmt: skip
    with rc_context(rc):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig.add_subplot())
        buf = io.BytesIO()
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None})
    return buf.getvalue()


def regret_chart(comparison: Comparison) -> bytes:
    from loop.web.charts import PALETTE

    curves = regret_curves(comparison)

    def draw(ax: Any) -> None:
        x = np.arange(1, comparison.days + 1)
        for i, (p, (mean, se)) in enumerate(curves.items()):
            color = PALETTE[i % len(PALETTE)]
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.15, linewidth=0)
            ax.plot(x, mean, color=color, linewidth=1.4, label=p)
        ax.set_xlabel("simulated day")
        ax.set_ylabel("cumulative regret (clicks)")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.set_title(f"regret over days (mean of {comparison.runs} runs, band ± 1 s.e.)", loc="left")

    return _svg_figure(draw, (9.0, 3.2))


def delay_histogram(comparison: Comparison) -> bytes:
    from loop.web.charts import MUTED, PALETTE

    delays = {p: [d for s in runs for d in s.detection_delays] for p, runs in comparison.summaries.items()}

    def draw(ax: Any) -> None:
        every = [d for ds in delays.values() for d in ds]
        if not every:
            ax.text(0.5, 0.5, "no fatigue detected", ha="center", va="center", color=MUTED, transform=ax.transAxes)
            ax.set_axis_off()
            return
        edges = np.arange(min(every), max(every) + 2) - 0.5
        width = 0.8 / len(delays)
        for i, (p, ds) in enumerate(delays.items()):
            counts, _ = np.histogram(ds, bins=edges)
            centres = edges[:-1] + 0.5 + (i - (len(delays) - 1) / 2) * width
            ax.bar(centres, counts, width=width, color=PALETTE[i % len(PALETTE)], label=p, linewidth=0)
        ax.set_xlabel("days from true onset to detection")
        ax.set_ylabel("detections")
        ax.legend(loc="upper right", fontsize=7, frameon=False)
        ax.set_title("fatigue detection delay", loc="left")

    return _svg_figure(draw, (9.0, 2.8))


def allocation_charts(comparison: Comparison) -> list[dict[str, Any]]:
    """Per policy, the split of run 0's first bandit-driven experiment (same parent for every policy)."""
    from loop.web.charts import allocation_chart, data_uri

    out = []
    for p, runs in comparison.summaries.items():
        alloc = runs[0].allocation if runs else None
        if alloc is None:
            out.append({"policy": p, "experiment": None, "uri": None})
            continue
        days = [date.fromisoformat(d) for d in alloc["days"]]
        labels = [f"{lab} (winner)" if i == alloc["winner"] else lab for i, lab in enumerate(alloc["labels"])]
        svg = allocation_chart(days, alloc["weights"], labels)
        out.append({"policy": p, "experiment": alloc["experiment"], "parent": alloc["parent"], "uri": data_uri(svg)})
    return out


_REPORT = """{% extends "base.html" %}
{% block content %}
<h1>{{ title }}</h1>
<p class="small muted">Generated {{ generated_at|when }}. Every chart is embedded in this file.
{{ c.runs }} run(s) per policy; run r uses seed {{ c.seed }} + r for every policy, and the simulator draws
its noise per (purpose, object, day), so the policies face the same delivery and click noise
(common random numbers). Took {{ "%.0f"|format(c.elapsed_s) }} s.</p>
<div class="card"><table>
<tr>{% for h in columns %}<th{% if not loop.first %} class="num"{% endif %}>{{ h }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for v in row %}<td{% if not loop.first %} class="num"{% endif %}>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="small muted">Means per run, summed over campaigns. Regret: expected clicks lost on the test budget to
arms worse than the experiment's best (true CTRs). Wasted: test impressions on arms that were not truly best.
P(best) ≥ 0.95: mean cumulative test impressions at the first bandit decision whose leader reached it;
"reached" counts those experiments, "truly best" how often that leader had the highest true CTR. "winner = best":
declared winners (including budget-exhausted best-so-far) that were truly best. Detection delay:
detected − true onset day, for detections on or after onset; earlier ones are false alarms.</p></div>
<h2>Regret</h2>
<div class="card"><img class="chart" alt="regret curves" src="{{ regret_uri }}"></div>
<h2>Allocation over time</h2>
<p class="small muted">Run 0's first experiment with bandit decisions, per policy (the same fatigued parent).</p>
{% for a in allocations %}
<div class="card"><h3>{{ a.policy }}{% if a.experiment %} · experiment {{ a.experiment }}{% endif %}</h3>
{% if a.uri %}<img class="chart" alt="allocation {{ a.policy }}" src="{{ a.uri }}">
{% else %}<p class="muted">No bandit decisions in run 0.</p>{% endif %}</div>
{% endfor %}
<h2>Fatigue detection</h2>
<div class="card"><img class="chart" alt="detection delay histogram" src="{{ delay_uri }}"></div>
{% endblock %}
"""


def render_report(comparison: Comparison, *, clock: Callable[[], datetime] | None = None) -> str:
    """The comparison as one self-contained HTML page (charts embedded as data URIs)."""
    from loop.web.charts import data_uri
    from loop.web.views import make_env

    now = (clock or (lambda: datetime.now(UTC)))()
    return (
        make_env()
        .from_string(_REPORT)
        .render(
            c=comparison,
            columns=COLUMNS,
            rows=table_rows(comparison),
            regret_uri=data_uri(regret_chart(comparison)),
            delay_uri=data_uri(delay_histogram(comparison)),
            allocations=allocation_charts(comparison),
            report=True,
            generated_at=now,
            title=table_caption(comparison),
        )
    )


def write_report(comparison: Comparison, out_path: str | Path, *, clock: Callable[[], datetime] | None = None) -> Path:
    """Write the report to ``out_path`` (atomically) and return the path."""
    from loop.web.views import write_file

    return write_file(Path(out_path), render_report(comparison, clock=clock))
