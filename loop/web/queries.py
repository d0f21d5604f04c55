"""Read models for the dashboard and the HTML report: plain dicts, no HTML.

Every function takes an open session and only reads.  Money leaves here in
currency units (``to_major``); the templates format it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from loop import events
from loop.config import to_major
from loop.tick import END_STATES, OPEN_STATES, fatigue_verdicts, series, stored_noise
from policies.bandit import get_policy
from policies.budget import period_label, period_start
from storage.counters import read_all
from storage.ledger import ACCOUNTS, AccountSummary, Ledger
from storage.models import (
    Arm,
    AuditEvent,
    BanditDecision,
    Campaign,
    Creative,
    DailyMetric,
    Experiment,
    LedgerEntry,
    PlatformMutation,
    TickRun,
)

# A bar turns amber at this share of its cap, red at the cap.
WARN_SHARE = 0.8
# Flag keys a generator may record on a creative, and how the pages name them.
KNOWN_FLAGS = {
    "brand_delta_e": "brand ΔE",
    "delta_e": "brand ΔE",
    "fidelity_score": "fidelity",
}
STAGES = ("detected", "exploring", "testing", "decided", "rendering", "scaled")


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- money ------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One account against its cap, for the overview's bars."""

    account: str
    cap: float
    spent: float
    reserved: float
    left: float
    spent_pct: float
    reserved_pct: float
    level: str  # ok | warn | full
    period: str = ""  # the cap's period ("2026-01", "2026-W03"); empty for a lifetime cap

    @classmethod
    def of(cls, s: AccountSummary) -> Bar:
        used = s.spent + s.reserved
        share = used / s.cap if s.cap else (1.0 if used else 0.0)
        level = "full" if share >= 1.0 else "warn" if share >= WARN_SHARE else "ok"
        spent_pct = min(100.0, 100.0 * s.spent / s.cap) if s.cap else 0.0
        reserved_pct = min(100.0 - spent_pct, 100.0 * s.reserved / s.cap) if s.cap else 0.0
        return cls(
            s.account,
            to_major(s.cap),
            to_major(s.spent),
            to_major(s.reserved),
            to_major(s.left),
            round(spent_pct, 1),
            round(reserved_pct, 1),
            level,
            "" if s.period == "lifetime" else s.label,
        )


# -- creatives and fatigue --------------------------------------------------------------
def recent_ctr(session: Session, creative_id: str, days: int = 7) -> float | None:
    rows = session.exec(
        select(DailyMetric).where(DailyMetric.creative_id == creative_id).order_by(col(DailyMetric.day).desc())
    ).all()[:days]
    imps = sum(r.impressions for r in rows)
    return sum(r.clicks for r in rows) / imps if imps else None


def fatigue_view(session: Session, creative: Creative) -> dict[str, Any]:
    """The creative's daily series and why it is (or is not) fatigued.

    When an experiment was opened for it, the stored verdict is the one the
    loop acted on; otherwise the detector is run on the series as it stands.
    """
    days, imps, clicks = series(session, creative.id, date.max)
    exp = session.exec(
        select(Experiment)
        .where(Experiment.parent_creative_id == creative.id)
        .order_by(col(Experiment.created_at).desc())
    ).first()
    view: dict[str, Any] = {
        "days": days,
        "impressions": imps,
        "clicks": clicks,
        "experiment": exp,
        "status": "too little data",
        "baseline_ctr": None,
        "detected_day": None,
        "reason": "",
        "statistic": None,
        "threshold": None,
    }
    if exp is not None and exp.verdict:
        v = exp.verdict
        view.update(
            status="fatigued" if exp.state not in END_STATES else f"replaced ({exp.state})",
            baseline_ctr=v.get("baseline_ctr"),
            detected_day=date.fromisoformat(v["day"]) if v.get("day") else exp.detected_on,
            reason=v.get("reason", ""),
            statistic=v.get("statistic"),
            threshold=v.get("threshold"),
        )
        return view
    if len(days) >= 2:
        try:
            # As the loop runs it: with the noise model it stored for these days, if it tested them all.
            noise = stored_noise(session, creative.campaign_id, days[0], days[-1] + timedelta(days=1))
            if noise is not None and len(noise.df) != len(days):
                noise = None  # a gap in the series: the stored calendar does not line up
            verdict = fatigue_verdicts(imps[None], clicks[None], days[0], noise)[0]
        except ValueError as exc:
            view["reason"] = f"the detector refused this series: {exc}"
            return view
        view.update(
            status="fatigued" if verdict.fatigued else "healthy",
            baseline_ctr=verdict.baseline_ctr if np.isfinite(verdict.baseline_ctr) else None,
            detected_day=days[verdict.day] if verdict.day is not None else None,
            reason=verdict.reason,
            statistic=verdict.statistic,
            threshold=verdict.threshold,
        )
    return view


