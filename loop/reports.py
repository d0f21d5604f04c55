"""Read models for ``status``, ``spend`` and the approval commands."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from loop.app import build_runtime, open_engine
from loop.config import Config
from loop.tick import Runtime
from policies.errors import CreativeLoopError, NotFound
from storage.db import session as open_session
from storage.ledger import ACCOUNTS, AccountSummary, Ledger
from storage.models import AuditEvent, Campaign, Creative, DailyMetric, Experiment, TickRun


def status_rows(cfg: Config) -> dict[str, Any]:
    engine = open_engine(cfg.database_url)
    with open_session(engine) as s:
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
                    "status": c.status,
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
                    "state": e.state + (f" ({e.waiting_for})" if e.waiting_for else ""),
                    "detected": e.detected_on.isoformat() if e.detected_on else "",
                    "winner": e.winner_creative_id,
                    "reason": e.reason,
                }
                for e in exps
            ],
            "creatives": out_creatives,
            "flags": flags,
            "last_tick": last_tick.started_at.isoformat(timespec="seconds") if last_tick else None,
        }


def spend_rows(cfg: Config) -> list[AccountSummary]:
    engine = open_engine(cfg.database_url)
    with open_session(engine) as s:
        ledger = Ledger(s)
        return [ledger.summary(c.id, a) for c in s.exec(select(Campaign).order_by(Campaign.id)).all() for a in ACCOUNTS]


def decide_approval(cfg: Config, experiment_id: str, approve: bool, actor: str, reason: str = "") -> Experiment:
    """``approve ID`` / ``reject ID``: see :func:`decide`."""
    return decide(build_runtime(cfg), experiment_id, approve, actor, reason)


def decide(
    rt: Runtime, experiment_id: str, approve: bool, actor: str, reason: str = "", *, waiting_only: bool = False
) -> Experiment:
    """Approve or reject an experiment under its campaign's lock, on what is stored once the lock is held.

    The daemon may be ticking the campaign meanwhile: the lock makes the two
    take turns, and the experiment is read again after the wait, so the
    decision applies to its newest state (and is refused if that state no
    longer allows it).  ``waiting_only`` refuses a rejection of an experiment
    that is not awaiting approval (the dashboard's rule).
    """
    from loop.experiments import approve as do_approve
    from loop.experiments import reject as do_reject
    from loop.locks import campaign_lock

    with open_session(rt.engine) as s:
        exp = s.get(Experiment, experiment_id)
        if exp is None:
            raise NotFound(f"no experiment {experiment_id!r} (see `creative-loop status`)", experiment=experiment_id)
        with campaign_lock(rt.engine, exp.campaign_id):
            s.refresh(exp)
            if waiting_only and exp.state != "awaiting_approval":
                raise CreativeLoopError(f"experiment {exp.id} is {exp.state}, not awaiting approval", experiment=exp.id)
            if approve:
                do_approve(rt, s, exp, actor, reason)
            else:
                plan = next((p for p in rt.plans if p.id == exp.campaign_id), None)
                if plan is None:
                    raise NotFound(f"campaign {exp.campaign_id!r} is not in the config", campaign=exp.campaign_id)
                do_reject(rt, s, plan, exp, actor, reason)
        return exp
