"""Caps per period (month, week, lifetime) and the account-wide monthly cap.

Pure period arithmetic, the property that money really spent never crosses
any cap of any period (windows across a boundary, overspend up to 25 %,
late reports, settled by the tick's own reconcile), the period ledger on
SQLite and PostgreSQL, and the loop on the simulated platform waiting for
next month's budget instead of abandoning.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import Session, select

from loop.cli import main
from loop.tick import reconcile
from policies.budget import (
    CapState,
    affordable_across,
    period_end,
    period_label,
    period_start,
    reservation_for,
    split_window,
)
from policies.errors import CapExceeded
from storage.db import session as open_session
from storage.ledger import ALL_CAMPAIGNS, Ledger
from storage.models import (
    AccountCap,
    Arm,
    AuditEvent,
    BanditDecision,
    Campaign,
    Creative,
    DailyMetric,
    Experiment,
    LedgerEntry,
)

from loop_helpers import make_runtime

days_ = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
periodic = st.sampled_from(("month", "week"))


# -- period arithmetic (pure) -------------------------------------------------------------
@given(day=days_, period=periodic)
def test_a_day_lies_in_its_period_and_periods_tile_the_calendar(day, period):
    start, end = period_start(day, period), period_end(day, period)
    assert start is not None and end is not None
    assert start <= day < end
    assert period_start(end, period) == end  # the next period starts where this one ends
    assert period_start(end - timedelta(days=1), period) == start
    if period == "week":
        assert start.weekday() == 0 and (end - start).days == 7
    else:
        assert start.day == 1 and 28 <= (end - start).days <= 31


def test_lifetime_has_no_bounds_and_labels_read_well():
    assert period_start(date(2026, 1, 5), "lifetime") is None and period_end(date(2026, 1, 5), "lifetime") is None
    assert period_end(date(2026, 12, 31), "month") == date(2027, 1, 1)
    assert period_label(date(2026, 1, 1), "month") == "2026-01"
    assert period_label(date(2026, 1, 12), "week") == "2026-W03"
    assert period_label(None, "lifetime") == "lifetime"
    with pytest.raises(ValueError, match="period: expected one of month, week, lifetime, got 'year'"):
        period_start(date(2026, 1, 1), "year")
    with pytest.raises(ValueError, match="days: expected >= 1"):
        split_window(date(2026, 1, 1), 0, ["month"])


@given(start=days_, days=st.integers(1, 70), kinds=st.lists(st.sampled_from(("month", "week", "lifetime")), max_size=3))
def test_a_window_is_cut_at_every_boundary_and_nowhere_else(start, days, kinds):
    parts = split_window(start, days, kinds)
    assert parts[0][0] == start and sum(n for _, n in parts) == days
    for (first, n), (following, _) in zip(parts, parts[1:], strict=False):
        assert first + timedelta(days=n) == following  # consecutive, no gap, no overlap
        assert any(period_start(following, k) == following for k in kinds if k != "lifetime")  # cut at a boundary
    for first, n in parts:
        last = first + timedelta(days=n - 1)
        assert all(period_start(first, k) == period_start(last, k) for k in kinds)  # inside one period of each kind


@given(
    caps=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10)),
        max_size=4,
    ),
    wanted=st.integers(0, 10**5),
    overspend=st.floats(1.0, 2.0),
)
def test_affordable_across_fits_every_cap_the_window_touches(caps, wanted, overspend):
    states = [(CapState(c, s, r), n) for c, s, r, n in caps]
    budget = affordable_across(states, wanted, overspend)
    assert 0 <= budget <= wanted
    if budget > 0:
        assert all(reservation_for(budget, n, overspend) <= st_.left for st_, n in states)


# -- the property: money really spent never crosses any cap of any period --------------------
# One campaign-day: whether the loop allocates, the daily budget it wants, the window it
# commits for, how much of the budget the platform really spends (overspend up to 25 %),
# and how many days late the platform reports it.
campaign_day = st.tuples(
    st.sampled_from((True, True, True, False)),  # mostly a new allocation every day, as the loop does
    st.integers(0, 6_000),
    st.integers(1, 6),
    st.one_of(st.just(1.25), st.floats(0.0, 1.25)),  # the worst case often: every day 25 % over
    st.integers(0, 4),
)
OVERSPEND = 1.25


def _reset(session: Session) -> None:
    """Each hypothesis example starts from empty tables (the account-wide cap sums every row)."""
    for table in (LedgerEntry, BanditDecision, DailyMetric, Arm, Experiment, AuditEvent, Creative, Campaign):
        session.exec(delete(table))  # type: ignore[call-overload]
    session.commit()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    # the last days before a month's end (and the week ends inside): where windows cross boundaries
    start=st.sampled_from((date(2026, 1, 25), date(2026, 2, 22), date(2026, 4, 26))).flatmap(
        lambda d: st.dates(min_value=d, max_value=d + timedelta(days=6))
    ),
    periods=st.tuples(st.sampled_from(("month", "week", "lifetime")), st.sampled_from(("month", "week", "lifetime"))),
    caps=st.tuples(st.integers(0, 40_000), st.integers(0, 40_000)),
    account_cap=st.one_of(st.none(), st.integers(0, 60_000)),
    plan=st.lists(st.tuples(campaign_day, campaign_day), min_size=5, max_size=30),
)
@example(  # six-day windows from the last days of January: February's parts must fit February's cap
    start=date(2026, 1, 30), periods=("month", "week"), caps=(10_000, 10_000), account_cap=None,
    plan=[((True, 6_000, 6, 1.25, 0), (True, 6_000, 6, 1.25, 0))] * 8,
)  # fmt: skip
@example(  # windows that cross the month end on consecutive days, always 25 % over, reported late
    start=date(2026, 1, 29), periods=("month", "week"), caps=(10_000, 12_000), account_cap=15_000,
    plan=[((True, 6_000, 6, 1.25, 3), (True, 6_000, 5, 1.25, 0))] * 8,
)  # fmt: skip
def test_spend_never_crosses_any_cap_of_any_period(engine, start, periods, caps, account_cap, plan):
    """Two campaigns share an account-wide cap; windows cross month and week boundaries.

    The loop's own pieces run: ``Ledger.window_caps`` / ``affordable_across``
    choose the budget, ``Ledger.reserve_window`` reserves it part by part,
    the platform spends up to 25 % over and reports it days late, and the
    tick's ``reconcile`` settles each part from the reported rows.  After
    every day, the money really spent on the days of each period stays under
    that period's cap, for every campaign cap and the account-wide one.
    """
    ids = ("a", "b")
    with Session(engine) as s:
        _reset(s)
        s.merge(AccountCap(id="account", monthly_cap_minor=account_cap))
        for cid, period, cap in zip(ids, periods, caps, strict=True):
            s.add(Campaign(id=cid, test_spend_cap_minor=cap, cap_period=period))
            s.add(Creative(id=f"{cid}:main", campaign_id=cid, role="live", platform_ad_id=f"{cid}-main"))
            s.add(Experiment(id=f"{cid}:e", campaign_id=cid, parent_creative_id=f"{cid}:main", state="testing"))
            for arm in (0, 1):
                s.add(Creative(id=f"{cid}:v{arm}", campaign_id=cid, role="draft", experiment_id=f"{cid}:e"))
        s.flush()  # no relationships to order the inserts by: parents first
        for cid in ids:
            for arm in (0, 1):
                s.add(Arm(experiment_id=f"{cid}:e", creative_id=f"{cid}:v{arm}", position=arm))
        s.commit()
        ledger = Ledger(s)
        budget_on: dict[str, dict[date, int]] = {c: {} for c in ids}  # the budget in force on each day
        true: dict[str, dict[date, int]] = {c: defaultdict(int) for c in ids}  # money really spent
        reports: list[tuple[date, str, date, list[int]]] = []  # (arrives on, campaign, day, arm spend)
        last = start
        for i, pair in enumerate(plan):
            today = start + timedelta(days=i)
            last = today
            # 1. the platform's reports that have arrived by today, then the tick's reconcile
            for _arrives, cid, day, spends in [r for r in reports if r[0] <= today]:
                for arm, spend in enumerate(spends):
                    s.add(DailyMetric(creative_id=f"{cid}:v{arm}", day=day, impressions=1, spend_minor=spend))
                s.add(DailyMetric(creative_id=f"{cid}:main", day=day, impressions=1000))
            reports = [r for r in reports if r[0] > today]
            s.flush()
            for cid in ids:
                reconcile(s, cid, today)
            s.commit()
            # 2. the loop allocates: the largest budget that fits every cap its window touches
            for cid, (allocate, wanted, window, factor, delay) in zip(ids, pair, strict=True):
                if allocate:
                    touched = ledger.window_caps(cid, "test", today, window)
                    budget = affordable_across([(c.state, n) for c, n in touched], wanted, OVERSPEND)
                    ledger.reserve_window(
                        cid, "test", f"test:{cid}:e:{today.isoformat()}:{window}",
                        reservation_for(budget, 1, OVERSPEND), today, window, f"{cid}:e",
                    )  # fmt: skip
                    s.add(
                        BanditDecision(experiment_id=f"{cid}:e", day=today, seed=0, policy="t", budgets_minor=[budget])
                    )
                    for k in range(window):  # the new budgets replace the old from today
                        budget_on[cid][today + timedelta(days=k)] = budget
                    for later in [d for d in budget_on[cid] if d >= today + timedelta(days=window)]:
                        del budget_on[cid][later]
                # 3. the platform spends today's budget, split over two arms, up to 25 % over each
                in_force = budget_on[cid].get(today, 0)
                halves = [in_force // 2, in_force - in_force // 2]
                spends = [int(h * factor) for h in halves]
                true[cid][today] += sum(spends)
                reports.append((today + timedelta(days=1 + delay), cid, today, spends))
            s.commit()
            # 4. every period of every cap holds the money really spent on its days
            for cid, period, cap in zip(ids, periods, caps, strict=True):
                by_period: dict[date | None, int] = defaultdict(int)
                for day, amount in true[cid].items():
                    by_period[period_start(day, period)] += amount
                assert all(total <= cap for total in by_period.values()), (cid, period, cap, dict(by_period))
                # and the ledger never holds more than a cap in any period, past, current or ahead
                for held in ledger.periods(cid, "test", today):
                    assert held.spent + held.reserved <= held.cap, held
            for held in ledger.account_periods(today):
                assert held.spent + held.reserved <= held.cap, held
            if account_cap is not None:
                months: dict[date | None, int] = defaultdict(int)
                for cid in ids:
                    for day, amount in true[cid].items():
                        months[period_start(day, "month")] += amount
                assert all(total <= account_cap for total in months.values()), (account_cap, dict(months))
        # 5. once every report is in, the ledger books what was really spent, in the period it was spent
        for cid in ids:
            for _arrives, rcid, day, spends in reports:
                if rcid == cid:
                    for arm, spend in enumerate(spends):
                        s.add(DailyMetric(creative_id=f"{cid}:v{arm}", day=day, impressions=1, spend_minor=spend))
                    s.add(DailyMetric(creative_id=f"{cid}:main", day=day, impressions=1000))
        s.flush()
        for cid in ids:
            reconcile(s, cid, last + timedelta(days=30))
            assert ledger.open_reservations(cid, "test") == []
            booked = sum(e.amount_minor for e in s.exec(select(LedgerEntry).where(
                LedgerEntry.campaign_id == cid, LedgerEntry.kind == "actual")).all())  # fmt: skip
            # never less than was spent: a report later than the grace is booked at its reservation
            assert booked >= sum(true[cid].values())
        s.rollback()


# -- the period ledger, on SQLite and PostgreSQL -----------------------------------------------
def _campaign(s: Session, cid: str = "c", cap: int = 10_000, credit: int = 1_000, period: str = "month") -> None:
    s.add(Campaign(id=cid, test_spend_cap_minor=cap, credit_cap_minor=credit, cap_period=period))
    s.commit()


def test_a_window_across_the_month_end_is_reserved_in_parts_one_per_month(engine):
    with Session(engine) as s:
        _campaign(s, cap=10_000)
        ledger = Ledger(s)
        parts = ledger.reserve_window("c", "test", "test:e:2026-01-30:3", 2_500, date(2026, 1, 30), 3, "e")
        assert [(p.key, p.day, p.amount_minor) for p in parts] == [
            ("test:e:2026-01-30:3/2026-01-30+2", date(2026, 1, 30), 5_000),
            ("test:e:2026-01-30:3/2026-02-01+1", date(2026, 2, 1), 2_500),
        ]
        again = ledger.reserve_window("c", "test", "test:e:2026-01-30:3", 2_500, date(2026, 1, 30), 3, "e")
        assert [p.id for p in again] == [p.id for p in parts]  # idempotent
        s.commit()
        jan, feb = ledger.state("c", "test", date(2026, 1, 31)), ledger.state("c", "test", date(2026, 2, 14))
        assert (jan.reserved, jan.left, feb.reserved, feb.left) == (5_000, 5_000, 2_500, 7_500)
        # January has 5 000 left and the window needs 2 x 3 000 of it: refused, nothing reserved
        with pytest.raises(CapExceeded) as err:
            ledger.reserve_window("c", "test", "test:e:2026-01-30:3b", 3_000, date(2026, 1, 30), 3, "e")
        assert (err.value.period, err.value.needed, err.value.left) == ("2026-01", 6_000, 5_000)
        assert "test cap (2026-01): needs 6000 minor units, 5000 left" in str(err.value)
        assert ledger.find("test:e:2026-01-30:3b/2026-02-01+1", "reserve") is None
        # a settled part stays in its month, however late its report: February is untouched
        ledger.settle("test:e:2026-01-30:3/2026-01-30+2", 4_900)
        s.commit()
        assert ledger.state("c", "test", date(2026, 1, 1)) == CapState(10_000, 4_900, 0)
        assert ledger.state("c", "test", date(2026, 2, 1)) == CapState(10_000, 0, 2_500)


def test_a_used_monthly_cap_has_room_again_next_month_and_a_lifetime_cap_does_not(engine):
    with Session(engine) as s:
        _campaign(s, "m", credit=100, period="month")
        _campaign(s, "l", credit=100, period="lifetime")
        _campaign(s, "w", credit=100, period="week")
        ledger = Ledger(s)
        for cid in ("m", "l", "w"):
            ledger.reserve(cid, "credit", f"{cid}:1", 100, day=date(2026, 1, 28))  # a Wednesday
            ledger.settle(f"{cid}:1", 100)
        s.commit()
        assert ledger.room("m", "credit", date(2026, 1, 31)) == 0
        assert ledger.room("m", "credit", date(2026, 2, 1)) == 100
        assert ledger.room("w", "credit", date(2026, 2, 1)) == 0  # a Sunday: still the same week
        assert ledger.room("w", "credit", date(2026, 2, 2)) == 100
        assert ledger.room("l", "credit", date(2026, 6, 1)) == 0
        ledger.reserve("m", "credit", "m:2", 100, day=date(2026, 2, 1))
        with pytest.raises(CapExceeded) as err:
            ledger.reserve("l", "credit", "l:2", 1, day=date(2026, 2, 1))
        assert err.value.period == "" and "credit cap: needs 1 minor units, 0 left" in str(err.value)


def test_the_account_wide_cap_holds_across_campaigns_and_accounts(engine):
    with Session(engine) as s:
        _campaign(s, "a", period="lifetime")
        _campaign(s, "b", period="lifetime")
        s.merge(AccountCap(id="account", monthly_cap_minor=1_000, currency="USD"))
        s.commit()
        ledger = Ledger(s)
        ledger.reserve("a", "test", "a:t", 600, day=date(2026, 3, 31))
        ledger.reserve("b", "credit", "b:c", 300, day=date(2026, 3, 2))
        assert ledger.room("a", "credit", date(2026, 3, 15)) == 100  # the account has 100 left in March
        with pytest.raises(CapExceeded) as err:
            ledger.reserve("b", "test", "b:t", 101, day=date(2026, 3, 15))
        assert err.value.account == "account-wide" and err.value.period == "2026-03" and err.value.left == 100
        ledger.reserve("b", "test", "b:t", 1_000, day=date(2026, 4, 1))  # April is another month
        # a window across the month end: March's part fits the 100 left, April's does not
        with pytest.raises(CapExceeded):
            ledger.reserve_window("a", "test", "a:w", 50, date(2026, 3, 31), 2)
        s.commit()
        march = ledger.account_summary(date(2026, 3, 10))
        assert march is not None and (march.campaign_id, march.reserved, march.left) == (ALL_CAMPAIGNS, 900, 100)
        assert [(p.label, p.reserved) for p in ledger.account_periods(date(2026, 4, 1))] == [
            ("2026-03", 900),
            ("2026-04", 1_000),
        ]


def test_periods_list_every_period_with_money_and_the_current_one(engine):
    with Session(engine) as s:
        _campaign(s, cap=5_000, period="month")
        ledger = Ledger(s)
        ledger.reserve("c", "test", "k1", 1_000, day=date(2026, 1, 20))
        ledger.settle("k1", 900)
        ledger.reserve("c", "test", "k2", 2_000, day=date(2026, 3, 3))
        s.commit()
        rows = ledger.periods("c", "test", day=date(2026, 4, 2))
        assert [(r.label, r.start, r.cap, r.spent, r.reserved, r.left) for r in rows] == [
            ("2026-01", date(2026, 1, 1), 5_000, 900, 0, 4_100),
            ("2026-03", date(2026, 3, 1), 5_000, 0, 2_000, 3_000),
            ("2026-04", date(2026, 4, 1), 5_000, 0, 0, 5_000),
        ]
        s.get(Campaign, "c").cap_period = "lifetime"  # the same entries under a lifetime cap: one row
        s.commit()
        (life,) = ledger.periods("c", "test")
        assert (life.label, life.spent, life.reserved, life.left) == ("lifetime", 900, 2_000, 2_100)


def test_a_settled_reservation_stays_in_the_period_of_its_day(engine):
    with Session(engine) as s:
        _campaign(s, period="week")
        ledger = Ledger(s)
        ledger.reserve("c", "credit", "k", 60, day=date(2026, 1, 4))  # a Sunday
        ledger.settle("k", 60)
        s.commit()
        kinds = {e.kind: e.day for e in s.exec(select(LedgerEntry).where(LedgerEntry.key == "k")).all()}
        assert kinds == {"reserve": date(2026, 1, 4), "actual": date(2026, 1, 4), "release": date(2026, 1, 4)}
        assert ledger.state("c", "credit", date(2026, 1, 5)).spent == 0  # Monday: a new week


def test_settling_an_open_reservation_read_before_writes_what_reading_it_again_would(engine):
    with Session(engine) as s:
        _campaign(s, period="week")
        ledger = Ledger(s)
        for key in ("k1", "k2", "k3"):
            ledger.reserve("c", "credit", key, 60, day=date(2026, 1, 4))
        s.commit()
        opened = {e.key: e for e in ledger.open_reservations("c", "credit")}
        ledger.settle("k1", "reserved", note="n")
        ledger.settle("k2", "reserved", note="n", open_entry=opened["k2"])
        ledger.settle("k3", None, note="n", open_entry=opened["k3"])
        s.commit()
        rows = s.exec(select(LedgerEntry).where(LedgerEntry.kind != "reserve")).all()
        written = {(e.key, e.kind): (e.amount_minor, e.day, e.note) for e in rows}
        assert written == {
            ("k1", "actual"): (60, date(2026, 1, 4), "n"), ("k1", "release"): (60, date(2026, 1, 4), "n"),
            ("k2", "actual"): (60, date(2026, 1, 4), "n"), ("k2", "release"): (60, date(2026, 1, 4), "n"),
            ("k3", "release"): (60, date(2026, 1, 4), "n"),
        }  # fmt: skip
        assert ledger.open_reservations("c", "credit") == []
        with pytest.raises(ValueError, match="open_entry"):
            ledger.settle("k2", "reserved", open_entry=opened["k3"])  # another key's entry


def test_migration_dates_existing_entries_and_keeps_lifetime_caps(db_url):
    """A database made before 0003 keeps its meaning: entries dated by when they were written, caps lifetime."""
    from alembic import command
    from sqlalchemy import text

    from storage.db import alembic_config, make_engine

    eng = make_engine(db_url)
    try:
        command.upgrade(alembic_config(eng), "0002")
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO campaign (id, currency, test_spend_cap_minor, credit_cap_minor, created_at) "
                              "VALUES ('old', 'USD', 500, 100, '2026-01-10 09:00:00')"))  # fmt: skip
            conn.execute(text("INSERT INTO ledgerentry (campaign_id, account, kind, key, amount_minor, note, created_at) "
                              "VALUES ('old', 'test', 'actual', 'k', 400, '', '2026-01-31 23:30:00')"))  # fmt: skip
        command.upgrade(alembic_config(eng), "head")
        with Session(eng) as s:
            assert s.get(Campaign, "old").cap_period == "lifetime"
            assert s.exec(select(LedgerEntry)).one().day == date(2026, 1, 31)
            assert Ledger(s).state("old", "test", date(2026, 5, 1)) == CapState(500, 400, 0)
            assert Ledger(s).account_cap() is None
            assert s.exec(select(Experiment)).all() == []
    finally:
        eng.dispose()


# -- reconcile: parts, late reports ------------------------------------------------------------
def _one_arm_experiment(s: Session) -> None:
    """Campaign c's live ad ``main`` and a testing experiment ``e`` with one arm ``v1``."""
    s.add(Creative(id="main", campaign_id="c", role="live", platform_ad_id="m"))
    s.add(Experiment(id="e", campaign_id="c", parent_creative_id="main", state="testing"))
    s.add(Creative(id="v1", campaign_id="c", role="draft", experiment_id="e"))
    s.flush()  # no relationships to order the inserts by: parents first
    s.add(Arm(experiment_id="e", creative_id="v1"))
    s.flush()


