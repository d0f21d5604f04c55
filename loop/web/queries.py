"""Read models for the dashboard and the HTML report: plain dicts, no HTML.

Every function takes an open session and only reads.  Conventions every
page shares:

- Money stays in integer minor units with its currency until a template
  formats it with the ``money`` filter (:func:`money`): one format everywhere.
- Data days (metrics, decisions, detections) are the ad platform's calendar.
  Something the loop did inside a tick is dated by that tick's platform day
  (:class:`PlatformCalendar`); the wall-clock time is shown only for what a
  person did (approvals) and as the time an event was recorded.
- Arms are named as on their cards (their creative's label, "v1".."vN"),
  never by a 0-based index (:func:`name_arms`).
- A detection date is the experiment's ``detected_on`` (:func:`detection_day`).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from loop import events
from loop.config import currency_digits, to_major
from loop.plans import CampaignPlan
from loop.tick import fatigue_verdicts, series, stored_noise
from loop.web.status import Status, creative_status, experiment_status
from policies.bandit import get_policy
from policies.budget import CapState, affordable_daily_budget, period_label, period_start
from policies.planning import ExperimentPlan
from storage.counters import read_all
from storage.ledger import ACCOUNTS, Ledger
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
from storage.states import END_STATES, OPEN_STATES, RUNNING_ROLES, CreativeRole, CreativeStatus, ExperimentState

# A bar turns amber at this share of its cap (or when less than a full day's test budget is left),
# red when what is left cannot fund the next step (see Bar.of).
WARN_SHARE = 0.8
# Below this many clicks on the winning arm a CTR is known to about ±35 % (95 %: 1.96/√30):
# too few to trust a winner whatever P(best) says.
FEW_CLICKS = 30
DEFAULT_TARGET = 0.95
# Flag keys a generator may record on a creative, and how the pages name them.
KNOWN_FLAGS = {
    "brand_delta_e": "brand ΔE",
    "delta_e": "brand ΔE",
    "fidelity_score": "fidelity",
}
# The timeline's stages in order (an approval is shown where one was asked for, abandoned where it ended).
STAGES = (
    ExperimentState.DETECTED,
    ExperimentState.EXPLORING,
    ExperimentState.TESTING,
    ExperimentState.DECIDED,
    ExperimentState.RENDERING,
    ExperimentState.SCALED,
)
GALLERY_PAGE = 12  # experiments per gallery page
# Keys of audit data that hold money in minor units (and any key ending in _minor).
MONEY_KEYS = frozenset({"left", "reserved", "actual", "budgets", "amount", "cost", "cap", "spent"})


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if moment is None:
        return None
    return _utc(moment)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# -- money --------------------------------------------------------------------------------
def money(minor: int | float | None, currency: str = "", suffix: bool = True) -> str:
    """The one money format: integer minor units in the currency's decimals (two for none: USD, EUR; none for
    JPY), thousands separated, then the currency (unless ``suffix`` is off: a table that names it once)."""
    if minor is None:
        return "–"
    return _decimal(minor, currency, ",") + (f" {currency}" if currency and suffix else "")


def amount(minor: int | float | None, currency: str = "") -> str:
    """Minor units as a plain number in the currency's decimals (the CSV's amount columns and the tables that
    name their currency once: "248.60", never 248.6; "2480" for JPY)."""
    return "–" if minor is None else _decimal(minor, currency, "")


def _decimal(minor: int | float, currency: str, thousands: str) -> str:
    m = int(round(minor))
    digits = currency_digits(currency)
    units, sub = divmod(abs(m), 10**digits)
    whole = f"{units:,}" if thousands else str(units)
    return f"{'-' if m < 0 else ''}{whole}" + (f".{sub:0{digits}d}" if digits else "")


def _plan_fund_rule(plan: CampaignPlan, account: str, left: int) -> tuple[bool, bool]:
    """(can fund the next step, can fund a full step) for ``left`` minor units, by the loop's own rules.

    test: the next day of testing needs a budget of at least two arms' minimum
    (``on_testing`` stops a test below it; ``affordable_daily_budget`` is what
    it would commit); a full day is the configured daily budget.
    credit: the next experiment needs two fast variants (plus the pro render
    when it is reserved up front), as ``on_detected`` requires.
    """
    s = plan.settings
    state = CapState(cap=left, spent=0, reserved=0)
    if account == "test":
        min_arm = plan.min_arm_minor
        budget = affordable_daily_budget(state, plan.test_daily_budget, s.commitment_days, s.overspend)
        return budget >= 2 * max(1, min_arm), budget >= plan.test_daily_budget
    pro = plan.pro_credit_cost if s.reserve_pro_credit else 0
    need = pro + 2 * plan.fast_credit_cost
    full = pro + s.variants * plan.fast_credit_cost
    return left >= need, left >= full


@dataclass(frozen=True)
class Bar:
    """One account against its cap, for the overview's bars (amounts in minor units)."""

    account: str
    currency: str
    cap: int
    spent: int
    reserved: int
    left: int
    spent_pct: float
    reserved_pct: float
    level: str  # ok | warn | full
    why: str
    period: str = ""  # the cap's period ("2026-01", "2026-W03"); empty for a lifetime cap

    @classmethod
    def of(
        cls, campaign_id: str, currency: str, account: str, state: CapState, plan: CampaignPlan | None, period: str = ""
    ) -> Bar:
        """Red when what is left cannot fund the next step (a cap at 99.8 % that cannot pay one more
        test day is, for finance, a cap reached); amber from 80 % or when less than a full step is left."""
        used = state.spent + state.reserved
        left = max(0, state.cap - used)
        share = used / state.cap if state.cap else (1.0 if used else 0.0)
        step = "one more day of testing" if account == "test" else "the next experiment's variants"
        if plan is not None:
            can_next, can_full = _plan_fund_rule(plan, account, left)
        else:  # a campaign no longer in the config: only the share is known
            can_next, can_full = share < 1.0, share < 1.0
        if not can_next:
            level, why = "full", f"what is left ({money(left, currency)}) cannot fund {step}"
        elif share >= WARN_SHARE or not can_full:
            level, why = "warn", f"{100 * share:.1f} % used; {money(left, currency)} left"
        else:
            level, why = "ok", f"{100 * share:.1f} % used"
        spent_pct = min(100.0, 100.0 * state.spent / state.cap) if state.cap else 0.0
        reserved_pct = min(100.0 - spent_pct, 100.0 * state.reserved / state.cap) if state.cap else 0.0
        return cls(
            account, currency, state.cap, state.spent, state.reserved, left,
            round(spent_pct, 1), round(reserved_pct, 1), level, why, period,
        )  # fmt: skip


