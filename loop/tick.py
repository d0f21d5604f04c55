"""One tick of the loop, per campaign, as numbered idempotent steps.

    1. sync       campaign caps and the live ads of the main ad set
    2. ingest     daily insights for the backfill window (upserts)
    3. reconcile  close test-spend reservations with the spend reported
    4. detect     fatigue on every live creative without an experiment
    5. advance    every open experiment one or more states (experiments.py)

Each campaign is ticked under its lock (``loop.locks.campaign_lock``), the
one ``approve``, ``reject``, ``fix`` and the dashboard take, and everything is
read again once the lock is held.  Each step commits what it did before the
next begins, and every effect on the outside world goes through
:meth:`Runtime.perform`, which records the mutation's intent (and each send)
before sending it and its result after.  A crash anywhere
is therefore repaired by the next tick, which starts again from what is
stored.  ``dry_run`` turns every commit into a flush that is rolled back at
the end, and every mutation into a line of the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from connectors.ads.base import AdPlatform
from connectors.ads.payloads import AD_ID, InvalidPayload, check_rows
from loop import events
from loop.locks import campaign_lock
from loop.logs import log_context
from loop.plans import CampaignPlan
from loop.runtime import Runtime
from policies import fatigue
from policies.errors import AuthExpired, ConfigError, ConnectorError
from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import (
    Campaign,
    Creative,
    DailyMetric,
    Experiment,
    LedgerEntry,
    TickRun,
    utcnow,
)
from storage.states import OPEN_STATES, RUNNING_ROLES, CreativeRole, CreativeStatus, ExperimentState

log = logging.getLogger("creative_loop.tick")

# Days at the start of an ad's life that the fatigue test never uses as its baseline.
LEARNING_DAYS = 2
# A creative whose experiment was abandoned may be tried again after this long.
RETRY_AFTER_ABANDON = timedelta(days=7)
# A test-spend day not reported this long after its window is booked at its reservation.
REPORT_GRACE = timedelta(days=2)
# The platform signal that counts as the platform's own fatigue verdict (Meta's webhook, Google's labels).
FATIGUE_SIGNAL = "creative_fatigue"
# After an outage, ingest at most this far back in one tick.
MAX_CATCH_UP = timedelta(days=90)


class StopTick(BaseException):
    """Raised by a step hook to stop a tick between two steps (crash tests)."""


@dataclass
class TickReport:
    day: date
    detected: list[str] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)


def tick(
    rt: Runtime, today: date, *, end_of_day: Callable[[], None] | None = None, one_record_per_day: bool = False
) -> TickReport:
    """Run one tick for every campaign of ``rt.plans`` as of ``today``.

    ``end_of_day`` runs after the campaigns and before the tick's record is
    marked done (the simulated platform's delivery of the day): a tick is
    only recorded as finished once its effects outside the database are
    saved.  With ``one_record_per_day`` (an inline round) a retry of a day
    whose record is unfinished or failed reuses that record.
    """
    report = TickReport(today)
    refused: list[ConfigError] = []
    with open_session(rt.engine) as session:
        run = _tick_record(session, today, rt.dry_run, one_record_per_day)
        if not rt.dry_run:
            session.add(run)
            session.commit()
        # Which campaigns have money in this month's ledger, in which currency: read once a round for the
        # account-wide cap's check (check_currency); this round can only add money in the cap's currency.
        capped = any(p.account_monthly_cap is not None for p in rt.plans)
        month_money = Ledger(session).campaigns_with_money(today, "month") if capped else {}
        try:
            for plan in rt.plans:
                # One writer per campaign: the daemon, `tick`, `approve`, `reject`, `fix`, the dashboard.
                with log_context(campaign=plan.id), campaign_lock(rt.engine, plan.id):
                    session.expire_all()  # read everything again now that nobody else writes it
                    try:
                        _tick_campaign(rt, session, plan, today, report, month_money)
                    except AuthExpired as exc:
                        session.rollback()
                        _halt(rt, session, plan.id, str(exc))
                        report.errors.append(f"{plan.id}: {exc}")
                    except ConnectorError as exc:
                        # One campaign's platform trouble must not stop the others;
                        # every step is idempotent, so the next tick resumes here.
                        session.rollback()
                        log.warning("campaign %s: %s", plan.id, exc)
                        report.errors.append(f"{plan.id}: {exc}")
                    except ConfigError as exc:
                        # A campaign's settings its stored money refuses: the others still run; the
                        # tick then raises it (one line, exit 2) once the round is recorded.
                        session.rollback()
                        report.errors.append(f"{plan.id}: {exc}")
                        refused.append(exc)
            report.plan = list(rt.plan_lines)
            if end_of_day is not None and not rt.dry_run:
                try:
                    end_of_day()
                except ConnectorError as exc:
                    log.error("the day's end failed: %s", exc)
                    report.errors.append(f"end of day {today}: {exc}")
                rt.step("day-end")
            if rt.dry_run:
                session.rollback()
            else:
                run.finished_at = utcnow()
                run.ok = not report.errors
                run.error = "; ".join(report.errors)[:2000]
                session.add(run)
                session.commit()
            # The reads of a dry run were real calls too: their counts are kept.
            store_counters(rt.platform, session)
        except BaseException:
            session.rollback()
            raise
    if refused:
        raise refused[0]
    return report


def store_counters(platform: AdPlatform, session: Session) -> None:
    """Add the platform's API counts to ``storage.counters`` in their own short transaction.

    They go through the tick's session (one engine, one writer: a second
    connection writing to SQLite while the tick holds its write lock would
    wait out the busy timeout).  Counts that cannot be stored are handed
    back to the platform for the next tick; they never fail one.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from storage.counters import increment

    pending = platform.drain_counters()
    if not pending:
        return
    try:
        for name, labels, amount in pending:
            # A platform label of its own wins (a routing platform names the platform each count is from).
            increment(session, name, amount, **{"platform": platform.name, **labels})
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        platform.restore_counters(pending)
        log.warning("could not store %s API counters (kept for the next tick): %s", platform.name, exc)