def test_reconcile_settles_each_part_with_the_spend_of_its_own_days(engine):
    with Session(engine) as s:
        _campaign(s, cap=100_000)
        _one_arm_experiment(s)
        s.add(BanditDecision(experiment_id="e", day=date(2026, 1, 30), seed=0, policy="t"))
        s.commit()
        ledger = Ledger(s)
        ledger.reserve_window("c", "test", "test:e:2026-01-30:4", 1_250, date(2026, 1, 30), 4, "e")
        for day, spend in ((30, 1_000), (31, 1_100)):
            s.add(DailyMetric(creative_id="v1", day=date(2026, 1, day), spend_minor=spend, impressions=10))
            s.add(DailyMetric(creative_id="main", day=date(2026, 1, day), impressions=900))
        # a new allocation on Feb 2 replaces the window's last day
        s.add(BanditDecision(experiment_id="e", day=date(2026, 2, 2), seed=0, policy="t"))
        s.add(DailyMetric(creative_id="main", day=date(2026, 2, 1), impressions=900))  # reported, no arm delivery
        s.commit()
        reconcile(s, "c", date(2026, 2, 2))
        s.commit()
        assert ledger.open_reservations("c", "test") == []
        actual = {
            e.key: (e.day, e.amount_minor) for e in s.exec(select(LedgerEntry).where(LedgerEntry.kind == "actual"))
        }
        assert actual == {"test:e:2026-01-30:4/2026-01-30+2": (date(2026, 1, 30), 2_100)}  # Feb 1: nothing spent
        assert ledger.state("c", "test", date(2026, 2, 1)) == CapState(100_000, 0, 0)