def bars(session: Session, campaign: Campaign, plan: CampaignPlan | None) -> list[Bar]:
    ledger = Ledger(session)
    out = []
    for a in ACCOUNTS:
        summary = ledger.summary(campaign.id, a)  # the cap's current period (the platform's day)
        label = "" if summary.period == "lifetime" else summary.label
        out.append(Bar.of(campaign.id, campaign.currency, a, summary.state, plan, label))
    return out


# -- the platform's calendar ----------------------------------------------------------------
class PlatformCalendar:
    """Maps a wall-clock moment to the platform day of the tick that was running then.

    Events and ledger entries carry the wall-clock time they were written; a
    tick works on one platform day (``TickRun.day``: on the simulator a
    virtual day, on Meta the account's date).  Anything written outside a
    tick (a person's approval) has no platform day: :meth:`day_of` is None.
    """

    def __init__(self, runs: Iterable[tuple[datetime, datetime | None, date]]) -> None:
        ordered: list[tuple[datetime, datetime | None, date]] = sorted((_utc(s), as_utc(f), d) for s, f, d in runs)
        self._starts = [s for s, _, _ in ordered]
        self._runs = ordered

    @classmethod
    def load(cls, session: Session, since: datetime | None = None, until: datetime | None = None) -> PlatformCalendar:
        stmt = select(col(TickRun.started_at), col(TickRun.finished_at), col(TickRun.day)).where(
            TickRun.dry_run == False,  # noqa: E712
            col(TickRun.day).is_not(None),
        )
        if since is not None:
            stmt = stmt.where(TickRun.started_at >= since - timedelta(days=1))
        if until is not None:
            stmt = stmt.where(TickRun.started_at <= until)
        return cls((s, f, d) for s, f, d in session.exec(stmt).all() if s is not None and d is not None)

    def day_of(self, moment: datetime | None) -> date | None:
        if moment is None:
            return None
        at = _utc(moment)
        i = bisect.bisect_right(self._starts, at) - 1
        if i < 0:
            return None
        start, finish, day = self._runs[i]
        if finish is None:  # unfinished (a crash): until the next tick started
            finish = self._starts[i + 1] if i + 1 < len(self._starts) else at
        return day if at <= finish else None


def detection_day(exp: Experiment) -> date | None:
    """The one detection date every page shows: the platform day the loop detected the fatigue."""
    if exp.detected_on is not None:
        return exp.detected_on
    day = (exp.verdict or {}).get("day")
    return date.fromisoformat(day) if day else None


# -- arms and labels ------------------------------------------------------------------------
_ARM = re.compile(r"\barm (\d+)\b")


def name_arms(text_: str, labels: Sequence[str]) -> str:
    """A policy's note with its 0-based "arm 2" replaced by the arm's card name ("v3")."""

    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return labels[i] if 0 <= i < len(labels) else m.group(0)

    return _ARM.sub(sub, text_ or "")


def shown_name(creative: Creative | None, fallback: str = "") -> str:
    if creative is None:
        return fallback
    return creative.label or creative.id


