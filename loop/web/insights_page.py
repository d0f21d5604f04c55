"""The dashboard's Insights page: each trait's effect on CTR, its interval, and a chart.

The numbers come from ``loop.insights`` (the same fit as ``creative-loop
insights``).  Trait values can come from a config (prompt attribute
options) and are drawn as chart labels: matplotlib's math text is switched
off for every label, so ``$...$`` in a value stays literal text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sqlmodel import Session

from loop.config import Config
from loop.insights import AccountInsights, insights, plans_for, sentence
from loop.web.charts import ACCENT, ALERT, FONT_SIZE, INK, MUTED, SMALL, _message, _style, _svg, _title, data_uri, plain
from policies.errors import NotFound

# The chart stops growing here: a level past it is in the table, not drawn.
MAX_ROWS = 40


def effects_chart(account: AccountInsights) -> bytes:
    """Each tried level's CTR effect (%) with its credible interval, one row per level (a forest plot)."""
    from connectors.images.traits import describe

    effects = account.effects[:MAX_ROWS]
    level = int(round(100 * account.posterior.level))
    fig = Figure(figsize=(7.5, 0.9 + 0.24 * max(1, len(effects))), layout="constrained")
    ax = fig.add_subplot()
    _style(ax)
    if not effects:
        _message(ax, "no decided experiment yet")
        return _svg(fig)
    y = np.arange(len(effects))[::-1]
    for yi, e in zip(y, effects, strict=True):
        color = (ACCENT if e.pct > 0 else ALERT) if e.reliable else MUTED
        ax.plot([e.pct_lo, e.pct_hi], [yi, yi], color=color, linewidth=2, solid_capstyle="butt")
        ax.plot([e.pct], [yi], marker="o", markersize=4, color=color)
        # Labels are literal text (math text off, undrawable glyphs replaced): a value is whatever a config said.
        ax.text(-0.01, yi, plain(describe(e.family, e.value)), transform=ax.get_yaxis_transform(), ha="right",
                va="center", fontsize=SMALL, color=INK, parse_math=False)  # fmt: skip
        ax.text(1.01, yi, f"n={e.variants}", transform=ax.get_yaxis_transform(), ha="left", va="center",
                fontsize=6, color=MUTED, parse_math=False)  # fmt: skip
    ax.axvline(0.0, color=INK, linewidth=0.8)
    ax.set_yticks([])
    ax.set_ylim(-0.7, len(effects) - 0.3)
    ax.set_xlabel(f"effect on CTR against the average variant (%), {level} % credible interval", fontsize=FONT_SIZE)
    _title(ax, "what wins")
    return _svg(fig)


def insights_context(session: Session, cfg: Config, campaign: str | None) -> dict[str, Any]:
    """What the page shows: per account, the header, the rows and the chart."""
    plans = plans_for(cfg)
    if campaign is not None and campaign not in {p.id for p in plans}:
        raise NotFound(f"no campaign {campaign!r}", campaign=campaign)
    accounts = []
    for account in insights(session, plans, campaign=campaign):
        rows = [
            {
                "family": e.family,
                "value": e.value,
                "effect": f"{e.pct:+.1f} %",
                "interval": f"[{e.pct_lo:+.1f}, {e.pct_hi:+.1f}]",
                "variants": e.variants,
                "reliable": e.reliable,
                "sentence": sentence(e),
                "direction": "up" if e.pct > 0 else "down",
            }
            for e in account.effects
        ]
        spread = {
            f: float(np.median(s)) for f, s in account.posterior.family_scale.items() if account.posterior.variants
        }
        accounts.append(
            {
                "header": account.header(),
                "rows": rows,
                "chart": data_uri(effects_chart(account)),
                "untried": [f"{f}={v}" for f, v in account.untried],
                "spread": {f: f"±{100 * math.expm1(v):.0f} %" for f, v in spread.items()},
                "level": int(round(100 * account.posterior.level)),
            }
        )
    return {"accounts": accounts, "campaign": campaign, "campaigns": [p.id for p in plans]}