def test_a_day_never_reported_is_booked_at_its_reservation_after_the_grace(engine):
    with Session(engine) as s:
        _campaign(s, cap=100_000)
        _one_arm_experiment(s)
        s.add(BanditDecision(experiment_id="e", day=date(2026, 1, 10), seed=0, policy="t"))
        s.commit()
        ledger = Ledger(s)
        ledger.reserve("c", "test", "test:e:2026-01-10:1", 1_250, "e", day=date(2026, 1, 10))
        s.commit()
        reconcile(s, "c", date(2026, 1, 11))  # not reported yet, within the grace: still reserved
        assert ledger.is_open("test:e:2026-01-10:1")
        reconcile(s, "c", date(2026, 1, 12))  # the grace is over: the worst case is booked
        s.commit()
        assert ledger.state("c", "test", date(2026, 1, 10)) == CapState(100_000, 1_250, 0)
        assert "never reported" in ledger.find("test:e:2026-01-10:1", "actual").note


# -- waiting ------------------------------------------------------------------------------------
def test_waiting_is_for_period_caps_with_room_for_the_need_and_is_recorded_once(engine, tmp_path):
    from loop import budget_wait
    from loop.runtime import Runtime

    from loop_helpers import plan_for

    rt = Runtime(engine=engine, platform=None, generators={}, images=None, plans=[])  # type: ignore[arg-type]
    plan = plan_for("c")
    day = date(2026, 3, 30)
    with open_session(engine) as s:
        _campaign(s, "c", cap=1_000, credit=4_000, period="week")
        s.merge(AccountCap(id="account", monthly_cap_minor=5_000))
        s.add(Creative(id="p", campaign_id="c", role="live"))
        s.flush()
        exp = Experiment(id="e", campaign_id="c", parent_creative_id="p", state="detected")
        s.add(exp)
        s.commit()
        ledger = Ledger(s)
        ledger.reserve("c", "test", "k", 900, day=day)
        ledger.reserve("c", "credit", "k2", 3_500, day=day)  # the account has 600 left in March
        s.commit()
        # 200 more: the campaign's week (from Monday 30 March) is short; 1 000 more: the account's March too
        blockers = budget_wait.blocking(ledger, plan, "test", day, 200)
        assert [b.label for b in blockers] == ["2026-W14"]
        assert budget_wait.wait(rt, s, plan, exp, "test", day, blockers, 200)
        both = budget_wait.blocking(ledger, plan, "test", date(2026, 3, 31), 1_000)
        assert [b.label for b in both] == ["2026-W14", "2026-03"]
        assert budget_wait.wait(rt, s, plan, exp, "test", date(2026, 3, 31), both, 1_000)
        assert exp.waiting_until == date(2026, 4, 6) and exp.waiting_since == day  # the later of 1 and 6 April
        assert budget_wait.wait(rt, s, plan, exp, "test", date(2026, 4, 1), both, 1_000)  # a repeated tick
        recorded = s.exec(select(AuditEvent).where(AuditEvent.name == "BudgetWaiting")).all()
        assert [e.data["period_end"] for e in recorded] == ["2026-04-06"]  # the date did not change: one event
        # a need larger than the cap itself, or a lifetime cap, cannot be waited for
        assert not budget_wait.wait(rt, s, plan, exp, "test", day, blockers, 1_001)
        s.get(Campaign, "c").cap_period = "lifetime"
        s.commit()
        assert not budget_wait.wait(
            rt, s, plan, exp, "test", day, budget_wait.blocking(ledger, plan, "test", day, 200), 200
        )
        budget_wait.resume(s, plan, exp, date(2026, 4, 6))
        assert (exp.waiting_until, exp.waiting_since, exp.waited_days) == (None, None, 0)  # not testing: no test days
        assert budget_wait.waiting_note(exp) == ""