def describe(data: Mapping[str, Any] | None, currency: str, labels: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Audit data as (key, value) pairs: money formatted from minor units, arm notes named as on the cards."""
    out: list[tuple[str, str]] = []
    for key, value in (data or {}).items():
        is_money = key in MONEY_KEYS or key.endswith("_minor")
        label = key.removesuffix("_minor")
        if is_money and isinstance(value, int | float) and not isinstance(value, bool):
            out.append((label, money(value, currency)))
        elif is_money and isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            items = [money(v, currency, suffix=False) for v in value]
            named = [f"{labels[i]} {v}" if i < len(labels) else v for i, v in enumerate(items)]
            out.append((label, " · ".join(named) + f" {currency}"))
        elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
            shown = [f"{v:.3f}" for v in value]
            if len(labels) == len(value):
                shown = [f"{lab} {v}" for lab, v in zip(labels, shown, strict=True)]
            out.append((key, " · ".join(shown)))
        elif isinstance(value, str):
            out.append((key, name_arms(value, labels) if labels else value))
        elif isinstance(value, float):
            out.append((key, f"{value:.4g}"))
        else:
            out.append((key, json.dumps(value, default=str, ensure_ascii=False)))
    return out


# -- creatives and fatigue --------------------------------------------------------------------
def _verdict_dict(verdict: Any, days: list[date]) -> dict[str, Any]:
    return {
        "status": "fatigued" if verdict.fatigued else "healthy",
        "baseline_ctr": verdict.baseline_ctr if np.isfinite(verdict.baseline_ctr) else None,
        "day": days[verdict.day] if verdict.day is not None and verdict.day < len(days) else None,
        "reason": verdict.reason,
        "statistic": verdict.statistic,
        "threshold": verdict.threshold,
    }


def live_verdict(
    days: list[date], imps: np.ndarray, clicks: np.ndarray, session: Session | None = None, campaign_id: str = ""
) -> dict[str, Any]:
    """The detector on a creative's series as the loop runs it (``loop.tick.fatigue_verdicts``).

    With a ``session``, the noise model the loop stored for the campaign's days is used when it
    covers every day of the series (as the tick tested them); otherwise the detector's default.
    """
    if len(days) < 2:
        return {"status": "too little data", "baseline_ctr": None, "day": None, "reason": "", "statistic": None,
                "threshold": None}  # fmt: skip
    # On the platform's calendar from the first day, missing days empty (as the tick lays them out).
    width = (days[-1] - days[0]).days + 1
    n = np.zeros((1, width), dtype=np.int64)
    c = np.zeros((1, width), dtype=np.int64)
    idx = [(d - days[0]).days for d in days]
    n[0, idx] = imps
    c[0, idx] = clicks
    noise = None
    if session is not None and campaign_id:
        noise = stored_noise(session, campaign_id, days[0], days[-1] + timedelta(days=1))
        if noise is not None and len(noise.df) != width:
            noise = None  # the stored calendar does not line up with this series
    try:
        verdict = fatigue_verdicts(n, c, days[0], noise)[0]
    except ValueError as exc:
        return {"status": "too little data", "baseline_ctr": None, "day": None,
                "reason": f"the detector refused this series: {exc}", "statistic": None, "threshold": None}  # fmt: skip
    calendar = [days[0] + timedelta(days=i) for i in range(width)]
    return _verdict_dict(verdict, calendar)


def latest_experiments(session: Session, creative_ids: Sequence[str]) -> dict[str, Experiment]:
    latest: dict[str, Experiment] = {}
    if not creative_ids:
        return latest
    for e in session.exec(
        select(Experiment)
        .where(col(Experiment.parent_creative_id).in_(list(creative_ids)))
        .order_by(col(Experiment.created_at), col(Experiment.id))
    ).all():
        latest[e.parent_creative_id] = e
    return latest


def names_of(session: Session, ids: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows = session.exec(select(Creative.id, Creative.label).where(col(Creative.id).in_(wanted))).all()
    return {cid: label or cid for cid, label in rows}


def fatigue_view(session: Session, creative: Creative) -> dict[str, Any]:
    """The creative's daily series, its status and why it is (or is not) fatigued.

    When an experiment was opened for it, the stored verdict is the one the
    loop acted on; otherwise the detector is run on the series as it stands.
    """
    days, imps, clicks = series(session, creative.id, date.max)
    exp = latest_experiments(session, [creative.id]).get(creative.id)
    view: dict[str, Any] = {
        "days": days,
        "impressions": imps,
        "clicks": clicks,
        "experiment": exp,
        "baseline_ctr": None,
        "detected_day": None,
        "signal_day": None,
        "reason": "",
        "statistic": None,
        "threshold": None,
    }
    verdict = "too little data"
    if exp is not None and exp.verdict:
        v = exp.verdict
        view.update(
            baseline_ctr=v.get("baseline_ctr"),
            detected_day=detection_day(exp),
            signal_day=date.fromisoformat(v["day"]) if v.get("day") else None,
            reason=v.get("reason", ""),
            statistic=v.get("statistic"),
            threshold=v.get("threshold"),
        )
        verdict = "fatigued"
    else:
        lv = live_verdict(days, imps, clicks, session, creative.campaign_id)
        verdict = lv["status"]
        view.update(
            baseline_ctr=lv["baseline_ctr"],
            signal_day=lv["day"] if lv["status"] == "fatigued" else None,
            reason=lv["reason"],
            statistic=lv["statistic"],
            threshold=lv["threshold"],
        )
    names = names_of(session, [exp.scaled_creative_id, exp.winner_creative_id] if exp else [])
    view["status"] = creative_status(creative, exp, verdict, names, fatigue_day=view["signal_day"])
    return view


class ReadCache:
    """Results of reads over all the metric rows, keyed by the data they came from (LRU, thread-safe).

    Metrics change only when a tick ingests, so the overview's aggregates and
    the detector's readings are keyed by :func:`data_version` or by the shape
    of a creative's series, and computed once per change.
    """

    def __init__(self, max_items: int = 20_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


def data_version(session: Session) -> tuple[Any, ...]:
    """Changes whenever metrics may have: a tick started or finished, or a metric row was added.

    (Metrics are written only by a tick's ingest; a row written outside one is a new row.)
    """
    tick = session.execute(
        select(TickRun.id, TickRun.finished_at).order_by(col(TickRun.id).desc()).limit(1)  # type: ignore[arg-type]
    ).first()
    last_metric = session.execute(select(func.max(DailyMetric.id))).scalar()
    return (tuple(tick) if tick else None, last_metric)


def _series_facts(
    session: Session, live: Sequence[Any], by_campaign: Mapping[str, Sequence[Any]]
) -> tuple[dict[str, tuple[int, date, datetime]], dict[str, tuple[int, int]]]:
    """Per creative: (rows, last day, last update), and (impressions, clicks) over its campaign's last 7 days."""
    table = DailyMetric.__table__  # type: ignore[attr-defined]
    ids = [c.id for c in live]
    shape: dict[str, tuple[int, date, datetime]] = {}
    for i in range(0, len(ids), 500):
        for cid, n, last, updated in session.execute(
            select(table.c.creative_id, func.count(), func.max(table.c.day), func.max(table.c.updated_at))
            .where(table.c.creative_id.in_(ids[i : i + 500]))
            .group_by(table.c.creative_id)
        ).all():
            shape[cid] = (int(n), last, updated)
    window: dict[str, date] = {}
    for campaign_id, cs in by_campaign.items():
        lasts = [shape[c.id][1] for c in cs if c.id in shape]
        if lasts:
            window[campaign_id] = max(lasts) - timedelta(days=6)
    recent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    if window:
        earliest = min(window.values())
        campaign_of = {c.id: c.campaign_id for c in live}
        for i in range(0, len(ids), 500):
            for cid, day, n, c in session.execute(
                select(table.c.creative_id, table.c.day, table.c.impressions, table.c.clicks).where(
                    table.c.creative_id.in_(ids[i : i + 500]), table.c.day >= earliest
                )
            ).all():
                if day >= window[campaign_of[cid]]:
                    recent[cid][0] += n
                    recent[cid][1] += c
    return shape, {k: (v[0], v[1]) for k, v in recent.items()}


def _series_of(session: Session, creative_ids: Sequence[str]) -> dict[str, tuple[list[date], np.ndarray, np.ndarray]]:
    table = DailyMetric.__table__  # type: ignore[attr-defined]
    rows: dict[str, list[tuple[date, int, int]]] = defaultdict(list)
    for i in range(0, len(creative_ids), 500):
        chunk = list(creative_ids[i : i + 500])
        for cid, day, n, c in session.execute(
            select(table.c.creative_id, table.c.day, table.c.impressions, table.c.clicks)
            .where(table.c.creative_id.in_(chunk))
            .order_by(table.c.creative_id, table.c.day)
        ).all():
            rows[cid].append((day, n, c))
    return {
        cid: (
            [r[0] for r in rs],
            np.array([r[1] for r in rs], dtype=np.int64),
            np.array([r[2] for r in rs], dtype=np.int64),
        )
        for cid, rs in rows.items()
    }


_CREATIVE_COLUMNS = ("id", "campaign_id", "role", "label", "platform_ad_id", "status", "created_at")
_EXPERIMENT_COLUMNS = (
    "id", "campaign_id", "parent_creative_id", "state", "reason", "detected_on", "testing_started_on",
    "decided_on", "winner_creative_id", "scaled_creative_id", "waiting_for", "approved_stage", "waiting_until", "created_at",
)  # fmt: skip


def overview(
    session: Session,
    plans: Mapping[str, CampaignPlan] | None = None,
    cache: ReadCache | None = None,
    campaign: str | None = None,
) -> list[dict[str, Any]]:
    """Every campaign: its live creatives with status and recent CTR, its experiments, its cap bars.

    A handful of queries for all campaigns together (not a few per creative).
    With a ``cache`` (the dashboard's), what needs every metric row (the series
    facts, the detector's readings) is computed once per change of the data,
    i.e. once per tick, not once per page view.
    """
    plans = plans or {}
    # Plain rows, not ORM objects: the status functions only read attributes, and a year of
    # experiments is thousands of them (the identity map would cost more than the queries).
    ctab, etab = Creative.__table__, Experiment.__table__  # type: ignore[attr-defined]
    camps_stmt = select(Campaign).order_by(Campaign.id)
    live_stmt = (
        select(*(ctab.c[k] for k in _CREATIVE_COLUMNS))
        .where(ctab.c.role.in_(RUNNING_ROLES), ctab.c.platform_ad_id.is_not(None))
        .order_by(ctab.c.campaign_id, ctab.c.created_at, ctab.c.id)
    )
    exps_stmt = select(*(etab.c[k] for k in _EXPERIMENT_COLUMNS)).order_by(etab.c.created_at.desc(), etab.c.id)
    if campaign is not None:
        camps_stmt = camps_stmt.where(Campaign.id == campaign)
        live_stmt = live_stmt.where(ctab.c.campaign_id == campaign)
        exps_stmt = exps_stmt.where(etab.c.campaign_id == campaign)
    camps = session.exec(camps_stmt).all()
    # 1. live creatives, and the facts of their series: rows, last day, last update, CTR of the
    #    campaign's last 7 platform days (scans of the whole metric table: kept until the data changes)
    live: list[Any] = list(session.execute(live_stmt).all())
    ids = [c.id for c in live]
    by_campaign: dict[str, list[Any]] = defaultdict(list)
    for c in live:
        by_campaign[c.campaign_id].append(c)
    version = ("facts", campaign, data_version(session), len(ids))
    facts = cache.get(version) if cache is not None else None
    if facts is None:
        facts = _series_facts(session, live, by_campaign)
        if cache is not None:
            cache.put(version, facts)
    shape, recent = facts
    # 3. experiments, the newest per parent
    exps: list[Any] = list(session.execute(exps_stmt).all())
    latest: dict[str, Any] = {}
    exps_by_campaign: dict[str, list[Any]] = defaultdict(list)
    for e in exps:
        latest.setdefault(e.parent_creative_id, e)
        exps_by_campaign[e.campaign_id].append(e)
    # Scaled creatives are live ones (named above); winners are named only where a status says them.
    names = names_of(session, [e.winner_creative_id for e in exps if e.state in OPEN_STATES])
    names.update({c.id: c.label or c.id for c in live})
    # 4. the detector, for live creatives the loop has not acted on (cached per series shape)
    readings: dict[str, dict[str, Any]] = {}
    todo = []
    for c in live:
        if c.id in latest or c.status != CreativeStatus.ACTIVE or c.id not in shape:
            continue
        key = ("verdict", c.id, *shape[c.id])
        found = cache.get(key) if cache is not None else None
        if found is not None:
            readings[c.id] = found
        else:
            todo.append(c.id)
    campaign_of = {c.id: c.campaign_id for c in live}
    for cid, (days, imps, clicks) in _series_of(session, todo).items():
        readings[cid] = live_verdict(days, imps, clicks, session, campaign_of.get(cid, ""))
        if cache is not None:
            cache.put(("verdict", cid, *shape[cid]), readings[cid])
    # 5. one card per campaign
    # Ledger entries are only ever added, and caps change only in a tick: the sums are exact per version.
    last_entry = session.execute(select(func.max(LedgerEntry.id))).scalar()
    key = ("caps", campaign, version[2], last_entry)
    caps = cache.get(key) if cache is not None else None
    if caps is None:
        caps = Ledger(session).states(None if campaign is None else [campaign])
        if cache is not None:
            cache.put(key, caps)
    out = []
    for camp in camps:
        creatives: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for c in by_campaign.get(camp.id, []):
            reading = readings.get(c.id, {"status": "too little data", "day": None})
            shown, clicked = recent.get(c.id, (0, 0))
            # Active ads in the table; paused or replaced ones in a line under it.
            (creatives if c.status == CreativeStatus.ACTIVE else others).append(
                {
                    "creative": c,
                    "ctr": clicked / shown if shown else None,
                    "days": shape.get(c.id, (0,))[0],
                    "status": creative_status(
                        c, latest.get(c.id), reading["status"], names, fatigue_day=reading["day"]
                    ),
                }
            )
        mine = exps_by_campaign.get(camp.id, [])
        ended = [e for e in mine if e.state in END_STATES]
        plan = plans.get(camp.id)
        out.append(
            {
                "campaign": camp,
                "state": "halted" if camp.halted_reason else "active",
                "creatives": creatives,
                "paused": others,
                "open": [(e, experiment_status(e, names)) for e in mine if e.state in OPEN_STATES],
                "ended": [(e, experiment_status(e, names)) for e in ended[:12]],
                "ended_count": len(ended),
                "bars": [Bar.of(camp.id, camp.currency, a, caps[(camp.id, a)], plan) for a in ACCOUNTS],
            }
        )
    return out


# -- experiments ------------------------------------------------------------------------------
def _stage_of(event: AuditEvent) -> str | None:
    stage = (event.data or {}).get("stage")
    return {
        events.FATIGUE_DETECTED: ExperimentState.DETECTED,
        events.VARIANTS_GENERATED: ExperimentState.EXPLORING,
        events.ARMS_LAUNCHED: ExperimentState.EXPLORING,
        events.ALLOCATION_SET: ExperimentState.TESTING,
        events.WINNER_DECLARED: ExperimentState.DECIDED,
        events.PRO_RENDERED: ExperimentState.RENDERING,
        events.APPROVAL_REQUESTED: f"awaiting approval ({stage})",
        events.APPROVED: f"approved ({stage})",
        events.REJECTED: "rejected",
        events.WINNER_SCALED: ExperimentState.SCALED,
        events.EXPERIMENT_ABANDONED: ExperimentState.ABANDONED,
    }.get(event.name)


def timeline(exp: Experiment, evts: list[AuditEvent], calendar: PlatformCalendar | None = None) -> list[dict[str, Any]]:
    """The state machine's stages, each marked done / current / ahead, with when it was reached.

    ``day`` is the platform day of the tick that reached it; ``at`` the wall
    clock, shown where no tick did it (a person's approval).
    """
    calendar = calendar or PlatformCalendar([])
    reached: dict[str, AuditEvent] = {}
    for e in evts:
        stage = _stage_of(e)
        if stage is not None:
            reached.setdefault(stage, e)
    asked = [s for s in reached if s.startswith("awaiting approval")]
    stages: list[str] = []
    for stage in STAGES:
        if stage == ExperimentState.TESTING and "awaiting approval (drafts)" in asked:
            stages.append("awaiting approval (drafts)")
        if stage == ExperimentState.SCALED and ("awaiting approval (pro)" in asked or exp.waiting_for == "pro"):
            stages.append("awaiting approval (pro)")
        stages.append(stage)
    current = f"awaiting approval ({exp.waiting_for})" if exp.state == ExperimentState.AWAITING_APPROVAL else exp.state
    if exp.state == ExperimentState.ABANDONED:
        last = max((stages.index(s) for s in reached if s in stages), default=0)
        stages = stages[: last + 1] + [ExperimentState.ABANDONED]
    idx = stages.index(current) if current in stages else len(stages) - 1
    out = []
    for i, s in enumerate(stages):
        ev = reached.get(s)
        out.append(
            {
                "name": s,
                "status": "done" if i < idx else "current" if i == idx else "ahead",
                "day": calendar.day_of(ev.at) if ev else None,
                "at": as_utc(ev.at) if ev else None,
            }
        )
    return out


def arm_cards(session: Session, exp: Experiment, *, seed_rng: bool = True) -> dict[str, Any]:
    """Each arm's delivery, CTR with its 95 % interval and P(best), numbered as on its card."""
    from loop.experiments import arm_counts
    from loop.web.charts import ctr_interval

    arms = list(session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all())
    clicks, imps = arm_counts(session, arms, date.max)
    prob = np.zeros(len(arms))
    if arms and imps.sum() > 0:
        # Seeded with the experiment's seed, so the page shows the same figure on every load.
        prob = get_policy(exp.policy).prob_best(clicks, imps, np.random.default_rng(exp.seed))
    lo, hi = ctr_interval(clicks, imps) if arms else (np.zeros(0), np.zeros(0))
    creatives = {
        c.id: c for c in session.exec(select(Creative).where(col(Creative.id).in_([a.creative_id for a in arms]))).all()
    }
    cards = []
    for i, arm in enumerate(arms):
        creative = creatives.get(arm.creative_id)
        cards.append(
            {
                "arm": arm,
                "creative": creative,
                "label": shown_name(creative, arm.creative_id),
                "impressions": int(imps[i]),
                "clicks": int(clicks[i]),
                "ctr": clicks[i] / imps[i] if imps[i] else None,
                "ctr_lo": float(lo[i]) if imps[i] else None,
                "ctr_hi": float(hi[i]) if imps[i] else None,
                "prob_best": float(prob[i]),
                "winner": arm.creative_id == exp.winner_creative_id,
            }
        )
    return {"cards": cards, "clicks": clicks, "impressions": imps, "labels": [c["label"] for c in cards]}


_POLICY_REASONS = {"prob_best: ": "P(best) reached the target: ", "expected_loss: ": "expected loss small enough: "}


def why_test_ended(session: Session, exp: Experiment, labels: Sequence[str]) -> str:
    """Why the test ended, as the loop recorded it when it declared the winner (arms named as on the cards)."""
    declared = session.exec(
        select(AuditEvent)
        .where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.WINNER_DECLARED)
        .order_by(col(AuditEvent.at).desc())
    ).first()
    return humane(str((declared.data or {}).get("reason", "")) if declared is not None else "", labels)


def humane(reason: str, labels: Sequence[str]) -> str:
    """A policy's reason in words, its arms named as on their cards."""
    for code, words in _POLICY_REASONS.items():
        if reason.startswith(code):
            reason = words + reason.removeprefix(code)
    return name_arms(reason, labels)


def evidence(cards: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Is the winner's evidence strong enough to trust at a glance? Weak: P(best) below target or few clicks."""
    winner = next((c for c in cards if c["winner"]), None)
    if winner is None:
        return {"weak": False, "reasons": [], "winner": None, "target": target}
    reasons = []
    if winner["prob_best"] < target:
        reasons.append(f"P(best) of {winner['label']} is {winner['prob_best']:.2f}, below the target {target:.2f}")
    if winner["clicks"] < FEW_CLICKS:
        reasons.append(
            f"{winner['label']} has only {winner['clicks']} click{'s' if winner['clicks'] != 1 else ''} "
            f"on {winner['impressions']:,} impressions (fewer than {FEW_CLICKS})"
        )
    return {"weak": bool(reasons), "reasons": reasons, "winner": winner, "target": target}


def experiment_view(session: Session, exp: Experiment, target: float = DEFAULT_TARGET) -> dict[str, Any]:
    arms = arm_cards(session, exp)
    labels = arms["labels"]
    evts = list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.experiment_id == exp.id)
            .order_by(col(AuditEvent.at), col(AuditEvent.id))
        ).all()
    )
    decisions = list(
        session.exec(
            select(BanditDecision).where(BanditDecision.experiment_id == exp.id).order_by(col(BanditDecision.day))
        ).all()
    )
    mutations = list(
        session.exec(
            select(PlatformMutation).where(PlatformMutation.experiment_id == exp.id).order_by(col(PlatformMutation.id))
        ).all()
    )
    campaign = session.get(Campaign, exp.campaign_id)
    currency = campaign.currency if campaign else ""
    calendar = PlatformCalendar.load(
        session, as_utc(evts[0].at) if evts else None, as_utc(evts[-1].at) if evts else None
    )
    ledger = Ledger(session)
    names = names_of(session, [exp.parent_creative_id, exp.winner_creative_id, exp.pro_creative_id,
                               exp.scaled_creative_id])  # fmt: skip
    return {
        "experiment": exp,
        "status": experiment_status(exp, names),
        "test_plan": ExperimentPlan.from_dict(exp.plan).summary() if exp.plan else "",
        "currency": currency,
        "detected": detection_day(exp),
        "parent": session.get(Creative, exp.parent_creative_id),
        "winner": session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None,
        "pro": session.get(Creative, exp.pro_creative_id) if exp.pro_creative_id else None,
        **arms,
        "evidence": evidence(arms["cards"], target),
        "test_end": why_test_ended(session, exp, labels) if exp.winner_creative_id else "",
        "reason": humane(exp.reason, labels),
        "timeline": timeline(exp, evts, calendar),
        "events": [
            {"event": e, "day": calendar.day_of(e.at), "data": describe(e.data, currency, labels)} for e in evts
        ],
        "decisions": [
            {
                "d": d,
                "weights": " · ".join(f"{lab} {w:.3f}" for lab, w in zip(labels, d.weights, strict=False)),
                "prob_best": " · ".join(f"{lab} {p:.3f}" for lab, p in zip(labels, d.prob_best, strict=False)),
                "budgets": " · ".join(
                    f"{lab} {money(b, currency, suffix=False)}" for lab, b in zip(labels, d.budgets_minor, strict=False)
                ),
                "counts": " · ".join(
                    f"{lab} {c:,}/{n:,}" for lab, c, n in zip(labels, d.clicks, d.impressions, strict=False)
                ),
                "note": name_arms(d.note, labels),
            }
            for d in decisions
        ],
        "mutations": mutations,
        "mismatches": [
            {"event": e, "day": calendar.day_of(e.at), "data": describe(e.data, currency, labels)}
            for e in evts
            if e.name == events.DELIVERY_MISMATCH
        ],
        "test_spend": ledger.spent(exp.campaign_id, "test", exp.id),
        "credit_spend": ledger.spent(exp.campaign_id, "credit", exp.id),
    }