def overview(session: Session) -> list[dict[str, Any]]:
    ledger = Ledger(session)
    out = []
    for camp in session.exec(select(Campaign).order_by(Campaign.id)).all():
        live = session.exec(
            select(Creative)
            .where(
                Creative.campaign_id == camp.id,
                col(Creative.role).in_(("live", "pro")),
                col(Creative.platform_ad_id).is_not(None),
            )
            .order_by(Creative.created_at, Creative.id)
        ).all()
        creatives = []
        for c in live:
            fv = fatigue_view(session, c)
            creatives.append(
                {"creative": c, "ctr": recent_ctr(session, c.id), "fatigue": fv["status"], "days": len(fv["days"])}
            )
        exps = session.exec(
            select(Experiment)
            .where(Experiment.campaign_id == camp.id)
            .order_by(col(Experiment.created_at).desc(), Experiment.id)
        ).all()
        out.append(
            {
                "campaign": camp,
                "state": "halted" if camp.halted_reason else "active",
                "creatives": creatives,
                "open": [e for e in exps if e.state in OPEN_STATES],
                "ended": [e for e in exps if e.state in END_STATES],
                "bars": [Bar.of(ledger.summary(camp.id, a)) for a in ACCOUNTS],
            }
        )
    return out


# -- experiments --------------------------------------------------------------------------
def _stage_of(event: AuditEvent) -> str | None:
    stage = (event.data or {}).get("stage")
    return {
        events.FATIGUE_DETECTED: "detected",
        events.VARIANTS_GENERATED: "exploring",
        events.ARMS_LAUNCHED: "exploring",
        events.ALLOCATION_SET: "testing",
        events.WINNER_DECLARED: "decided",
        events.PRO_RENDERED: "rendering",
        events.APPROVAL_REQUESTED: f"awaiting approval ({stage})",
        events.APPROVED: f"approved ({stage})",
        events.REJECTED: "rejected",
        events.WINNER_SCALED: "scaled",
        events.EXPERIMENT_ABANDONED: "abandoned",
    }.get(event.name)


def timeline(exp: Experiment, evts: list[AuditEvent]) -> list[dict[str, Any]]:
    """The state machine's stages, each marked done / current / ahead, with when it was reached."""
    reached: dict[str, datetime] = {}
    for e in evts:
        stage = _stage_of(e)
        if stage is not None:
            reached.setdefault(stage, e.at)
    asked = [s for s in reached if s.startswith("awaiting approval")]
    stages: list[str] = []
    for s in STAGES:
        if s == "testing" and "awaiting approval (drafts)" in asked:
            stages.append("awaiting approval (drafts)")
        if s == "scaled" and ("awaiting approval (pro)" in asked or exp.waiting_for == "pro"):
            stages.append("awaiting approval (pro)")
        stages.append(s)
    current = f"awaiting approval ({exp.waiting_for})" if exp.state == "awaiting_approval" else exp.state
    if exp.state == "abandoned":
        last = max((stages.index(s) for s in reached if s in stages), default=0)
        stages = stages[: last + 1] + ["abandoned"]
    idx = stages.index(current) if current in stages else len(stages) - 1
    return [
        {
            "name": s,
            "status": "done" if i < idx else "current" if i == idx else "ahead",
            "at": reached.get(s),
        }
        for i, s in enumerate(stages)
    ]


