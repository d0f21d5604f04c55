"""Read models for ``status``, ``spend`` and the approval commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from loop.app import build_runtime, open_engine
from loop.budget_wait import waiting_note
from loop.config import Config, to_major
from loop.tick import END_STATES
from policies.errors import NotFound
from policies.planning import ExperimentPlan
from storage.db import session as open_session
from storage.ledger import ACCOUNT_ROW, ACCOUNTS, AccountSummary, Ledger
from storage.models import AccountCap, AuditEvent, Campaign, Creative, DailyMetric, Experiment, TickRun


@contextmanager
def _engine(cfg: Config) -> Iterator[Engine]:
    engine = open_engine(cfg.database_url)
    try:
        yield engine
    finally:
        engine.dispose()  # a report's connections close with it (the dashboard and tests call these too)


def status_rows(cfg: Config) -> dict[str, Any]:
    with _engine(cfg) as engine, open_session(engine) as s:
        exps = s.exec(select(Experiment).order_by(col(Experiment.created_at).desc())).all()
        creatives = s.exec(
            select(Creative).where(col(Creative.role).in_(("live", "pro")), col(Creative.platform_ad_id).is_not(None))
        ).all()
        out_creatives = []
        for c in creatives:
            rows = s.exec(
                select(DailyMetric).where(DailyMetric.creative_id == c.id).order_by(col(DailyMetric.day).desc())
            ).all()
            last = rows[:7]
            imps = sum(r.impressions for r in last)
            ctr = f"{sum(r.clicks for r in last) / imps:.4f}" if imps else "-"
            out_creatives.append(
                {
                    "campaign": c.campaign_id,
                    "creative": c.label or c.id,
                    "ad": c.platform_ad_id or "",
                    "status": c.status + (f" ({c.flags['delivery']})" if (c.flags or {}).get("delivery") else ""),
                    "days": len(rows),
                    "ctr": ctr,
                }
            )
        flags = [
            f"{e.experiment_id}: {e.name} {e.data}"
            for e in s.exec(
                select(AuditEvent).where(col(AuditEvent.name).in_(("DeliveryMismatchFlagged", "CampaignHalted")))
            ).all()
        ]
        flags += [
            f"campaign {c.id} halted: {c.halted_reason}" for c in s.exec(select(Campaign)).all() if c.halted_reason
        ]
        last_tick = s.exec(select(TickRun).order_by(col(TickRun.started_at).desc())).first()
        return {
            "experiments": [
                {
                    "id": e.id,
                    "campaign": e.campaign_id,
                    "state": e.state
                    + (f" ({e.waiting_for})" if e.waiting_for else "")
                    + (f" ({waiting_note(e)})" if e.waiting_until and e.state not in END_STATES else ""),
                    "detected": e.detected_on.isoformat() if e.detected_on else "",
                    "winner": e.winner_creative_id,
                    "reason": e.reason,
                    "plan": ExperimentPlan.from_dict(e.plan).summary() if e.plan else "",
                }
                for e in exps
            ],
            "creatives": out_creatives,
            "flags": flags,
            "last_tick": last_tick.started_at.isoformat(timespec="seconds") if last_tick else None,
        }


SPEND_COLUMNS = ("campaign", "account", "period", "period_start", "cap", "spent", "reserved", "left", "currency")


def spend_rows(cfg: Config) -> list[AccountSummary]:
    with _engine(cfg) as engine, open_session(engine) as s:
        return period_rows(s)


def period_rows(session: Session) -> list[AccountSummary]:
    """Every capped account in every period that has money in it (and the current one), oldest first.

    A lifetime cap is one row; the account-wide monthly cap, when set, adds a
    row per month across all campaigns.
    """
    ledger = Ledger(session)
    campaigns = session.exec(select(Campaign).order_by(Campaign.id)).all()
    rows = [p for c in campaigns for a in ACCOUNTS for p in ledger.periods(c.id, a)]
    return rows + ledger.account_periods()


def spend_table(cfg: Config) -> list[dict[str, Any]]:
    """:func:`period_rows` as plain values in currency units (the ``spend`` table and its CSV)."""
    with _engine(cfg) as engine, open_session(engine) as s:
        currency = {c.id: c.currency for c in s.exec(select(Campaign)).all()}
        cap = s.get(AccountCap, ACCOUNT_ROW)
        rows = period_rows(s)
    return [
        {
            "campaign": r.campaign_id,
            "account": r.account,
            "period": r.label,
            "period_start": r.start.isoformat() if r.start else "",
            "cap": to_major(r.cap),
            "spent": to_major(r.spent),
            "reserved": to_major(r.reserved),
            "left": to_major(r.left),
            "currency": currency.get(r.campaign_id) or (cap.currency if cap else ""),
        }
        for r in rows
    ]


def decide_approval(cfg: Config, experiment_id: str, approve: bool, actor: str, reason: str = "") -> Experiment:
    from loop.experiments import approve as do_approve
    from loop.experiments import reject as do_reject

    rt = build_runtime(cfg)
    with open_session(rt.engine) as s:
        exp = s.get(Experiment, experiment_id)
        if exp is None:
            raise NotFound(f"no experiment {experiment_id!r} (see `creative-loop status`)", experiment=experiment_id)
        if approve:
            do_approve(rt, s, exp, actor, reason)
        else:
            plan = next((p for p in rt.plans if p.id == exp.campaign_id), None)
            if plan is None:
                raise NotFound(f"campaign {exp.campaign_id!r} is not in the config", campaign=exp.campaign_id)
            do_reject(rt, s, plan, exp, actor, reason)
        return exp