def _tick_record(session: Session, today: date, dry_run: bool, one_per_day: bool) -> TickRun:
    if one_per_day and not dry_run:
        last = session.exec(
            select(TickRun).where(TickRun.day == today, TickRun.dry_run == False).order_by(col(TickRun.id).desc())  # noqa: E712
        ).first()
        if last is not None and last.ok is not True:
            last.attempts += 1
            last.started_at, last.finished_at, last.ok, last.error = utcnow(), None, None, ""
            return last
    return TickRun(day=today, dry_run=dry_run)


INTERRUPTED = "interrupted before it finished (closed at the next start)"


def close_unfinished(engine: Engine) -> int:
    """Close the records of ticks that never finished (their process died) as failed; returns how many.

    Only for the holder of the round lock (``loop.locks.round_lock``): no
    other round can be running then.
    """
    with open_session(engine) as session:
        stale = session.exec(
            select(TickRun).where(col(TickRun.finished_at).is_(None), TickRun.dry_run == False)  # noqa: E712
        ).all()
        for run in stale:
            run.finished_at, run.ok, run.error = utcnow(), False, INTERRUPTED
            session.add(run)
        session.commit()
        return len(stale)


def _halt(rt: Runtime, session: Session, campaign_id: str, why: str) -> None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:  # the very first tick can fail before the campaign row exists
        plan = next((p for p in rt.plans if p.id == campaign_id), None)
        campaign = sync_campaign(session, plan) if plan is not None else None
    if campaign is not None and campaign.halted_reason is None and not rt.dry_run:
        campaign.halted_reason = why
        events.record(session, events.CAMPAIGN_HALTED, campaign_id, reason=why)
        session.commit()
    log.error("campaign %s halted: %s (fix the access token, the next tick resumes)", campaign_id, why)


def _tick_campaign(
    rt: Runtime, session: Session, plan: CampaignPlan, today: date, report: TickReport,
    month_money: Mapping[str, str],
) -> None:  # fmt: skip
    # 1. sync the campaign's caps and its live ads (the campaign row is read once, by the check)
    campaign = sync_campaign(session, plan, check_currency(session, plan, month_money))
    ads = rt.call(lambda: rt.platform.list_ads(plan.id), f"list ads of {plan.id}")
    if campaign.halted_reason is not None and not rt.dry_run:
        # The read above went through: credentials work again.
        events.record(session, events.CAMPAIGN_RESUMED, plan.id, previous=campaign.halted_reason)
        campaign.halted_reason = None
    by_ad = sync_ads(session, plan.id, ads)
    rt.commit(session)
    rt.step("sync")
    # 2. ingest the backfill window (re-ingesting a day updates it)
    since = catch_up_since(session, plan.id, today - timedelta(days=rt.backfill_days), today)
    rows = rt.call(lambda: rt.platform.insights(plan.id, since, today - timedelta(days=1)), f"insights of {plan.id}")
    # All of the batch is checked before any of it is written (InvalidPayload names the row).
    rows = check_rows(rows, since=since, until=today - timedelta(days=1), campaign=plan.id)
    ingest(session, plan.id, rows, by_ad)
    # ... and the platform's own readings about the ads (e.g. Google's asset performance labels)
    record_signals(session, plan.id, rt.call(lambda: rt.platform.signals(plan.id), f"signals of {plan.id}"), today)
    rt.commit(session)
    rt.step("ingest")
    # 3. reconcile test-spend reservations with what was spent
    reconcile(session, plan.id, today)
    rt.commit(session)
    rt.step("reconcile")
    # 4. detect fatigue on live creatives
    for exp in detect(session, plan, today):
        report.detected.append(exp.id)
        log.info("fatigue detected on %s", exp.parent_creative_id, extra={"experiment": exp.id})
    rt.commit(session)
    rt.step("detect")
    # 5. advance open experiments (loop.experiments brings numpy's and scipy's policies with it: imported
    # by a tick that has an experiment to advance, not by every tick nor every command)
    open_exps = session.exec(_open_experiments(), params={"campaign": plan.id}).all()
    if open_exps:
        from loop.experiments import advance
    for exp in open_exps:
        with log_context(experiment=exp.id):
            moves = advance(rt, session, plan, exp, today)
            for move in moves:
                log.info("%s", move)
            if exp.state == ExperimentState.ABANDONED and exp.abandoned_on is None:
                exp.abandoned_on = today  # the platform's day: the retry cool-down counts from it
                session.add(exp)
                rt.commit(session)
        report.transitions.extend(moves)
    rt.step("advance")