@pytest.mark.parametrize("period", ["month", "lifetime"])
def test_a_running_test_pauses_for_a_used_period_cap_and_ends_for_a_used_lifetime_cap(
    engine, tmp_path, scenario_file, period
):
    """on_testing with the campaign's cap used: a month pauses the arms and resumes on the 1st; a lifetime ends it."""
    from connectors.ads.base import LaunchTestArm, SetBudgets
    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.retry import NO_WAIT
    from loop.experiments import on_testing
    from loop.runtime import Runtime
    from loop.tick import sync_campaign
    from storage.images import ImageStore

    from loop_helpers import plan_for

    plan = plan_for("shop", cap_period=period)
    platform = SimulatedAdPlatform(load_scenario(scenario_file))
    rt = Runtime(engine=engine, platform=platform, generators={}, images=ImageStore(tmp_path / "img"), plans=[plan],
                 retry=NO_WAIT)  # fmt: skip
    jan31, feb1 = date(2026, 1, 31), date(2026, 2, 1)
    with open_session(engine) as s:
        sync_campaign(s, plan)
        s.add(Creative(id="shop:hero", campaign_id="shop", role="live", platform_ad_id="hero"))
        s.flush()
        exp = Experiment(id="x", campaign_id="shop", parent_creative_id="shop:hero", state="testing",
                         testing_started_on=date(2026, 1, 20))  # fmt: skip
        s.add(exp)
        s.commit()
        arms = []
        for i in range(2):
            s.add(Creative(id=f"x:v{i}", campaign_id="shop", role="draft", experiment_id="x", status="testing"))
            s.flush()
            got = rt.perform(
                s, LaunchTestArm(key=f"cl:x:v{i}", campaign="shop", parent_ad_id="hero", image=b"png"), "x"
            )
            arms.append(Arm(experiment_id="x", creative_id=f"x:v{i}", position=i, status="live",
                            platform_adset_id=got["adset_id"], platform_ad_id=got["ad_id"]))  # fmt: skip
            s.add(DailyMetric(creative_id=f"x:v{i}", day=date(2026, 1, 30), impressions=800, clicks=12 + i))
        s.add_all(arms)
        s.commit()
        adsets = tuple((a.platform_adset_id, 500) for a in arms)
        rt.perform(s, SetBudgets(key="cl:x:budgets:2026-01-30", campaign="shop", budgets=adsets, end_day=jan31), "x")
        ledger = Ledger(s)
        ledger.reserve("shop", "test", "used", 10_000, day=date(2026, 1, 20))
        ledger.settle("used", 10_000)  # the whole cap is spent (in January)
        s.commit()

        on_testing(rt, s, plan, exp, jan31)
        names = [e.name for e in s.exec(select(AuditEvent).where(AuditEvent.experiment_id == "x")).all()]
        if period == "lifetime":
            assert exp.state == "decided" and exp.reason == "test spend cap reached: best arm so far"
            assert "CapReached" in names and "BudgetWaiting" not in names
            return
        assert exp.state == "testing" and exp.waiting_until == feb1 and "BudgetWaiting" in names
        assert all(a.status == "paused" for a in arms)
        assert all(platform.adsets[a.platform_adset_id].status == "PAUSED" for a in arms)
        assert s.exec(select(BanditDecision).where(BanditDecision.day == jan31)).first() is None  # no new split

        on_testing(rt, s, plan, exp, feb1)  # February has its own cap
        assert exp.state == "testing" and exp.waiting_until is None and exp.waited_days == 1
        assert s.exec(select(BanditDecision).where(BanditDecision.day == feb1)).one().budgets_minor
        assert any(platform.adsets[a.platform_adset_id].status == "ACTIVE" for a in arms)
        assert ledger.state("shop", "test", feb1).reserved > 0 and ledger.state("shop", "test", jan31).left == 0