# -- gallery and approvals ------------------------------------------------------------------
def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


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
    rest: list[tuple[str, str]] = []
    for key, value in sorted(flags.items()):
        (known if key in KNOWN_FLAGS else rest).append((KNOWN_FLAGS.get(key, key), _shown(value)[:120]))
    return known + rest


def lineages(session: Session, exps: Sequence[Experiment]) -> list[dict[str, Any]]:
    """parent → drafts → winner → pro render → scaled ad, for each experiment (three queries in all)."""
    ids = [e.id for e in exps]
    drafts: dict[str, list[Creative]] = defaultdict(list)
    if ids:
        for c in session.exec(
            select(Creative)
            .where(col(Creative.experiment_id).in_(ids), Creative.role == CreativeRole.DRAFT)
            .order_by(col(Creative.created_at), col(Creative.id))
        ).all():
            drafts[c.experiment_id or ""].append(c)
    wanted = {x for e in exps for x in (e.parent_creative_id, e.pro_creative_id, e.scaled_creative_id) if x}
    others = (
        {c.id: c for c in session.exec(select(Creative).where(col(Creative.id).in_(sorted(wanted)))).all()}
        if wanted
        else {}
    )
    out = []
    for e in exps:
        pro = others.get(e.pro_creative_id or "")
        scaled = others.get(e.scaled_creative_id or "")
        out.append(
            {
                "experiment": e,
                "status": experiment_status(e, {c.id: c.label or c.id for c in [*drafts[e.id], *others.values()]}),
                "parent": others.get(e.parent_creative_id),
                "drafts": drafts[e.id],
                "winner_id": e.winner_creative_id,
                "pro": pro,
                "scaled": scaled if scaled is not None and scaled.id != (pro.id if pro else None) else None,
            }
        )
    return out