def experiment_view(session: Session, exp: Experiment) -> dict[str, Any]:
    from loop.experiments import arm_counts

    arms = list(session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(Arm.position)).all())
    clicks, imps = arm_counts(session, arms, date.max)
    prob = np.zeros(len(arms))
    if arms and imps.sum() > 0:
        # Seeded with the experiment's seed, so the page shows the same figure on every load.
        prob = get_policy(exp.policy).prob_best(clicks, imps, np.random.default_rng(exp.seed))
    cards = []
    for i, arm in enumerate(arms):
        creative = session.get(Creative, arm.creative_id)
        cards.append(
            {
                "arm": arm,
                "creative": creative,
                "impressions": int(imps[i]),
                "clicks": int(clicks[i]),
                "ctr": clicks[i] / imps[i] if imps[i] else None,
                "prob_best": float(prob[i]),
                "winner": arm.creative_id == exp.winner_creative_id,
            }
        )
    evts = list(
        session.exec(
            select(AuditEvent).where(AuditEvent.experiment_id == exp.id).order_by(AuditEvent.at, AuditEvent.id)
        ).all()
    )
    decisions = list(
        session.exec(
            select(BanditDecision).where(BanditDecision.experiment_id == exp.id).order_by(BanditDecision.day)
        ).all()
    )
    mutations = list(
        session.exec(
            select(PlatformMutation).where(PlatformMutation.experiment_id == exp.id).order_by(PlatformMutation.id)
        ).all()
    )
    ledger = Ledger(session)
    return {
        "experiment": exp,
        "parent": session.get(Creative, exp.parent_creative_id),
        "winner": session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None,
        "pro": session.get(Creative, exp.pro_creative_id) if exp.pro_creative_id else None,
        "cards": cards,
        "clicks": clicks,
        "impressions": imps,
        "timeline": timeline(exp, evts),
        "events": evts,
        "decisions": decisions,
        "mutations": mutations,
        "mismatches": [e for e in evts if e.name == events.DELIVERY_MISMATCH],
        "test_spend": to_major(ledger.spent(exp.campaign_id, "test", exp.id)),
        "credit_spend": to_major(ledger.spent(exp.campaign_id, "credit", exp.id)),
    }


# -- gallery and approvals ------------------------------------------------------------------
def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _verdict(ok: Any) -> str:
    return "" if ok is None else " ✓" if ok else " ✗ over tolerance"


def flag_items(creative: Creative) -> list[tuple[str, str]]:
    """A creative's quality flags, brand ΔE and fidelity first.

    ``flags["brand"]`` is ``policies.brand.BrandVerdict.as_flags()`` and
    ``flags["fidelity"]`` ``policies.fidelity.FidelityVerdict.as_flags()``;
    plain numbers under other names are shown as they are.
    """
    flags = dict(creative.flags or {})
    known: list[tuple[str, str]] = []
    brand = flags.pop("brand", None)
    if isinstance(brand, dict) and "worst_delta_e" in brand:
        known.append(("brand ΔE", f"{float(brand['worst_delta_e']):.2f}{_verdict(brand.get('ok'))}"))
    elif brand is not None:
        known.append(("brand", _shown(brand)))
    fidelity = flags.pop("fidelity", None)
    if isinstance(fidelity, dict) and "ssim" in fidelity:
        known.append(("fidelity (SSIM)", f"{float(fidelity['ssim']):.3f}{_verdict(fidelity.get('ok'))}"))
    elif isinstance(fidelity, int | float):
        known.append(("fidelity", f"{float(fidelity):.3f}"))
    elif fidelity is not None:
        known.append(("fidelity", _shown(fidelity)))
    rest = []
    for key, value in sorted(flags.items()):
        (known if key in KNOWN_FLAGS else rest).append((KNOWN_FLAGS.get(key, key), _shown(value)))
    return known + rest