# -- the tick's statements, built once ---------------------------------------------------
# Every campaign's tick runs the same small reads.  Building a statement and its cache key
# cost more than SQLite's own work on them (bench/startup.py), so each is built once with
# its values as bound parameters: the SQL and the rows are those of a statement built anew.
@cache
def _open_experiments() -> Any:
    return (
        select(Experiment)
        .where(Experiment.campaign_id == bindparam("campaign"), col(Experiment.state).in_(OPEN_STATES))
        .order_by(col(Experiment.created_at), col(Experiment.id))
    )


@cache
def _last_metric_day() -> Any:
    return (
        select(func.max(DailyMetric.day))
        .join(Creative, col(Creative.id) == DailyMetric.creative_id)
        .where(Creative.campaign_id == bindparam("campaign"))
    )


@cache
def _campaign_creatives() -> Any:
    return select(Creative).where(Creative.campaign_id == bindparam("campaign"))


@cache
def _metrics_on_days() -> Any:
    table = DailyMetric.__table__  # type: ignore[attr-defined]
    return select(  # type: ignore[call-overload]  # sqlmodel's select() is typed for at most 4 columns
        table.c.id, table.c.creative_id, table.c.day, table.c.impressions, table.c.clicks,
        table.c.spend_minor, table.c.conversions,
    ).where(table.c.creative_id.in_(bindparam("creatives", expanding=True)),
            table.c.day.in_(bindparam("days", expanding=True)))  # fmt: skip


@cache
def _stored_noise_rows() -> Any:
    from storage.models import FatigueNoise

    return select(
        col(FatigueNoise.day), col(FatigueNoise.extra_variance), col(FatigueNoise.weekday_factors), col(FatigueNoise.df)
    ).where(
        FatigueNoise.campaign_id == bindparam("campaign"),
        FatigueNoise.day >= bindparam("first"),
        FatigueNoise.day < bindparam("today"),
    )


@cache
def _portfolio_metric_rows() -> Any:
    table = DailyMetric.__table__  # type: ignore[attr-defined]
    return (
        select(  # type: ignore[call-overload]  # sqlmodel's select() is typed for at most 4 columns
            table.c.creative_id, table.c.day, table.c.impressions, table.c.clicks,
            col(Creative.platform_ad_id).is_not(None).label("has_ad"),
        )
        .join(Creative, col(Creative.id) == table.c.creative_id)
        .where(Creative.campaign_id == bindparam("campaign"), col(Creative.role).in_(RUNNING_ROLES))
    )  # fmt: skip


@cache
def _live_creatives() -> Any:
    return select(Creative).where(
        Creative.campaign_id == bindparam("campaign"),
        Creative.status == CreativeStatus.ACTIVE,
        col(Creative.role).in_(RUNNING_ROLES),
        col(Creative.platform_ad_id).is_not(None),
    )


@cache
def _campaign_experiments() -> Any:
    return (
        select(Experiment).where(Experiment.campaign_id == bindparam("campaign")).order_by(col(Experiment.created_at))
    )


@cache
def _fatigue_signals() -> Any:
    from storage.models import PlatformSignal

    return (
        select(PlatformSignal)
        .where(
            col(PlatformSignal.platform_ad_id).in_(bindparam("ads", expanding=True)),
            PlatformSignal.name == FATIGUE_SIGNAL,
        )
        .order_by(col(PlatformSignal.received_at))
    )


def catch_up_since(session: Session, campaign_id: str, since: date, today: date) -> date:
    """The first day to ingest: the backfill window, or earlier if ticks failed for longer than it.

    Otherwise a platform or database outage longer than the window would lose
    the days in between for good. Bounded by ``MAX_CATCH_UP``.
    """
    last = session.exec(_last_metric_day(), params={"campaign": campaign_id}).one()
    if last is None or last + timedelta(days=1) >= since:
        return since
    return max(last + timedelta(days=1), today - MAX_CATCH_UP)