def lineage(session: Session, exp: Experiment) -> dict[str, Any]:
    return lineages(session, [exp])[0]


def gallery(
    session: Session, campaign: str | None = None, page: int = 1, per_page: int = GALLERY_PAGE
) -> dict[str, Any]:
    """One page of lineages, newest experiment first."""
    count = select(func.count()).select_from(Experiment)
    stmt = select(Experiment).order_by(col(Experiment.created_at).desc(), Experiment.id)
    if campaign:
        count = count.where(Experiment.campaign_id == campaign)
        stmt = stmt.where(Experiment.campaign_id == campaign)
    total = int(session.exec(count).one())  # type: ignore[call-overload]
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    exps = session.exec(stmt.offset((page - 1) * per_page).limit(per_page)).all()
    return {"lineages": lineages(session, exps), "page": page, "pages": pages, "total": total}


def all_lineages(session: Session, campaign: str) -> list[dict[str, Any]]:
    exps = session.exec(
        select(Experiment)
        .where(Experiment.campaign_id == campaign)
        .order_by(col(Experiment.created_at), col(Experiment.id))
    ).all()
    return lineages(session, exps)


def approvals(session: Session, targets: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """What waits for a person, each with the evidence needed to decide."""
    targets = targets or {}
    waiting = session.exec(
        select(Experiment)
        .where(Experiment.state == ExperimentState.AWAITING_APPROVAL)
        .order_by(col(Experiment.updated_at), col(Experiment.id))
    ).all()
    out = []
    for exp, item in zip(waiting, lineages(session, waiting), strict=True):
        asked = session.exec(
            select(AuditEvent)
            .where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.APPROVAL_REQUESTED)
            .order_by(col(AuditEvent.at).desc())
        ).first()
        approved = None
        if exp.approved_stage is not None and exp.approved_stage == exp.waiting_for:
            approved = session.exec(
                select(AuditEvent)
                .where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.APPROVED)
                .order_by(col(AuditEvent.at).desc())
            ).first()
        arms = arm_cards(session, exp)
        target = targets.get(exp.campaign_id, DEFAULT_TARGET)
        asked_at = as_utc(asked.at) if asked else as_utc(exp.updated_at)
        item.update(
            asked_at=asked_at,
            asked_day=PlatformCalendar.load(session, asked_at, asked_at).day_of(asked_at),
            approved=approved,
            winner=session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None,
            cards=arms["cards"],
            labels=arms["labels"],
            test_end=why_test_ended(session, exp, arms["labels"]) if exp.winner_creative_id else "",
            reason=humane(exp.reason, arms["labels"]),
            evidence=evidence(arms["cards"], target),
        )
        out.append(item)
    return out


