"""Offline simulation: the real loop against the simulated platform on a virtual clock.

Each simulated day the loop ticks (seeing only what was reported through
yesterday) and then the platform delivers the day.  The result is the JSON
document of DESIGN.md, scored with the simulator's hidden truth.

Definitions used in the result:
- ``regret_clicks``: clicks lost by testing, Σ over test days and arms of
  impressions × (best arm's true CTR − the arm's true CTR);
- ``clicks_recovered`` (extension): expected clicks the scaled winners earned
  above what their fatigued parents would have earned on the same
  impressions;
- ``cost_per_winning_asset``: (test spend + generation spend) / scaled winners.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from connectors.ads.scenario import Scenario
from connectors.ads.simulated import SimulatedAdPlatform
from connectors.images.base import ImageGenerator
from loop import events
from loop.app import make_generators, open_engine
from loop.config import Config, to_major
from loop.plans import campaign_plans
from loop.runtime import Runtime
from loop.tick import tick
from storage.db import session as open_session
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, Creative, DailyMetric, Experiment
from storage.safenames import safe_component
from storage.states import CreativeRole, ExperimentState

TIERINGS = ("tiered", "pro-only")


@dataclass
class SimulationRun:
    result: dict[str, Any]
    runtime: Runtime
    platform: SimulatedAdPlatform
    errors: list[str] = field(default_factory=list)  # "day N: ..." for each error a tick reported


def run_simulation(
    cfg: Config,
    scenario: Scenario,
    *,
    scenario_name: str = "bundled example",
    days: int | None = None,
    tiering: str = "tiered",
    policy: str | None = None,
    out_dir: str | Path | None = None,
    database_url: str | None = None,
    on_day: Callable[[int, int], None] | None = None,
    generators: dict[str, ImageGenerator] | None = None,
    selection: str | None = None,
    source_size: int = 1080,
) -> SimulationRun:
    """Simulate ``days`` days (default: the scenario's) and return the scored result.

    ``generators`` replaces the config's image backends (e.g. a small
    ``ProceduralGenerator`` for fast policy comparisons: images do not change
    the simulator's outcomes).  ``selection`` overrides every campaign's draft
    selection strategy (``model`` | ``first``).  ``source_size`` is the side of
    the simulator's artwork for the scenario's ads (smaller for small generators).
    """
    if tiering not in TIERINGS:
        raise ValueError(f"tiering: expected one of {TIERINGS}, got {tiering!r}")
    days = days or scenario.days
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("simulate.db", "simulate.db-wal", "simulate.db-shm"):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    url = database_url or (f"sqlite:///{out / 'simulate.db'}" if out else "sqlite://")
    engine = open_engine(url)
    platform = SimulatedAdPlatform(
        scenario, start=date.fromisoformat(cfg.model.simulated.start_date), source_size=source_size
    )
    overrides: dict[str, Any] = {"policy": policy} if policy else {}
    if selection:
        overrides["selection"] = selection  # the draft selection strategy (issue 17), for comparisons
    images_root = (out / "images") if out else Path(cfg.data_dir) / "simulate-images"
    rt = Runtime(
        engine=engine,
        platform=platform,
        generators=generators if generators is not None else make_generators(cfg),
        images=ImageStore(images_root),
        plans=campaign_plans(cfg, scenario, **overrides),
        approval="none",  # nobody approves inside a simulation
        tiering=tiering,
        backfill_days=2,
    )
    errors: list[str] = []
    for i in range(days):
        errors += [f"day {i}: {e}" for e in tick(rt, platform.today()).errors]
        platform.run_day()
        if on_day is not None:
            on_day(i + 1, days)
    policy_name = policy or rt.plans[0].settings.policy
    result = score(rt, platform, scenario_name, policy_name, tiering, days)
    return SimulationRun(result, rt, platform, errors)


def score(
    rt: Runtime, platform: SimulatedAdPlatform, scenario_name: str, policy: str, tiering: str, days: int
) -> dict[str, Any]:
    with open_session(rt.engine) as session:
        campaigns = [_score_campaign(session, platform, plan.id, plan.exponent, plan.currency) for plan in rt.plans]
    return {"scenario": scenario_name, "policy": policy, "tiering": tiering, "days": days, "campaigns": campaigns}


def _ad_label(session: Session, platform: SimulatedAdPlatform, ad_id: str) -> str:
    creative = session.exec(select(Creative).where(Creative.platform_ad_id == ad_id)).first()
    if creative is None:
        return ad_id
    if creative.role == CreativeRole.LIVE or creative.parent_id is None:
        return creative.label or ad_id
    # A scaled winner: name it by its lineage, e.g. "hero/v3-pro".
    exp = session.get(Experiment, creative.experiment_id) if creative.experiment_id else None
    root = session.get(Creative, exp.parent_creative_id) if exp is not None else None
    return f"{root.label}/{creative.label}" if root is not None else (creative.label or creative.id)


def _score_campaign(
    session: Session, platform: SimulatedAdPlatform, campaign_id: str, digits: int = 2, currency: str = "USD"
) -> dict[str, Any]:
    ledger = Ledger(session)
    # Spend over the whole run (a config's cap may hold per month: the cap shown is one period's).
    test = replace(ledger.summary(campaign_id, "test"), spent=ledger.spent(campaign_id, "test"))
    credit = replace(ledger.summary(campaign_id, "credit"), spent=ledger.spent(campaign_id, "credit"))
    exps = session.exec(
        select(Experiment)
        .where(Experiment.campaign_id == campaign_id)
        .order_by(col(Experiment.created_at), col(Experiment.id))
    ).all()
    detected_by_ad: dict[str, int] = {}
    for exp in exps:
        parent = session.get(Creative, exp.parent_creative_id)
        if parent is not None and parent.platform_ad_id and exp.detected_on is not None:
            detected_by_ad.setdefault(parent.platform_ad_id, platform.day_index(exp.detected_on))

    fatigue, false_alarms = [], 0
    main_ads = [a for a in platform.ads.values() if a.campaign == campaign_id and a.adset_id.startswith("main:")]
    for ad in main_ads:
        onset = platform.oracle_onset(ad.ad_id)
        detected = detected_by_ad.get(ad.ad_id)
        if onset is None and detected is None:
            continue
        fatigue.append(
            {"creative": _ad_label(session, platform, ad.ad_id), "true_onset_day": onset, "detected_day": detected}
        )
        if detected is not None and (onset is None or detected < onset):
            false_alarms += 1

    experiments, regret, recovered, winners = [], 0.0, 0.0, 0
    for exp in exps:
        arms = session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all()
        arm_ctr = {
            a.creative_id: platform.ads[a.platform_ad_id].base_ctr for a in arms if a.platform_ad_id in platform.ads
        }
        best = max(arm_ctr.values(), default=None)
        if best is not None:
            for m in session.exec(select(DailyMetric).where(DailyMetric.creative_id.in_(list(arm_ctr)))).all():  # type: ignore[attr-defined]
                regret += m.impressions * (best - arm_ctr[m.creative_id])
        parent = session.get(Creative, exp.parent_creative_id)
        winner = session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None
        n_variants = len(
            session.exec(
                select(Creative).where(Creative.experiment_id == exp.id, Creative.role == CreativeRole.DRAFT)
            ).all()
        )
        if exp.state == ExperimentState.SCALED and exp.scaled_creative_id:
            winners += 1
            scaled = session.get(Creative, exp.scaled_creative_id)
            if scaled is not None and parent is not None and scaled.platform_ad_id and parent.platform_ad_id:
                for m in session.exec(select(DailyMetric).where(DailyMetric.creative_id == scaled.id)).all():
                    d = platform.day_index(m.day)
                    recovered += m.impressions * (
                        platform.oracle_ctr(scaled.platform_ad_id, d) - platform.oracle_ctr(parent.platform_ad_id, d)
                    )
        experiments.append(
            {
                "id": exp.id,
                "parent": parent.label if parent else exp.parent_creative_id,
                "variants": n_variants,
                "winner": winner.label if winner else None,
                "winner_true_ctr": round(arm_ctr[winner.id], 6) if winner and winner.id in arm_ctr else None,
                "best_true_ctr": round(best, 6) if best is not None else None,
                "decided_day": platform.day_index(exp.decided_on) if exp.decided_on else None,
                "test_spend": to_major(ledger.spent(campaign_id, "test", exp.id), digits),
                "credit_spend": to_major(ledger.spent(campaign_id, "credit", exp.id), digits),
                "state": exp.state,
                "reason": exp.reason,
                "arms": len(arms),
                "ended": ending(session, exp),
            }
        )
    imps = clicks = 0
    for (ad_id, _), row in platform.rows.items():
        if platform.ads[ad_id].campaign == campaign_id:
            imps += row.impressions
            clicks += row.clicks
    total_cost = test.spent + credit.spent
    return {
        "id": campaign_id,
        "fatigue": fatigue,
        "false_alarms": false_alarms,
        "experiments": experiments,
        "currency": currency,  # the money below is in its units
        "test_spend": to_major(test.spent, digits),
        "test_spend_cap": to_major(test.cap, digits),
        "credit_spend": to_major(credit.spent, digits),
        "credit_cap": to_major(credit.cap, digits),
        "impressions": imps,
        "clicks": clicks,
        "regret_clicks": round(regret, 1),
        "clicks_recovered": round(recovered, 1),
        "cost_per_winning_asset": to_major(round(total_cost / winners), digits) if winners else None,
    }


# How a test ended, from its stored reason (loop.experiments and policies.bandit word them).
CONFIDENT_PREFIXES = ("prob_best:", "expected_loss:")


def ending(session: Session, exp: Experiment) -> str:
    """``confident`` (P(best) or expected loss), ``best_so_far`` (budget or time ran out), ``abandoned`` or ``open``."""
    declared = session.exec(
        select(AuditEvent).where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.WINNER_DECLARED)
    ).first()
    if declared is not None:
        return "confident" if str(declared.data.get("reason", "")).startswith(CONFIDENT_PREFIXES) else "best_so_far"
    return "abandoned" if exp.state == ExperimentState.ABANDONED else "open"


def export_gallery(rt: Runtime, out_dir: str | Path) -> list[Path]:
    """Copy every generated image to ``out_dir/gallery/<campaign>/<experiment>/<label>.png``."""
    out = Path(out_dir) / "gallery"
    written = []
    with open_session(rt.engine) as session:
        for c in session.exec(select(Creative).where(Creative.image_hash.is_not(None))).all():  # type: ignore[union-attr]
            folder = out / _safe(c.campaign_id) / _safe(c.experiment_id or "live")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{_safe(c.label or c.id)}.png"
            target.write_bytes(rt.images.get_bytes(c.image_hash or ""))
            written.append(target)
    return written


def _safe(name: str) -> str:
    """A name from a platform made safe as one path component (see storage.safenames)."""
    return safe_component(name)


def _toml_key(key: str) -> str:
    return key if key and all(ch.isalnum() or ch in "-_" for ch in key) and key.isascii() else _toml_str(key)


def _toml_str(value: str) -> str:
    import json

    # A JSON string is a TOML basic string once DEL is escaped too (TOML forbids it raw).
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """The config's TOML types (strings, numbers, booleans, arrays, tables, arrays of tables) as text."""
    lines: list[str] = []

    def table(path: list[str], body: dict[str, Any], header: str | None) -> None:
        if header is not None:
            lines.extend(["", header])
        subtables: list[tuple[str, Any, bool]] = []
        for k, v in body.items():
            if isinstance(v, dict):
                subtables.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subtables.append((k, v, True))
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v, many in subtables:
            dotted = ".".join(_toml_key(p) for p in [*path, k])
            if many:
                for item in v:
                    table([*path, k], item, f"[[{dotted}]]")
            else:
                table([*path, k], v, f"[{dotted}]")

    table([], data, None)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_dashboard_config(cfg: Config, out_dir: str | Path, scenario: str | Path | None = None) -> Path:
    """``<out>/creative-loop.toml``: the run's config pointed at the simulation's database and images.

    ``creative-loop serve --config <out>/creative-loop.toml`` then shows this
    run (so do ``status``, ``spend`` and ``report``).
    """
    from storage.tomlfile import read_toml

    out = Path(out_dir).resolve()
    data = read_toml(cfg.path)
    data.setdefault("loop", {}).update(database=f"sqlite:///{out / 'simulate.db'}", data_dir=str(out))
    if scenario is not None:
        data.setdefault("simulated", {})["scenario"] = str(Path(scenario).resolve())
    path = out / "creative-loop.toml"
    header = (
        f"# Written by `creative-loop simulate` from {cfg.path}: opens this run's results with\n"
        f"#   creative-loop serve --config {path}\n"
        "# (and status, spend, report). Not for ticking on: the simulated platform's state was not saved.\n"
    )
    path.write_text(header + dump_toml(data), encoding="utf-8")
    return path