# -- config, plans, spend ---------------------------------------------------------------------
def test_config_caps_default_to_month_and_scenario_caps_stay_per_run(tmp_path, scenario_file):
    from connectors.ads.scenario import load_scenario
    from loop.config import load_config
    from loop.plans import campaign_plans
    from policies.errors import ConfigError

    scenario = load_scenario(scenario_file)
    path = tmp_path / "c.toml"
    path.write_text("[[campaigns]]\nid = 'x'\ntest_spend_cap = 100.0\ncredit_cap = 5.0\ntest_daily_budget = 10.0\n"
                    "fast_credit_cost = 0.02\npro_credit_cost = 0.6\n[budget]\naccount_monthly_cap = 250.5\n")  # fmt: skip
    (plan,) = campaign_plans(load_config(path))
    assert (plan.cap_period, plan.account_monthly_cap) == ("month", 25_050)
    (sim,) = campaign_plans(load_config(path), scenario)  # the scenario's own caps: per run
    assert sim.cap_period == "lifetime"
    path.write_text("[[campaigns]]\nid = 'shop'\ncap_period = 'week'\n")
    (sim,) = campaign_plans(load_config(path), scenario)
    assert (sim.cap_period, sim.test_spend_cap) == ("week", 50_000)
    path.write_text("[[campaigns]]\nid = 'shop'\ncap_period = 'fortnight'\n")
    with pytest.raises(ConfigError, match=r"campaigns\[0\]\.cap_period.*'month', 'week' or 'lifetime'"):
        load_config(path)
    path.write_text("[budget]\naccount_monthly_cap = -1\n")
    with pytest.raises(ConfigError, match=r"budget\.account_monthly_cap.*greater than or equal to 0"):
        load_config(path)
    path.write_text(
        "[budget]\naccount_monthly_cap = 10.0\n"
        + "".join(f"[[campaigns]]\nid = '{c}'\ntest_spend_cap = 100.0\ncredit_cap = 5.0\ntest_daily_budget = 10.0\n"
                  f"fast_credit_cost = 0.02\npro_credit_cost = 0.6\ncurrency = '{cur}'\n"
                  for c, cur in (("x", "USD"), ("y", "EUR")))
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"budget\.account_monthly_cap: campaigns spend in several currencies"):
        campaign_plans(load_config(path))


