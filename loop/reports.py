"""Read models for ``status``, ``spend`` and the approval commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from loop import events
from loop.app import build_runtime, open_engine
from loop.budget_wait import waiting_note
from loop.config import Config, currency_digits, to_major
from loop.runtime import Runtime
from policies.errors import CreativeLoopError, NotFound
from policies.planning import ExperimentPlan
from storage.db import session as open_session
from storage.ledger import ACCOUNT_ROW, ACCOUNTS, AccountSummary, Ledger
from storage.models import AccountCap, AuditEvent, Campaign, Creative, DailyMetric, Experiment, TickRun, utcnow
from storage.states import END_STATES, RUNNING_ROLES, ExperimentState


@contextmanager
def _engine(cfg: Config) -> Iterator[Engine]:
    engine = open_engine(cfg.database_url)
    try:
        yield engine
    finally:
        engine.dispose()  # a report's connections close with it (the dashboard and tests call these too)


def status_rows(cfg: Config) -> dict[str, Any]:
    from loop.web.queries import fatigue_view, names_of
    from loop.web.status import experiment_status

    with _engine(cfg) as engine, open_session(engine) as s:
        exps = s.exec(select(Experiment).order_by(col(Experiment.created_at).desc())).all()
        names = names_of(s, [e.winner_creative_id for e in exps] + [e.scaled_creative_id for e in exps])
        creatives = s.exec(
            select(Creative).where(col(Creative.role).in_(RUNNING_ROLES), col(Creative.platform_ad_id).is_not(None))
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
                    "status": fatigue_view(s, c)["status"].text
                    + (f" ({c.flags['delivery']})" if (c.flags or {}).get("delivery") else ""),
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
                    "status": experiment_status(e, names).detail,
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
            "last_tick_day": last_tick.day.isoformat() if last_tick and last_tick.day else None,
        }


SPEND_COLUMNS = ("campaign", "account", "period", "period_start", "cap", "spent", "reserved", "left", "currency")
# A cell starting with one of these is read as a formula by a spreadsheet (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell: a string that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


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
            "cap": to_major(r.cap, digits),
            "spent": to_major(r.spent, digits),
            "reserved": to_major(r.reserved, digits),
            "left": to_major(r.left, digits),
            "currency": cur,
        }
        for r in rows
        for cur in [currency.get(r.campaign_id) or (cap.currency if cap else "")]
        for digits in [currency_digits(cur)]
    ]


def _last_decision(s: Session, experiment_id: str, name: str) -> AuditEvent | None:
    return s.exec(
        select(AuditEvent)
        .where(AuditEvent.experiment_id == experiment_id, AuditEvent.name == name)
        .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    ).first()


def _by(event: AuditEvent | None) -> str:
    if event is None:
        return ""
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    return f" by {event.actor} at {at.strftime('%Y-%m-%d %H:%M UTC')}"


def refusal(s: Session, exp: Experiment, approve: bool) -> str | None:
    """Why this decision cannot be taken on ``exp`` now, or None: each stage is decided once.

    A second approval of the same stage is refused (the first one stands and
    the next tick acts on it), and so is a rejection after an approval.
    """
    if exp.state in END_STATES:
        rejected = _last_decision(s, exp.id, events.REJECTED)
        if rejected is not None:
            return f"experiment {exp.id} was already rejected{_by(rejected)}"
        return f"experiment {exp.id} already ended ({exp.state}{': ' + exp.reason if exp.reason else ''})"
    pending = exp.state == ExperimentState.AWAITING_APPROVAL and exp.waiting_for is not None
    if pending and exp.approved_stage == exp.waiting_for:
        approved = _last_decision(s, exp.id, events.APPROVED)
        what = "the pro render" if exp.waiting_for == "pro" else "the drafts"
        if approve:
            return f"experiment {exp.id}: {what} already approved{_by(approved)}; the next tick acts on it"
        return f"experiment {exp.id}: {what} already approved{_by(approved)}; an approved stage cannot be rejected"
    if approve and not pending:
        return f"experiment {exp.id} is {exp.state}, not awaiting approval"
    return None


def decide_approval(
    cfg: Config,
    experiment_id: str,
    approve: bool,
    actor: str,
    reason: str = "",
    *,
    engine: Engine | None = None,
    require_waiting: bool = False,
) -> Experiment:
    """``approve ID`` / ``reject ID`` (and the dashboard's buttons): see :func:`decide`."""
    return decide(
        build_runtime(cfg, engine=engine), experiment_id, approve, actor, reason, waiting_only=require_waiting
    )


def decide(
    rt: Runtime, experiment_id: str, approve: bool, actor: str, reason: str = "", *, waiting_only: bool = False
) -> Experiment:
    """Approve or reject an experiment once, under its campaign's lock, on what is stored once the lock is held.

    The daemon may be ticking the campaign meanwhile: the lock makes the two
    take turns, and the experiment is read again after the wait, so the
    decision applies to its newest state (and is refused if that state no
    longer allows it).  A repeated or contradictory decision raises
    ``CreativeLoopError`` saying what was decided, by whom and when; the claim
    is one conditional UPDATE, so two people clicking at the same moment
    record one decision, not two.  ``waiting_only`` refuses a rejection of an
    experiment that is not awaiting approval (the dashboard's rule).
    """
    from loop.experiments import approve as do_approve
    from loop.experiments import reject as do_reject
    from loop.locks import campaign_lock

    with open_session(rt.engine) as s:
        # 1. find it and say no to a decision already taken
        exp = s.get(Experiment, experiment_id)
        if exp is None:
            raise NotFound(f"no experiment {experiment_id!r} (see `creative-loop status`)", experiment=experiment_id)
        with campaign_lock(rt.engine, exp.campaign_id):
            s.refresh(exp)  # what is stored now that the lock is held (the daemon may have moved it)
            why = refusal(s, exp, approve)
            if why is None and waiting_only and exp.state != ExperimentState.AWAITING_APPROVAL:
                why = f"experiment {exp.id} is {exp.state}, not awaiting approval"
            if why is not None:
                raise CreativeLoopError(why, experiment=exp.id)
            # 2. claim it: only one decision wins a race (the loser sees 0 rows and the reason)
            table = Experiment.__table__  # type: ignore[attr-defined]
            stmt = update(table).where(table.c.id == exp.id, table.c.state == exp.state)
            if approve:
                stmt = stmt.where(
                    table.c.waiting_for == exp.waiting_for,
                    or_(table.c.approved_stage.is_(None), table.c.approved_stage != exp.waiting_for),
                ).values(approved_stage=exp.waiting_for)
            else:
                stmt = stmt.where(
                    or_(table.c.approved_stage.is_(None), table.c.waiting_for.is_(None),
                        table.c.approved_stage != table.c.waiting_for)
                ).values(updated_at=utcnow())  # fmt: skip
            if s.connection().execute(stmt).rowcount != 1:
                s.rollback()
                fresh = s.get(Experiment, experiment_id, populate_existing=True)
                assert fresh is not None
                raise CreativeLoopError(
                    refusal(s, fresh, approve) or f"experiment {exp.id} changed while deciding; try again",
                    experiment=exp.id,
                )
            # 3. record it (the audit event and the state change commit together with the claim)
            if approve:
                do_approve(rt, s, exp, actor, reason)
            else:
                plan = next((p for p in rt.plans if p.id == exp.campaign_id), None)
                if plan is None:
                    raise NotFound(f"campaign {exp.campaign_id!r} is not in the config", campaign=exp.campaign_id)
                do_reject(rt, s, plan, exp, actor, reason)
        return exp