def lineage(session: Session, exp: Experiment) -> dict[str, Any]:
    """parent → drafts → winner → pro render → scaled ad, for one experiment."""
    drafts = list(
        session.exec(
            select(Creative)
            .where(Creative.experiment_id == exp.id, Creative.role == "draft")
            .order_by(Creative.created_at, Creative.id)
        ).all()
    )
    pro = session.get(Creative, exp.pro_creative_id) if exp.pro_creative_id else None
    scaled = session.get(Creative, exp.scaled_creative_id) if exp.scaled_creative_id else None
    return {
        "experiment": exp,
        "parent": session.get(Creative, exp.parent_creative_id),
        "drafts": drafts,
        "winner_id": exp.winner_creative_id,
        "pro": pro,
        "scaled": scaled if scaled is not None and scaled.id != (pro.id if pro else None) else None,
    }


def gallery(session: Session, campaign: str | None = None) -> list[dict[str, Any]]:
    stmt = select(Experiment).order_by(Experiment.campaign_id, Experiment.created_at, Experiment.id)
    if campaign:
        stmt = stmt.where(Experiment.campaign_id == campaign)
    return [lineage(session, e) for e in session.exec(stmt).all()]


def approvals(session: Session) -> list[dict[str, Any]]:
    waiting = session.exec(
        select(Experiment).where(Experiment.state == "awaiting_approval").order_by(Experiment.updated_at, Experiment.id)
    ).all()
    out = []
    for exp in waiting:
        item = lineage(session, exp)
        asked = session.exec(
            select(AuditEvent)
            .where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.APPROVAL_REQUESTED)
            .order_by(col(AuditEvent.at).desc())
        ).first()
        item["asked_at"] = asked.at if asked else exp.updated_at
        item["winner"] = session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None
        out.append(item)
    return out


def recent_decisions(session: Session, limit: int = 20) -> list[AuditEvent]:
    return list(
        session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.name).in_((events.APPROVED, events.REJECTED)))
            .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
            .limit(limit)
        ).all()
    )


# -- ledger -------------------------------------------------------------------------------
LEDGER_COLUMNS = (
    "campaign", "period", "period_start", "account", "cap", "reserved", "released", "spent", "open", "left", "currency",
)  # fmt: skip


def ledger_view(session: Session, campaign: str | None = None) -> list[dict[str, Any]]:
    """Per campaign: caps now, a row per cap period and account, credits by tier, cost per winner.

    An entry belongs to the period of its platform day (``LedgerEntry.day``),
    the same period whose cap it counted against.
    """
    ledger = Ledger(session)
    stmt = select(Campaign).order_by(Campaign.id)
    if campaign:
        stmt = stmt.where(Campaign.id == campaign)
    out = []
    for camp in session.exec(stmt).all():
        entries = session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.campaign_id == camp.id)
            .order_by(LedgerEntry.created_at, LedgerEntry.id)
        ).all()
        periods: dict[tuple[date | None, str], dict[str, int]] = defaultdict(
            lambda: {"reserve": 0, "release": 0, "actual": 0}
        )
        tiers: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "spent": 0})
        for e in entries:
            day = e.day or (as_utc(e.created_at) or datetime.now(UTC)).date()
            periods[(period_start(day, camp.cap_period), e.account)][e.kind] += e.amount_minor
            if e.account == "credit" and e.kind == "actual":
                tiers[e.tier or "?"]["count"] += 1
                tiers[e.tier or "?"]["spent"] += e.amount_minor
        summaries = {a: ledger.summary(camp.id, a) for a in ACCOUNTS}
        winners = len(
            session.exec(
                select(Experiment.id).where(Experiment.campaign_id == camp.id, Experiment.state == "scaled")
            ).all()
        )
        total = summaries["test"].spent + summaries["credit"].spent
        rows = [
            {
                "campaign": camp.id,
                "period": period_label(start, camp.cap_period),
                "period_start": start.isoformat() if start else "",
                "account": account,
                "cap": to_major(summaries[account].cap),
                "reserved": to_major(k["reserve"]),
                "released": to_major(k["release"]),
                "spent": to_major(k["actual"]),
                "open": to_major(max(0, k["reserve"] - k["release"])),
                "left": to_major(max(0, summaries[account].cap - k["actual"] - max(0, k["reserve"] - k["release"]))),
                "currency": camp.currency,
            }
            for (start, account), k in sorted(periods.items(), key=lambda kv: (kv[0][0] or date.min, kv[0][1]))
        ]
        out.append(
            {
                "campaign": camp,
                "bars": [Bar.of(summaries[a]) for a in ACCOUNTS],
                "months": rows,
                "tiers": {t: {"count": v["count"], "spent": to_major(v["spent"])} for t, v in sorted(tiers.items())},
                "winners": winners,
                "cost_per_winner": to_major(round(total / winners)) if winners else None,
            }
        )
    return out