def _spend_setup(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """A config on a new SQLite database, which a first `spend` migrates; returns (database file, config)."""
    db = tmp_path / "db.sqlite"
    config = tmp_path / "c.toml"
    config.write_text(f'[loop]\ndatabase = "sqlite:///{db}"\n')
    monkeypatch.delenv("CREATIVE_LOOP_DATABASE", raising=False)
    assert main(["spend", "--config", str(config)]) == 0  # migrates an empty database
    return db, config


def test_spend_prints_and_writes_the_periods(tmp_path, capsys, monkeypatch):
    db, config = _spend_setup(tmp_path, monkeypatch)
    from storage.db import make_engine

    eng = make_engine(f"sqlite:///{db}")
    with Session(eng) as s:
        _campaign(s, "-shop", cap=30_000, period="month")  # a leading '-' must not become a formula
        s.merge(AccountCap(id="account", monthly_cap_minor=50_000))
        ledger = Ledger(s)
        ledger.reserve("-shop", "test", "t1", 12_000, day=date(2026, 1, 20))
        ledger.settle("t1", 11_000)
        ledger.reserve("-shop", "test", "t2", 5_000, day=date(2026, 2, 3))
        s.commit()
    eng.dispose()
    capsys.readouterr()
    out_csv = tmp_path / "spend.csv"
    assert main(["spend", "--config", str(config), "--csv", str(out_csv)]) == 0
    table = capsys.readouterr().out
    assert "2026-01" in table and "2026-02" in table and "(all campaigns)" in table
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    test_rows = [(r["period"], r["period_start"], r["cap"], r["spent"], r["reserved"], r["left"])
                 for r in rows if r["account"] == "test"]  # fmt: skip
    assert test_rows == [
        ("2026-01", "2026-01-01", "300.0", "110.0", "0.0", "190.0"),
        ("2026-02", "2026-02-01", "300.0", "0.0", "50.0", "250.0"),
    ]
    assert all(r["campaign"] in ("'-shop", ALL_CAMPAIGNS) for r in rows)
    account = [(r["period"], r["spent"], r["reserved"], r["left"]) for r in rows if r["campaign"] == ALL_CAMPAIGNS]
    assert account == [("2026-01", "110.0", "0.0", "390.0"), ("2026-02", "0.0", "50.0", "450.0")]
    assert main(["spend", "--config", str(config), "--csv", str(tmp_path / "no" / "such" / "dir.csv")]) == 2
    assert "--csv" in capsys.readouterr().err


def test_the_spend_csv_of_a_lifetime_cap_has_an_empty_start_and_no_formula(tmp_path, capsys, monkeypatch):
    """A lifetime cap has no period start: its cell stays empty (it used to read "'"); tab, CR and LF are defused."""
    db, config = _spend_setup(tmp_path, monkeypatch)
    from storage.db import make_engine

    hostile = ["\t=1+1", "\r=2+2", "a\rb", "c\nd"]
    eng = make_engine(f"sqlite:///{db}")
    with Session(eng) as s:
        _campaign(s, "life", cap=30_000, period="lifetime")
        for cid in hostile:
            _campaign(s, cid, period="lifetime")
    eng.dispose()
    out_csv = tmp_path / "spend.csv"
    assert main(["spend", "--config", str(config), "--csv", str(out_csv)]) == 0
    text = out_csv.read_bytes().decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    life = [r for r in rows if r["campaign"] == "life"]
    assert [(r["account"], r["period"], r["period_start"], r["cap"]) for r in life] == [
        ("test", "lifetime", "", "300.0"),
        ("credit", "lifetime", "", "10.0"),
    ]
    assert {r["campaign"] for r in rows} == {"life", "'\t=1+1", "'\r=2+2", "a\rb", "c\nd"}
    assert len(rows) == 2 * 5  # a CR or LF inside a campaign id never splits its row
    capsys.readouterr()
    assert main(["spend", "--config", str(config), "--csv", "-"]) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline=""))) == rows