def waiting_count(session: Session) -> int:
    """Experiments that wait for a person (an approved one waits for the next tick, not for a person)."""
    table = Experiment.__table__  # type: ignore[attr-defined]
    return int(
        session.execute(
            select(func.count())
            .select_from(table)
            .where(
                table.c.state == ExperimentState.AWAITING_APPROVAL,
                (table.c.approved_stage.is_(None)) | (table.c.approved_stage != table.c.waiting_for),
            )
        ).scalar_one()
    )


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


def ledger_view(
    session: Session,
    campaign: str | None = None,
    plans: Mapping[str, CampaignPlan] | None = None,
    cache: ReadCache | None = None,
) -> list[dict[str, Any]]:
    """Per campaign: totals against caps, a row per platform month and account, credits by tier, cost per winner.

    Amounts are minor units. An entry's month is the platform day of the tick
    that wrote it; one written outside a tick (e.g. ``creative-loop fix``)
    falls in the month of its wall-clock date.  Entries are only ever added,
    so with a ``cache`` the view is computed once per new entry or tick.
    """
    key = ("ledger", campaign, data_version(session), session.execute(select(func.max(LedgerEntry.id))).scalar())
    found = cache.get(key) if cache is not None else None
    if found is None:
        found = _ledger_view(session, campaign, plans or {})
        if cache is not None:
            cache.put(key, found)
    return found  # type: ignore[no-any-return]