# -- audit --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    name: str = ""
    campaign: str = ""
    experiment: str = ""
    actor: str = ""
    text: str = ""
    limit: int = 200


def audit_view(session: Session, f: AuditFilter) -> dict[str, Any]:
    stmt = select(AuditEvent)
    if f.name:
        stmt = stmt.where(AuditEvent.name == f.name)
    if f.campaign:
        stmt = stmt.where(AuditEvent.campaign_id == f.campaign)
    if f.experiment:
        stmt = stmt.where(AuditEvent.experiment_id == f.experiment)
    if f.actor:
        stmt = stmt.where(col(AuditEvent.actor).contains(f.actor, autoescape=True))
    rows = list(session.exec(stmt.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())).all())
    if f.text:
        needle = f.text.lower()
        rows = [r for r in rows if needle in json.dumps(r.data, default=str).lower()]
    mstmt = select(PlatformMutation)
    if f.campaign:
        mstmt = mstmt.where(PlatformMutation.campaign_id == f.campaign)
    if f.experiment:
        mstmt = mstmt.where(PlatformMutation.experiment_id == f.experiment)
    mutations = [] if f.name or f.actor else list(session.exec(mstmt.order_by(col(PlatformMutation.id).desc())).all())
    if f.text:
        needle = f.text.lower()
        mutations = [m for m in mutations if needle in (m.key + m.kind + m.error).lower()]
    names = sorted(set(session.exec(select(AuditEvent.name).distinct()).all()))
    campaigns = sorted(set(session.exec(select(Campaign.id)).all()))
    return {
        "events": rows[: f.limit],
        "total": len(rows),
        "mutations": mutations[: f.limit],
        "mutations_total": len(mutations),
        "names": names,
        "campaigns": campaigns,
    }


# -- health and metrics -----------------------------------------------------------------------
def health(session: Session, now: datetime, interval: timedelta) -> dict[str, Any]:
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    last = session.exec(
        select(TickRun).where(TickRun.dry_run == False).order_by(col(TickRun.started_at).desc())  # noqa: E712
    ).first()
    last_at = as_utc(last.finished_at or last.started_at) if last else None
    alive = last_at is not None and now - last_at <= 2 * interval
    return {
        "status": "ok" if alive else "degraded",
        "database": True,
        "scheduler_alive": alive,
        "last_tick": last_at.isoformat(timespec="seconds") if last_at else None,
        "last_tick_ok": last.ok if last else None,
        "interval_seconds": interval.total_seconds(),
    }


def _metric_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_") or "unnamed"
    return f"creative_loop_{cleaned}"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    body = ",".join(f'{k}="{_label_value(str(v))}"' for k, v in sorted(labels.items()))
    return "{" + body + "}" if body else ""