def test_csv_cells_never_start_a_formula():
    from loop.reports import csv_safe

    assert [csv_safe(v) for v in ("=1+1", "+1", "-shop", "@SUM(A1)", "\t=1", "\r=1", "", "shop", 5)] == [
        "'=1+1", "'+1", "'-shop", "'@SUM(A1)", "'\t=1", "'\r=1", "", "shop", 5,
    ]  # fmt: skip


# -- end to end: a monthly cap is used, the loop waits, and refreshes next month ----------------
CAP_SCENARIO = """
seed = 5
days = 70
[variants]
lift_mu = 0.0
lift_sigma = 0.3
pro_lift = 0.10

[[campaigns]]
id = "shop"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 40.0
test_spend_cap = 10000.0   # the scenario's per-run cap; the config's monthly cap replaces it
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 50.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.02
fatigue_onset_day = 6
fatigue_decay_per_day = 0.06
headline = "Fresh deals"

[[campaigns.creatives]]
id = "second"
ctr = 0.015
fatigue_onset_day = 12
fatigue_decay_per_day = 0.06
"""

CAP_CONFIG = """
[loop]
approval = "none"
[defaults]
# A test must resolve plan_lift itself: the month's leftover money then waits instead of settling for more.
plan_lift_tolerance = 1.0
[[campaigns]]
id = "shop"
cap_period = "month"
test_spend_cap = 450.0
credit_cap = 10.0
# When each test ends depends on which drafts are tested: the months were sized with first-come selection.
selection = "first"
"""


def test_a_used_monthly_cap_waits_for_next_month_and_the_loop_refreshes_again(
    engine, db_url, tmp_path: Path, monkeypatch
):
    from starlette.testclient import TestClient

    from loop.config import load_config
    from loop.reports import status_rows
    from loop.tick import tick
    from loop.web import create_app
    from storage.images import ImageStore

    (tmp_path / "scenario.toml").write_text(CAP_SCENARIO)
    (tmp_path / "config.toml").write_text(CAP_CONFIG)
    monkeypatch.setenv("CREATIVE_LOOP_DATABASE", db_url)
    cfg = load_config(tmp_path / "config.toml")
    rt = make_runtime(engine, tmp_path, tmp_path / "scenario.toml", config_path=tmp_path / "config.toml")
    platform = rt.platform
    seen_waiting: dict[str, date] = {}  # experiment -> the first day it was seen waiting in January
    pages_checked = False
    for _ in range(70):
        today = platform.today()
        tick(rt, today)
        with open_session(engine) as s:
            for e in s.exec(select(Experiment).where(Experiment.waiting_until.is_not(None))).all():  # type: ignore[union-attr]
                seen_waiting.setdefault(e.id, today)
                if today.month == 1 and not pages_checked:
                    # 1. status, the dashboard overview and the experiment page say until when
                    assert e.waiting_until == date(2026, 2, 1)
                    row = next(r for r in status_rows(cfg)["experiments"] if r["id"] == e.id)
                    assert "waiting for budget until 2026-02-01" in row["state"], row
                    app = create_app(cfg, engine=engine, images=ImageStore(tmp_path / "images"))
                    with TestClient(app, base_url="http://127.0.0.1") as client:
                        assert "waiting for budget until 2026-02-01" in client.get("/").text
                        from urllib.parse import quote

                        page = client.get(f"/experiments/{quote(e.id, safe='')}").text
                        assert "waiting for budget until 2026-02-01" in page
                    # 2. its arms are paused on the platform while it waits
                    if e.state == "testing":
                        arms = s.exec(select(Arm).where(Arm.experiment_id == e.id)).all()
                        assert all(platform.adsets[a.platform_adset_id].status == "PAUSED" for a in arms)
                    pages_checked = True
        platform.run_day()
    assert pages_checked, "no experiment waited for budget in January"

    with open_session(engine) as s:
        exps = {e.id: e for e in s.exec(select(Experiment)).all()}
        waited_in_january = [i for i, d in seen_waiting.items() if d.month == 1]
        assert waited_in_january
        for exp_id in waited_in_january:
            # 3. it resumed when February began and went on to a scaled winner
            e = exps[exp_id]
            assert e.state == "scaled" and e.decided_on is not None and e.decided_on >= date(2026, 2, 1), e
            resumed = s.exec(select(AuditEvent).where(
                AuditEvent.experiment_id == exp_id, AuditEvent.name == "BudgetResumed")).all()  # fmt: skip
            # in February, as soon as the new month's money is not held by the campaign's other running test
            resumed_on = [date.fromisoformat(r.data["since"]) + timedelta(days=r.data["waited_days"]) for r in resumed]
            assert date(2026, 2, 1) <= resumed_on[0] <= date(2026, 2, 7), resumed_on
            waiting = s.exec(select(AuditEvent).where(
                AuditEvent.experiment_id == exp_id, AuditEvent.name == "BudgetWaiting")).all()  # fmt: skip
            assert waiting[0].data["period_end"] == "2026-02-01" and waiting[0].data["caps"][0]["period"] == "2026-01"
            # no test money was spent on its arms while it waited
            arms = [a.creative_id for a in s.exec(select(Arm).where(Arm.experiment_id == exp_id)).all()]
            wait_days = s.exec(select(DailyMetric).where(
                DailyMetric.creative_id.in_(arms),  # type: ignore[attr-defined]
                DailyMetric.day >= seen_waiting[exp_id], DailyMetric.day < date(2026, 2, 1))).all()  # fmt: skip
            assert sum(m.spend_minor for m in wait_days) == 0
        # 4. a new refresh in February too: the loop is not dead after its first month
        assert any(e.state == "scaled" and e.detected_on >= date(2026, 2, 1) for e in exps.values())
        # 5. nothing was abandoned for budget
        assert not [e for e in exps.values() if e.state == "abandoned"]
        # 6. every month held its caps, and together they spent more than one month's cap
        ledger = Ledger(s)
        for account, cap in (("test", 45_000), ("credit", 1_000)):
            months = ledger.periods("shop", account)
            assert len(months) >= 3 and all(m.period == "month" and m.cap == cap for m in months)
            assert all(m.spent + m.reserved <= m.cap for m in months), months
        test_months = ledger.periods("shop", "test")
        assert sum(m.spent for m in test_months) > 2 * 45_000
        # the money really spent on test arms, by the platform's day, stays under each month's cap
        arm_ids = [a.creative_id for a in s.exec(select(Arm)).all()]
        by_month: dict[date | None, int] = defaultdict(int)
        for m in s.exec(select(DailyMetric).where(DailyMetric.creative_id.in_(arm_ids))).all():  # type: ignore[attr-defined]
            by_month[period_start(m.day, "month")] += m.spend_minor
        assert all(v <= 45_000 for v in by_month.values()), by_month