def _ledger_view(session: Session, campaign: str | None, plans: Mapping[str, CampaignPlan]) -> list[dict[str, Any]]:
    ledger = Ledger(session)
    stmt = select(Campaign).order_by(Campaign.id)
    if campaign:
        stmt = stmt.where(Campaign.id == campaign)
    camps = session.exec(stmt).all()
    lt = LedgerEntry.__table__  # type: ignore[attr-defined]
    entries_stmt = select(  # type: ignore[call-overload]
        lt.c.campaign_id, lt.c.account, lt.c.kind, lt.c.amount_minor, lt.c.tier, lt.c.created_at, lt.c.day
    )
    if campaign:
        entries_stmt = entries_stmt.where(lt.c.campaign_id == campaign)
    entries = session.execute(entries_stmt).all()
    moments = [as_utc(e[5]) for e in entries if e[6] is None]
    calendar = PlatformCalendar.load(session, min(moments, default=None), max(moments, default=None))  # type: ignore[type-var]
    per_campaign: dict[str, list[Any]] = defaultdict(list)
    for e in entries:
        per_campaign[e[0]].append(e)
    scaled = dict(
        session.exec(  # type: ignore[arg-type]
            select(Experiment.campaign_id, func.count())
            .where(Experiment.state == ExperimentState.SCALED)
            .group_by(Experiment.campaign_id)
        ).all()
    )
    caps = ledger.states([campaign] if campaign else None)  # each cap in its current period
    out = []
    for camp in camps:
        # An entry belongs to the cap period of its platform day (LedgerEntry.day), the period whose cap it
        # counted against; an entry without one (older rows) to the platform day of the tick that wrote it.
        periods: dict[tuple[date | None, str], dict[str, int]] = defaultdict(
            lambda: {"reserve": 0, "release": 0, "actual": 0}
        )
        tiers: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "spent": 0})
        total = 0
        grouping = "month" if camp.cap_period == "lifetime" else camp.cap_period
        for _, account, kind, amount_minor, tier, created, day in per_campaign.get(camp.id, []):
            day = day or calendar.day_of(created) or (as_utc(created) or datetime.now(UTC)).date()
            # A lifetime cap has one period; its rows still go by platform month, to read the ledger by.
            periods[(period_start(day, grouping), account)][kind] += amount_minor
            if kind == "actual":
                total += amount_minor
            if account == "credit" and kind == "actual":
                tiers[tier or "?"]["count"] += 1
                tiers[tier or "?"]["spent"] += amount_minor
        states = {a: caps[(camp.id, a)] for a in ACCOUNTS}
        winners = int(scaled.get(camp.id, 0))
        rows = []
        used: dict[str, int] = defaultdict(int)  # under a lifetime cap, what the months so far used
        for (start, account), k in sorted(periods.items(), key=lambda kv: (kv[0][0] or date.min, kv[0][1])):
            still = max(0, k["reserve"] - k["release"])
            used[account] = (used[account] if camp.cap_period == "lifetime" else 0) + k["actual"] + still
            rows.append(
                {
                    "campaign": camp.id,
                    "period": period_label(start, grouping),
                    "period_start": start.isoformat() if start else "",
                    "account": account,
                    "cap": states[account].cap,
                    "reserved": k["reserve"],
                    "released": k["release"],
                    "spent": k["actual"],
                    "open": still,
                    "left": max(0, states[account].cap - used[account]),
                    "currency": camp.currency,
                }
            )
        label = period_label(period_start(ledger.current_day(), camp.cap_period), camp.cap_period)
        out.append(
            {
                "campaign": camp,
                "bars": [
                    Bar.of(
                        camp.id,
                        camp.currency,
                        a,
                        states[a],
                        plans.get(camp.id),
                        "" if camp.cap_period == "lifetime" else label,
                    )
                    for a in ACCOUNTS
                ],  # fmt: skip
                "months": rows,
                "tiers": dict(sorted(tiers.items())),
                "winners": winners,
                "cost_per_winner": round(total / winners) if winners else None,
            }
        )
    return out