def _parse_labels(text_: str) -> dict[str, str]:
    """Labels as ``storage.counters.labels_text`` wrote them (k="v",...)."""
    out: dict[str, str] = {}
    for part in text_.split('",'):
        if "=" not in part:
            continue
        key, _, value = part.partition("=")
        key = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in key.strip())
        if key:
            out[key] = value.strip().strip('"')
    return out


def metrics_text(session: Session) -> str:
    """Everything ``/metrics`` serves, in the Prometheus text exposition format."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for suffix_labels, value in samples:
            lines.append(f"{name}{suffix_labels} {float(value)!r}")

    ticks = session.exec(select(TickRun).where(TickRun.dry_run == False)).all()  # noqa: E712
    by_ok: dict[str, int] = defaultdict(int)
    durations = []
    for t in ticks:
        by_ok["true" if t.ok else "false" if t.ok is False else "unfinished"] += 1
        if t.finished_at is not None:
            durations.append(
                ((as_utc(t.finished_at) or t.finished_at) - (as_utc(t.started_at) or t.started_at)).total_seconds()
            )
    family(
        "creative_loop_ticks_total", "counter", "Ticks run, by outcome.",
        [(_labels(ok=k), v) for k, v in sorted(by_ok.items())] or [(_labels(ok="true"), 0)],
    )  # fmt: skip
    lines.append("# HELP creative_loop_tick_duration_seconds Duration of finished ticks.")
    lines.append("# TYPE creative_loop_tick_duration_seconds summary")
    lines.append(f"creative_loop_tick_duration_seconds_sum {sum(durations)!r}")
    lines.append(f"creative_loop_tick_duration_seconds_count {len(durations)}")
    last = max((as_utc(t.started_at) for t in ticks if t.started_at), default=None)
    family(
        "creative_loop_last_tick_timestamp_seconds", "gauge", "When the last tick started (Unix time).",
        [("", last.timestamp() if last else 0)],
    )  # fmt: skip

    # Counters any process bumps (API calls, throttles, generations by tier, ...).
    grouped: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for c in read_all(session):
        name = _metric_name(c.name)
        if not name.endswith("_total"):
            name += "_total"
        grouped[name].append((_labels(**_parse_labels(c.labels)), c.value))
    for name, samples in sorted(grouped.items()):
        family(
            name, "counter", f"Shared counter {name.removeprefix('creative_loop_').removesuffix('_total')}.", samples
        )

    gens = session.exec(
        select(Creative.tier, Creative.role, func.count())
        .where(col(Creative.tier).is_not(None), col(Creative.role).in_(("draft", "pro")))
        .group_by(Creative.tier, Creative.role)
    ).all()
    family(
        "creative_loop_generated_images", "gauge", "Generated images in the database, by tier and role.",
        [(_labels(tier=t or "", role=r), n) for t, r, n in sorted(gens)],
    )  # fmt: skip
    states = session.exec(select(Experiment.state, func.count()).group_by(Experiment.state)).all()
    family(
        "creative_loop_experiments", "gauge", "Experiments by state.",
        [(_labels(state=s), n) for s, n in sorted(states)],
    )  # fmt: skip
    ledger = Ledger(session)
    spent, reserved, caps = [], [], []
    for camp in session.exec(select(Campaign).order_by(Campaign.id)).all():
        for account in ACCOUNTS:
            s = ledger.summary(camp.id, account)
            lab = _labels(campaign=camp.id, account=account, currency=camp.currency)
            spent.append((lab, to_major(s.spent)))
            reserved.append((lab, to_major(s.reserved)))
            caps.append((lab, to_major(s.cap)))
    family("creative_loop_spent", "gauge", "Money spent, in currency units.", spent)
    family("creative_loop_reserved", "gauge", "Money reserved and not yet settled, in currency units.", reserved)
    family("creative_loop_cap", "gauge", "The finance cap, in currency units.", caps)
    return "\n".join(lines) + "\n"