def sync_campaign(session: Session, plan: CampaignPlan, stored: Campaign | None = None) -> Campaign:
    """The campaign's row with the plan's currency and caps (``stored``: the row if the caller has read it)."""
    campaign = stored if stored is not None else session.get(Campaign, plan.id)
    if campaign is None:
        campaign = Campaign(id=plan.id)
    campaign.currency = plan.currency
    campaign.test_spend_cap_minor = plan.test_spend_cap
    campaign.credit_cap_minor = plan.credit_cap
    campaign.cap_period = plan.cap_period
    session.add(campaign)
    sync_account_cap(session, plan)
    session.flush()
    return campaign


def check_currency(session: Session, plan: CampaignPlan, month_money: Mapping[str, str]) -> Campaign | None:
    """Refuse (ConfigError) a plan whose money cannot be added to what the ledger holds: the campaign's
    entries are in another currency than its plan's, or the account-wide cap would add up this month's
    money of campaigns in other currencies (yen and dollars have no sum).  Returns the stored campaign row
    (None before its first tick).

    ``month_money``: the campaigns with ledger money this month and their currencies
    (:meth:`Ledger.campaigns_with_money`).
    """
    stored = session.get(Campaign, plan.id)
    if stored is not None and stored.currency != plan.currency and Ledger(session).holds_money(plan.id):
        raise ConfigError(
            plan.source, f"campaigns[{plan.id}].currency",
            f"{plan.currency}, but the ledger holds this campaign's money in {stored.currency}: "
            f'keep currency = "{stored.currency}" or give the campaign a new id',
        )  # fmt: skip
    if plan.account_monthly_cap is None:
        return stored
    others = {c: cur for c, cur in month_money.items() if c != plan.id and cur != plan.currency}
    if others:
        spent = ", ".join(f"{c} ({cur})" for c, cur in sorted(others.items()))
        raise ConfigError(
            plan.source, "budget.account_monthly_cap",
            f"the cap is in {plan.currency}, but campaigns in other currencies have money in the ledger this "
            f"month ({spent}): one cap cannot add them up",
        )  # fmt: skip
    return stored


def sync_account_cap(session: Session, plan: CampaignPlan) -> None:
    """Store the account-wide monthly cap, writing only when it changed (every campaign's tick calls this)."""
    from storage.models import AccountCap

    row = session.get(AccountCap, "account")
    # Held for the tick: the session keeps rows only while they are referenced, and the ledger's
    # cap checks then find this one without a query.
    session.info["account_cap"] = row
    if row is None:
        row = session.info["account_cap"] = AccountCap(id="account")
    elif (row.monthly_cap_minor, row.currency) == (plan.account_monthly_cap, plan.currency):
        return
    row.monthly_cap_minor, row.currency, row.updated_at = plan.account_monthly_cap, plan.currency, utcnow()
    session.add(row)


def live_creative_id(campaign_id: str, ad_id: str) -> str:
    return f"{campaign_id}:{ad_id}"


def sync_ads(session: Session, campaign_id: str, ads: list) -> dict[str, str]:  # type: ignore[type-arg]
    """Store the platform's view of the campaign's ads; returns every known ad id's creative id (for :func:`ingest`)."""
    known = {
        c.platform_ad_id: c
        for c in session.exec(_campaign_creatives(), params={"campaign": campaign_id}).all()
        if c.platform_ad_id
    }
    by_ad = {ad_id: c.id for ad_id, c in known.items()}
    for ad in ads:
        if not isinstance(ad.ad_id, str) or not AD_ID.match(ad.ad_id):
            # Every id from outside is checked against what storage holds (platform_ad_id: 100).
            raise InvalidPayload(f"ad_id: expected an id, got {str(ad.ad_id)[:60]!r}", campaign_id, "ads")
        status = CreativeStatus.ACTIVE if ad.status == "ACTIVE" else CreativeStatus.PAUSED
        creative = known.get(ad.ad_id)
        if creative is None and ad.name.startswith("cl:"):
            continue  # our own objects are adopted through their mutations, never here
        if creative is None:
            creative = Creative(
                id=live_creative_id(campaign_id, ad.ad_id),
                campaign_id=campaign_id,
                role=CreativeRole.LIVE,
                label=ad.name[:40],  # storage keeps 40 characters of a label; ad names run to 400
                platform_ad_id=ad.ad_id,
                status=status,
                headline=ad.headline,
            )
            by_ad[ad.ad_id] = creative.id
        elif creative.role in RUNNING_ROLES:
            creative.status = status
        if creative.role in RUNNING_ROLES:
            # Why a paused ad does not deliver (Meta: its ad set is paused, it was disapproved...):
            # shown by `status`; such an ad is never tested for fatigue (only "active" ones are).
            reason = ad.reason if status == CreativeStatus.PAUSED else ""
            if (creative.flags or {}).get("delivery", "") != reason:
                flags = {k: v for k, v in (creative.flags or {}).items() if k != "delivery"}
                creative.flags = {**flags, "delivery": reason} if reason else flags
        session.add(creative)
    session.flush()
    return by_ad