def ledger_csv_rows(views: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The CSV's rows: every amount in its currency's decimals (the ``currency`` column says which money)."""
    money_cols = ("cap", "reserved", "released", "spent", "open", "left")
    return [
        {k: amount(row[k], row["currency"]) if k in money_cols else str(row[k]) for k in LEDGER_COLUMNS}
        for v in views
        for row in v["months"]
    ]


# -- audit --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    name: str = ""
    campaign: str = ""
    experiment: str = ""
    actor: str = ""
    text: str = ""
    limit: int = 200


def arm_labels(session: Session, experiment_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each experiment's arm names in arm order (as on their cards), to name arms in notes."""
    wanted = sorted(experiment_ids)
    out: dict[str, list[str]] = defaultdict(list)
    for i in range(0, len(wanted), 500):
        for exp_id, cid, label in session.execute(
            select(Arm.experiment_id, Arm.creative_id, Creative.label)
            .join(Creative, col(Creative.id) == Arm.creative_id)
            .where(col(Arm.experiment_id).in_(wanted[i : i + 500]))
            .order_by(col(Arm.experiment_id), col(Arm.position))
        ).all():
            out[exp_id].append(label or cid)
    return out


def audit_view(session: Session, f: AuditFilter) -> dict[str, Any]:
    stmt = select(AuditEvent)
    count = select(func.count()).select_from(AuditEvent)
    for cond in (
        AuditEvent.name == f.name if f.name else None,
        AuditEvent.campaign_id == f.campaign if f.campaign else None,
        AuditEvent.experiment_id == f.experiment if f.experiment else None,
        col(AuditEvent.actor).contains(f.actor, autoescape=True) if f.actor else None,
    ):
        if cond is not None:
            stmt = stmt.where(cond)
            count = count.where(cond)
    stmt = stmt.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc())
    if f.text:
        needle = f.text.lower()
        matched = [
            r for r in session.exec(stmt).all() if needle in json.dumps(r.data, default=str, ensure_ascii=False).lower()
        ]
        rows, total = matched[: f.limit], len(matched)
    else:
        rows = list(session.exec(stmt.limit(f.limit)).all())
        total = int(session.exec(count).one())  # type: ignore[call-overload]
    mstmt = select(PlatformMutation)
    if f.campaign:
        mstmt = mstmt.where(PlatformMutation.campaign_id == f.campaign)
    if f.experiment:
        mstmt = mstmt.where(PlatformMutation.experiment_id == f.experiment)
    mstmt = mstmt.order_by(col(PlatformMutation.id).desc())
    if f.name or f.actor:
        mutations: list[PlatformMutation] = []
        mutations_total = 0
    elif f.text:
        needle = f.text.lower()
        found = [m for m in session.exec(mstmt).all() if needle in (m.key + m.kind + m.error).lower()]
        mutations, mutations_total = found[: f.limit], len(found)
    else:
        mutations = list(session.exec(mstmt.limit(f.limit)).all())
        mutations_total = int(
            session.exec(select(func.count()).select_from(mstmt.order_by(None).subquery())).one()  # type: ignore[call-overload]
        )
    currencies = dict(session.exec(select(Campaign.id, Campaign.currency)).all())  # type: ignore[arg-type]
    moments = [as_utc(r.at) for r in rows]
    calendar = PlatformCalendar.load(session, min(moments, default=None), max(moments, default=None))  # type: ignore[type-var]
    names = sorted(set(session.exec(select(AuditEvent.name).distinct()).all()))
    labels = arm_labels(session, {r.experiment_id for r in rows if r.experiment_id})
    return {
        "events": [
            {
                "event": r,
                "day": calendar.day_of(r.at),
                "data": describe(
                    r.data, currencies.get(r.campaign_id or "", ""), labels.get(r.experiment_id or "", ())
                ),
            }
            for r in rows
        ],
        "total": total,
        "mutations": mutations,
        "mutations_total": mutations_total,
        "names": names,
        "campaigns": sorted(currencies),
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
        "last_tick_day": last.day.isoformat() if last and last.day else None,
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
    last = max((_utc(t.started_at) for t in ticks if t.started_at), default=None)
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
        .where(col(Creative.tier).is_not(None), col(Creative.role).in_((CreativeRole.DRAFT, CreativeRole.PRO)))
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
            digits = currency_digits(camp.currency)
            spent.append((lab, to_major(s.spent, digits)))
            reserved.append((lab, to_major(s.reserved, digits)))
            caps.append((lab, to_major(s.cap, digits)))
    family("creative_loop_spent", "gauge", "Money spent, in currency units.", spent)
    family("creative_loop_reserved", "gauge", "Money reserved and not yet settled, in currency units.", reserved)
    family("creative_loop_cap", "gauge", "The finance cap, in currency units.", caps)
    return "\n".join(lines) + "\n"


__all__ = ["Status", "Bar", "PlatformCalendar", "money", "overview", "experiment_view", "approvals", "gallery"]
