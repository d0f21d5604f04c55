"""Page contexts with their charts, shared by the live dashboard and the HTML report."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlmodel import Session, col, select

from loop.plans import CampaignPlan
from loop.web import charts, queries
from policies.errors import NotFound
from storage.images import ImageStore
from storage.models import Creative, Experiment
from storage.states import RUNNING_ROLES, CreativeStatus

ImageUrl = Callable[[str | None], str | None]


def make_env() -> Environment:
    """Templates escape everything: any text may have come from the ad platform."""
    env = Environment(
        loader=PackageLoader("loop.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = queries.money
    env.filters["pct"] = lambda v, digits=2: "–" if v is None else f"{100 * v:.{digits}f}%"
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["compact"] = _compact
    env.filters["arms"] = queries.name_arms
    env.globals["flag_items"] = queries.flag_items
    env.globals["arm_color"] = charts.arm_color
    return env


def _when(value: datetime | None) -> str:
    """A wall-clock moment (when something was recorded or a person acted), always in UTC."""
    moment = queries.as_utc(value)
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _day(value: date | None) -> str:
    """A platform day (the ad account's calendar)."""
    return "–" if value is None else value.isoformat()


def _compact(value: Any, limit: int = 400) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def served_image_url(digest: str | None) -> str | None:
    return f"/images/{digest}.png" if digest else None


def embedded_image_url(images: ImageStore, max_side: int = 360) -> ImageUrl:
    """For the offline report: each image as a downscaled PNG data: URI."""
    cache: dict[str, str | None] = {}

    def url(digest: str | None) -> str | None:
        if not digest:
            return None
        if digest not in cache:
            try:
                image = images.open(digest)
            except NotFound:
                cache[digest] = None
                return None
            image.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=True)
            cache[digest] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        return cache[digest]

    return url


def creative_context(session: Session, creative: Creative, cache: charts.ChartCache | None = None) -> dict[str, Any]:
    cache = cache or charts.ChartCache()
    fv = queries.fatigue_view(session, creative)
    chart = cache.uri(
        charts.fatigue_chart,
        fv["days"],
        fv["impressions"],
        fv["clicks"],
        baseline_ctr=fv["baseline_ctr"],
        detected_day=fv["detected_day"],
        title=f"{creative.campaign_id} · {creative.label or creative.id}: daily CTR",
    )
    return {"creative": creative, "fatigue": fv, "chart": chart}


def experiment_context(
    session: Session, exp: Experiment, cache: charts.ChartCache | None = None, target: float = queries.DEFAULT_TARGET
) -> dict[str, Any]:
    cache = cache or charts.ChartCache()
    view = queries.experiment_view(session, exp, target)
    positions = [c["arm"].position for c in view["cards"]]
    view["posteriors"] = cache.uri(
        charts.posteriors_chart,
        [c["clicks"] for c in view["cards"]],
        [c["impressions"] for c in view["cards"]],
        view["labels"],
        positions,
        legend=False,  # the arm table above is the key, in the same colours
    )
    decisions = [row["d"] for row in view["decisions"]]
    view["allocation"] = cache.uri(
        charts.allocation_chart,
        [d.day for d in decisions],
        [d.weights for d in decisions],
        view["labels"],
        positions,
        legend=False,
    )
    return view


def report_context(
    session: Session,
    campaign: str | None,
    *,
    plans: Mapping[str, CampaignPlan] | None = None,
    cache: charts.ChartCache | None = None,
) -> dict[str, Any]:
    """Everything the offline report shows, for one campaign or all."""
    cache = cache or charts.ChartCache()
    plans = plans or {}
    camps = queries.overview(session, plans, campaign=campaign)
    if campaign and not camps:
        raise NotFound(f"no campaign {campaign!r} in the database", campaign=campaign)
    sections = []
    for c in camps:
        cid = c["campaign"].id
        plan = plans.get(cid)
        target = plan.settings.prob_best_target if plan else queries.DEFAULT_TARGET
        creatives = session.exec(
            select(Creative)
            .where(Creative.campaign_id == cid, col(Creative.role).in_(RUNNING_ROLES))
            .order_by(col(Creative.created_at), col(Creative.id))
        ).all()
        # A chart for each ad live now; the paused and replaced ones are listed with their status.
        live = [cr for cr in creatives if cr.platform_ad_id and cr.status == CreativeStatus.ACTIVE]
        fatigue = [creative_context(session, cr, cache) for cr in live]
        exps = session.exec(
            select(Experiment)
            .where(Experiment.campaign_id == cid)
            .order_by(col(Experiment.created_at), col(Experiment.id))
        ).all()
        sections.append(
            {
                "overview": c,
                "fatigue": [f for f in fatigue if len(f["fatigue"]["days"]) > 0],
                "paused": c["paused"],
                "experiments": [experiment_context(session, e, cache, target) for e in exps],
                "lineages": queries.all_lineages(session, cid),
                "ledger": queries.ledger_view(session, cid, plans),
            }
        )
    return {"sections": sections, "campaign": campaign}


def write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