def ingest(session: Session, campaign_id: str, rows: list, by_ad: dict[str, str] | None = None) -> int:  # type: ignore[type-arg]
    """Upsert daily metrics for ads we know; returns the number of rows given for them.

    ``by_ad`` maps the campaign's ad ids to creative ids (what :func:`sync_ads`
    returns); read from the database when not given.  Bulk statements, not one
    ORM object per row: a catch-up over months of history for thousands of ads
    is hundreds of thousands of rows.
    """
    from sqlalchemy import bindparam, insert, update

    if by_ad is None:
        by_ad = {
            ad_id: cid
            for cid, ad_id in session.exec(
                select(Creative.id, Creative.platform_ad_id).where(Creative.campaign_id == campaign_id)
            ).all()
            if ad_id
        }
    rows = [r for r in rows if r.ad_id in by_ad]
    if not rows:
        return 0
    days = {r.day for r in rows}
    table = DailyMetric.__table__  # type: ignore[attr-defined]
    existing = {
        (cid, day): (mid, (n, c, sp, conv))
        for mid, cid, day, n, c, sp, conv in session.execute(
            _metrics_on_days(), {"creatives": list(set(by_ad.values())), "days": list(days)}
        ).all()
    }
    now = utcnow()
    inserts: dict[tuple[str, date], dict[str, Any]] = {}
    updates: dict[int, dict[str, Any]] = {}
    for r in rows:
        cid = by_ad[r.ad_id]
        values = {
            "impressions": r.impressions, "clicks": r.clicks, "spend_minor": r.spend_minor,
            "conversions": r.conversions, "reach": r.reach, "frequency": r.frequency, "updated_at": now,
        }  # fmt: skip
        found = existing.get((cid, r.day))
        if found is None:
            inserts[(cid, r.day)] = {"creative_id": cid, "day": r.day, **values}  # a repeated row: last wins
        elif found[1] != (r.impressions, r.clicks, r.spend_minor, r.conversions):
            updates[found[0]] = {"_id": found[0], **values}
    if inserts:
        session.execute(insert(table), list(inserts.values()))
    if updates:
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values(
                {
                    k: bindparam(k)
                    for k in ("impressions", "clicks", "spend_minor", "conversions", "reach", "frequency", "updated_at")
                }
            )
        )
        session.connection().execute(stmt, list(updates.values()))
    session.flush()
    return len(rows)


def record_signals(session: Session, campaign_id: str, signals: list, today: date) -> int:  # type: ignore[type-arg]
    """Store each pulled reading that differs from the ad's previous one; returns how many were stored.

    A reading whose previous level is in its ``fatigued_after`` also records a
    ``creative_fatigue`` signal (level ``FATIGUED``), which :func:`detect` takes as the
    platform's own fatigue signal.  Readings are dated by the platform's day, like the metrics.
    """
    from datetime import UTC, datetime, time

    from storage.models import PlatformSignal

    if not signals:
        return 0
    at = datetime.combine(today, time(0), tzinfo=UTC)
    names = {s.name for s in signals}
    previous: dict[tuple[str, str], str] = {}
    for ad_id, name, level in session.exec(
        select(PlatformSignal.platform_ad_id, PlatformSignal.name, PlatformSignal.level)
        .where(
            PlatformSignal.campaign_id == campaign_id,
            col(PlatformSignal.name).in_(sorted(names)),
            col(PlatformSignal.platform_ad_id).in_(sorted({s.ad_id for s in signals})),
        )
        .order_by(col(PlatformSignal.received_at), col(PlatformSignal.id))
    ).all():
        previous[(ad_id, name)] = level  # the latest wins
    stored = 0
    for s in signals:
        before = previous.get((s.ad_id, s.name))
        if before == s.level:
            continue
        data = {**s.data, "previous": before}
        session.add(PlatformSignal(
            campaign_id=campaign_id, platform_ad_id=s.ad_id[:100], name=s.name[:60], level=s.level[:40], data=data,
            received_at=at,
        ))  # fmt: skip
        if before is not None and before in s.fatigued_after:
            session.add(PlatformSignal(
                campaign_id=campaign_id, platform_ad_id=s.ad_id[:100], name=FATIGUE_SIGNAL, level="FATIGUED",
                data={"signal": s.name, "from": before, "to": s.level, **s.data}, received_at=at,
            ))  # fmt: skip
        previous[(s.ad_id, s.name)] = s.level
        stored += 1
    session.flush()
    return stored


def series(session: Session, creative_id: str, until: date) -> tuple[list[date], np.ndarray, np.ndarray]:
    """A creative's daily (days, impressions, clicks) up to ``until`` exclusive, oldest first."""
    rows = session.exec(
        select(DailyMetric)
        .where(DailyMetric.creative_id == creative_id, DailyMetric.day < until)
        .order_by(col(DailyMetric.day))
    ).all()
    days = [r.day for r in rows]
    return (
        days,
        np.array([r.impressions for r in rows], dtype=np.int64),
        np.array([r.clicks for r in rows], dtype=np.int64),
    )