def _run(engine, tmp_path: Path, scenario: str, config: str, days: int):  # type: ignore[no-untyped-def]
    from loop_helpers import run_days

    (tmp_path / "scenario.toml").write_text(scenario)
    (tmp_path / "config.toml").write_text(config)
    rt = make_runtime(engine, tmp_path, tmp_path / "scenario.toml", config_path=tmp_path / "config.toml")
    run_days(rt, days)
    return rt


def test_a_decided_winner_waits_for_next_months_credits_for_its_pro_render(sqlite_engine, tmp_path):
    config = CAP_CONFIG.replace("test_spend_cap = 450.0", "test_spend_cap = 2000.0").replace(
        "credit_cap = 10.0", "credit_cap = 1.30\nreserve_pro_credit = false"
    )
    _run(sqlite_engine, tmp_path, CAP_SCENARIO, config, 60)
    with open_session(sqlite_engine) as s:
        waits = s.exec(select(AuditEvent).where(AuditEvent.name == "BudgetWaiting")).all()
        credit_waits = [w for w in waits if w.data["account"] == "credit" and w.data["state"] == "decided"]
        assert credit_waits, [w.data for w in waits]
        wait, since = credit_waits[0], date.fromisoformat(credit_waits[0].data["since"])
        next_month = date.fromisoformat(wait.data["period_end"])
        assert next_month == period_end(since, "month") and wait.data["caps"][0]["period"] == period_label(
            period_start(since, "month"), "month"
        )
        exp = s.get(Experiment, wait.experiment_id)
        assert exp.decided_on < next_month and exp.state == "scaled" and exp.waiting_until is None
        pro = s.exec(select(LedgerEntry).where(LedgerEntry.key == f"credit:{exp.id}:pro",
                                               LedgerEntry.kind == "actual")).one()  # fmt: skip
        assert pro.day == next_month  # rendered, and paid, from the next month's credits on its first day
        ledger = Ledger(s)
        assert all(m.spent + m.reserved <= 130 for m in ledger.periods("shop", "credit"))


LIFETIME_AND_TINY = CAP_SCENARIO.replace("test_spend_cap = 10000.0", "test_spend_cap = 400.0") + CAP_SCENARIO[
    CAP_SCENARIO.index("[[campaigns]]") :
].replace('id = "shop"', 'id = "tiny"').replace('id = "hero"', 'id = "t-hero"').replace(
    'id = "second"', 'id = "t-second"'
)


def test_a_lifetime_cap_or_a_cap_below_the_need_still_ends_the_experiment(sqlite_engine, tmp_path):
    # "shop" keeps the scenario's per-run cap (lifetime); "tiny"'s monthly credits can never pay a pro render
    config = (
        "[loop]\napproval = 'none'\n[defaults]\nplan_lift_tolerance = 1.0\n"
        "[[campaigns]]\nid = 'tiny'\ncap_period = 'month'\ncredit_cap = 0.50\n"
    )
    _run(sqlite_engine, tmp_path, LIFETIME_AND_TINY, config, 40)
    with open_session(sqlite_engine) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.name == "BudgetWaiting")).all() == []
        shop = s.exec(select(Experiment).where(Experiment.campaign_id == "shop")).all()
        # the lifetime cap has no next period: experiments end for want of money instead of waiting
        assert all(e.waiting_until is None for e in shop)
        assert any("test spend cap" in e.reason or e.reason.startswith("test plan:") for e in shop), shop
        tiny = s.exec(select(Experiment).where(Experiment.campaign_id == "tiny")).all()
        assert tiny and all(e.state == "abandoned" for e in tiny)
        assert any(e.reason == "credit cap: room for 0 variant(s), need at least 2" for e in tiny)
        assert s.get(Campaign, "shop").cap_period == "lifetime" and s.get(Campaign, "tiny").cap_period == "month"