def reconcile(session: Session, campaign_id: str, today: date) -> None:
    """Settle test-spend reservations whose window has been reported.

    A reservation ``test:<experiment>:<day>:<days>`` covers the budgets set on
    ``day`` for ``days`` days. It is settled with the spend of its arms on the
    days it really governed (until the next allocation replaced it) once those
    days are in the past.  A window that crossed a cap period's boundary was
    reserved in parts, ``…:<days>/<first day>+<n>`` (``Ledger.reserve_window``):
    each part is settled with the spend of its own days.

    A day counts as reported once the platform reported any ad of the
    campaign for it (an arm without a row that day did not deliver).  A day
    still unreported ``REPORT_GRACE`` after the window is booked at what the
    reservation held for it, the worst case: money reported later than that
    can then never take a period past its cap.
    """
    ledger = Ledger(session)
    open_res = ledger.open_reservations(campaign_id, "test", prefix="test:")
    if not open_res:
        return
    from storage.models import Arm, BanditDecision

    # The experiments' allocation days and arms, read once for all their reservations.
    exp_ids = sorted({res.key.split(":", 1)[1].rsplit(":", 2)[0] for res in open_res})
    decision_days: dict[str, list[date]] = {}
    for exp_id, day in session.exec(
        select(col(BanditDecision.experiment_id), col(BanditDecision.day)).where(
            col(BanditDecision.experiment_id).in_(exp_ids)
        )
    ).all():
        decision_days.setdefault(exp_id, []).append(day)
    arms: dict[str, set[str]] | None = None
    for res in open_res:
        exp_id, day_s, span_s = res.key.split(":", 1)[1].rsplit(":", 2)
        decided = date.fromisoformat(day_s)
        span_s, _, part = span_s.partition("/")
        start, end = decided, decided + timedelta(days=int(span_s))  # end exclusive
        if part:
            first_s, _, n_s = part.partition("+")
            start = date.fromisoformat(first_s)
            end = start + timedelta(days=int(n_s))
        next_day = min((d for d in decision_days.get(exp_id, ()) if d > decided), default=None)
        end = min(end, next_day or date.max)
        if end <= start:
            # A later allocation replaced the budgets before this part's first day: nothing spent under it.
            ledger.settle(res.key, None, note=f"replaced on {next_day} before {start}")
            continue
        if end > today:
            continue  # some governed day has not happened yet
        if arms is None:
            arms = {}
            for arm_exp, creative_id in session.exec(
                select(col(Arm.experiment_id), col(Arm.creative_id)).where(col(Arm.experiment_id).in_(exp_ids))
            ).all():
                arms.setdefault(arm_exp, set()).add(creative_id)
        # The window's reported rows of the campaign (the arms' creatives are the campaign's): its spend and days.
        window = session.exec(
            select(col(DailyMetric.creative_id), col(DailyMetric.day), col(DailyMetric.spend_minor))
            .join(Creative, col(Creative.id) == DailyMetric.creative_id)
            .where(Creative.campaign_id == campaign_id, DailyMetric.day >= start, DailyMetric.day < end)
        ).all()
        missing = (end - start).days - len({day for _, day, _ in window})
        last_day = end - timedelta(days=1)
        if missing and today - last_day < REPORT_GRACE:
            continue
        arm_ids = arms.get(exp_id, set())
        actual = sum(spend for creative_id, _, spend in window if creative_id in arm_ids)
        note = f"spend {start}..{last_day}"
        if missing:
            reserved_days = int(part.partition("+")[2]) if part else int(span_s)
            actual += res.amount_minor // reserved_days * missing
            note += f"; {missing} day(s) never reported, booked at the reservation"
        ledger.settle(res.key, actual, note=note)
        events.record(
            session, events.SPEND_RECONCILED, campaign_id, exp_id,
            key=res.key, reserved=res.amount_minor, actual=actual,
        )  # fmt: skip


def learning_days(imps: np.ndarray) -> np.ndarray:
    """A new ad's first delivery days (the platform's learning phase, novelty), per row."""
    seen = np.cumsum(imps > 0, axis=1)
    return (imps > 0) & (seen <= LEARNING_DAYS)


def fatigue_verdicts(
    imps: np.ndarray, clicks: np.ndarray, first_day: date, noise: fatigue.NoiseModel | None = None
) -> list[fatigue.Verdict]:
    """The fatigue test as the loop runs it, rows = creatives on a calendar from ``first_day``.

    A new ad's first days are marked as confounders, so they never form its
    baseline.  ``noise`` is the campaign's stored noise model for each day of
    the calendar (:func:`campaign_noise`); without it the detector estimates
    one from these rows alone.
    """
    kw: dict[str, Any] = {}
    if noise is not None:
        kw = {"extra_variance": noise.extra_variance, "seasonality": noise.seasonality}
    return fatigue.detect_many(imps, clicks, start_weekday=first_day.weekday(), confounders=learning_days(imps), **kw)


def campaign_noise(
    session: Session, campaign_id: str, first: date, today: date, metrics: list[Any] | None = None
) -> fatigue.NoiseModel:
    """The fatigue test's noise model for each day of ``[first, today)``, stored once per day.

    Over-dispersion and weekday factors are estimated from the baseline
    windows of every creative the campaign has run in its main ad set (the
    portfolio, paused ones included: their baselines still tell how noisy the
    account is), day ``d``'s from the days before ``d``
    (:func:`policies.fatigue.estimate_noise`).  A day's model is stored the
    first time it is needed and read back ever after, so old days are
    re-tested exactly as they were even when creatives come and go or late
    rows revise the history: verdicts stay prefix-consistent.

    ``metrics`` are the campaign's metric rows as :func:`_portfolio_metrics`
    reads them, when the caller has them already (:func:`detect`).
    """
    from storage.models import FatigueNoise

    width = (today - first).days
    stored = _stored_noise(session, campaign_id, first, today)
    tau2 = np.zeros(width)
    factors = np.ones((width, 7))
    df = np.zeros(width)
    missing = [j for j in range(width) if first + timedelta(days=j) not in stored]
    if missing:  # usually the newest day alone: the days before it are only summed, not estimated
        est = _estimate_campaign_noise(session, campaign_id, first, today, metrics, missing[0])
    for j in range(width):
        day = first + timedelta(days=j)
        row = stored.get(day)
        if row is None:
            row = FatigueNoise(
                campaign_id=campaign_id,
                day=day,
                extra_variance=float(est.extra_variance[j]),
                weekday_factors=[float(f) for f in est.seasonality[j]],
                df=float(est.df[j]),
            )
            session.add(row)
        tau2[j], factors[j], df[j] = row.extra_variance, row.weekday_factors, row.df
    session.flush()
    return fatigue.NoiseModel(tau2, factors, df)


def _stored_noise(session: Session, campaign_id: str, first: date, today: date) -> dict[date, Any]:
    """Each stored day's noise (rows with ``extra_variance``, ``weekday_factors`` and ``df``), by day."""
    rows = session.execute(_stored_noise_rows(), {"campaign": campaign_id, "first": first, "today": today}).all()
    return {r.day: r for r in rows}  # plain rows: the ORM objects are never changed and cost more than the query


def stored_noise(session: Session, campaign_id: str, first: date, today: date) -> fatigue.NoiseModel | None:
    """The stored noise model of ``[first, today)`` if the loop has tested every one of those days (read-only)."""
    stored = _stored_noise(session, campaign_id, first, today)
    days = [first + timedelta(days=j) for j in range((today - first).days)]
    if not days or any(d not in stored for d in days):
        return None
    return fatigue.NoiseModel(
        np.array([stored[d].extra_variance for d in days]),
        np.array([stored[d].weekday_factors for d in days], dtype=float),
        np.array([stored[d].df for d in days]),
    )


def _portfolio_metrics(session: Session, campaign_id: str) -> list[Any]:
    """Every metric row of the campaign's live and pro creatives, each with whether its creative has an ad.

    One read serves all of :func:`detect`: the candidates' series, the
    calendar's first day and the portfolio the noise model is estimated from.
    """
    return list(session.execute(_portfolio_metric_rows(), {"campaign": campaign_id}).all())


def _estimate_campaign_noise(
    session: Session,
    campaign_id: str,
    first: date,
    today: date,
    metrics: list[Any] | None = None,
    from_day: int = 0,
) -> fatigue.NoiseModel:
    width = (today - first).days
    if metrics is None:
        metrics = _portfolio_metrics(session, campaign_id)
    # The portfolio: the live and pro creatives with an ad in the main ad set.
    data = [(cid, day, n, c) for cid, day, n, c, has_ad in metrics if has_ad and first <= day < today]
    ids = sorted({cid for cid, *_ in data})
    index = {cid: i for i, cid in enumerate(ids)}
    imps = np.zeros((len(ids), width), dtype=np.int64)
    clicks = np.zeros((len(ids), width), dtype=np.int64)
    for cid, day, n, c in data:
        imps[index[cid], (day - first).days] = n
        clicks[index[cid], (day - first).days] = c
    return fatigue.estimate_noise(
        imps, clicks, start_weekday=first.weekday(), confounders=learning_days(imps), from_day=from_day
    )


def detect(session: Session, plan: CampaignPlan, today: date) -> list[Experiment]:
    """Open an experiment for each live creative that the fatigue test flags.

    All candidates of the campaign are tested at once (``detect_many``) on a
    common calendar; days before a creative's data (or before its last
    abandoned experiment) carry no impressions and are ignored by the test.
    """
    from connectors.images.procedural import stable_seed

    live = session.exec(_live_creatives(), params={"campaign": plan.id}).all()
    latest: dict[str, Experiment] = {}
    for e in session.exec(_campaign_experiments(), params={"campaign": plan.id}).all():
        latest[e.parent_creative_id] = e
    candidates: dict[str, date | None] = {}
    for creative in live:
        previous = latest.get(creative.id)
        if previous is None:
            candidates[creative.id] = None
            continue
        if previous.state == ExperimentState.ABANDONED and previous.abandoned_on is None:
            # Abandoned outside a tick (a rejection): the first platform day the loop knows of it.
            previous.abandoned_on = today
            session.add(previous)
        if (
            previous.state == ExperimentState.ABANDONED
            and previous.abandoned_on is not None
            and today - previous.abandoned_on >= RETRY_AFTER_ABANDON
        ):
            candidates[creative.id] = previous.abandoned_on  # test only what came after
        # otherwise: cool-down, one fatigue is acted on once
    if not candidates:
        return []
    # One read of the campaign's metrics (candidates are live creatives: they are among them).
    metrics = _portfolio_metrics(session, plan.id)
    data = [(cid, day, n, c) for cid, day, n, c, _ in metrics if cid in candidates and day < today]
    if not data:
        return []
    # One calendar for the candidates and the campaign's stored noise model.
    first = min(d for _, d, _, _ in data)
    first_any = min((day for _, day, *_ in metrics), default=None)
    first = min(first, first_any or first)
    width = (today - first).days
    ids = list(candidates)
    index = {cid: i for i, cid in enumerate(ids)}
    imps = np.zeros((len(ids), width), dtype=np.int64)
    clicks = np.zeros((len(ids), width), dtype=np.int64)
    for cid, day, n, c in data:
        since = candidates[cid]
        if since is None or day >= since:
            imps[index[cid], (day - first).days] = n
            clicks[index[cid], (day - first).days] = c
    verdicts = fatigue_verdicts(imps, clicks, first, campaign_noise(session, plan.id, first, today, metrics))
    by_id = {c.id: c for c in live}
    signals = {
        s.platform_ad_id: s
        for s in session.exec(_fatigue_signals(), params={"ads": [by_id[c].platform_ad_id for c in ids]}).all()
    }
    opened = []
    for cid, verdict in zip(ids, verdicts, strict=True):
        row = imps[index[cid]]
        used = np.flatnonzero(row > 0)
        if len(used) < 2:
            continue
        if not verdict.fatigued:
            creative = by_id[cid]
            verdict = platform_verdict(
                signals.get(creative.platform_ad_id or ""), first + timedelta(days=int(used[0])), width - 1, verdict
            )
        if not verdict.fatigued:
            continue
        exp_id = f"{cid}:{today.isoformat()}"
        if session.get(Experiment, exp_id) is not None:
            continue
        exp = Experiment(
            id=exp_id,
            campaign_id=plan.id,
            parent_creative_id=cid,
            state=ExperimentState.DETECTED,
            seed=stable_seed(exp_id),
            policy=plan.settings.policy,
            detected_on=today,
            verdict={
                "day": (first + timedelta(days=verdict.day)).isoformat() if verdict.day is not None else None,
                "baseline_ctr": verdict.baseline_ctr,
                "current_ctr": verdict.current_ctr,
                "statistic": verdict.statistic,
                "threshold": verdict.threshold,
                "signal": verdict.signal,
                "reason": verdict.reason,
            },
        )
        session.add(exp)
        events.record(session, events.FATIGUE_DETECTED, plan.id, exp_id, creative=cid, **exp.verdict)
        opened.append(exp)
    session.flush()
    return opened


PLATFORM_FATIGUE_LEVELS = ("FATIGUED", "CREATIVE_FATIGUE", "HIGH")


def platform_verdict(signal, first_day: date, last_index: int, own):  # type: ignore[no-untyped-def]
    """The ad platform's own fatigue signal (e.g. Meta's webhook) as an extra signal.

    Counts only when it arrived after the creative's first reported day, so an
    old signal about a previous creative in the same ad slot cannot fire.
    """
    if signal is None or signal.level.upper() not in PLATFORM_FATIGUE_LEVELS or signal.received_at.date() < first_day:
        return own
    return fatigue.Verdict(
        fatigued=True,
        day=last_index,
        baseline_ctr=own.baseline_ctr,
        current_ctr=own.current_ctr,
        statistic=own.statistic,
        threshold=own.threshold,
        signal="platform",
        reason=f"the ad platform reports creative fatigue ({signal.level}) on {signal.received_at.date()}; "
        f"own test: {own.reason}",
    )


def ledger_rows(session: Session, campaign_id: str) -> list[LedgerEntry]:
    return list(session.exec(select(LedgerEntry).where(LedgerEntry.campaign_id == campaign_id)).all())
