"""The budget guard: caps are invariants, checked by property tests."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from policies.budget import (
    CAP_PERIODS,
    CapState,
    affordable_daily_budget,
    period_start,
    reservation_for,
    split_budget,
)
from policies.errors import CapExceeded
from storage.ledger import Ledger
from storage.models import Campaign


@given(
    cap=st.integers(0, 10**7),
    spent=st.integers(0, 10**7),
    reserved=st.integers(0, 10**7),
    wanted=st.integers(0, 10**6),
    days=st.integers(1, 14),
    overspend=st.floats(1.0, 2.0),
)
def test_affordable_budget_never_reserves_past_the_cap(cap, spent, reserved, wanted, days, overspend):
    state = CapState(cap, spent, reserved)
    budget = affordable_daily_budget(state, wanted, days, overspend)
    assert 0 <= budget <= wanted
    if budget > 0:
        assert reservation_for(budget, days, overspend) <= state.left
        # and it is the largest such budget
        if budget < wanted:
            assert reservation_for(budget + 1, days, overspend) > state.left


@given(
    total=st.integers(0, 10**6),
    weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
    minimum=st.integers(0, 500),
)
def test_split_never_exceeds_total_and_respects_the_minimum(total, weights, minimum):
    shares = split_budget(total, weights, minimum)
    assert len(shares) == len(weights)
    assert sum(shares) <= total
    assert all(s == 0 or s >= minimum for s in shares)
    assert all(s == 0 for s, w in zip(shares, weights, strict=True) if w == 0)


# One day of the loop against a platform that may overspend by up to 25%, fail
# to deliver, or report late: whatever happens, what was spent never crosses the cap.
# (Windows across period boundaries and an account-wide cap: tests/test_cap_periods.py.)
day_event = st.tuples(
    st.integers(0, 50_000),  # wanted daily budget
    st.floats(0.0, 1.25),  # delivery factor (overspend up to 25%)
    st.booleans(),  # the report for the day arrives (else it is late)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # the factory makes a fresh DB per example
@given(
    cap=st.integers(0, 200_000),
    days=st.lists(day_event, min_size=1, max_size=40),
    period=st.sampled_from(CAP_PERIODS),
    start=st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
)
def test_cap_holds_over_any_spend_sequence(sqlite_engine_factory, cap, days, period, start):
    """Per period too: the money spent on the days of each month / week / lifetime stays under its cap."""
    engine = sqlite_engine_factory()
    with Session(engine) as s:
        s.add(Campaign(id="c", test_spend_cap_minor=cap, cap_period=period))
        s.commit()
        ledger = Ledger(s)
        pending: list[tuple[str, int]] = []
        true_spend: dict[date | None, int] = defaultdict(int)  # by period: the money really spent
        for i, (wanted, factor, reported) in enumerate(days):
            today = start + timedelta(days=i)
            budget = affordable_daily_budget(ledger.state("c", "test", today), wanted)
            if budget > 0:
                key = f"test:e:{i}"
                ledger.reserve("c", "test", key, reservation_for(budget), day=today)
                actual = int(budget * factor)  # what the platform really spends
                true_spend[period_start(today, period)] += actual
                pending.append((key, actual))
            if reported:
                for key, actual in pending:
                    ledger.settle(key, actual)
                pending.clear()
            s.commit()
            state = ledger.state("c", "test", today)
            assert state.spent + state.reserved <= cap
            assert all(v <= cap for v in true_spend.values())  # the money really spent, reported or not


def test_reserve_refuses_past_the_cap_and_is_idempotent(engine):
    with Session(engine) as s:
        s.add(Campaign(id="c", credit_cap_minor=100))
        s.commit()
        ledger = Ledger(s)
        first = ledger.reserve("c", "credit", "k1", 60)
        assert ledger.reserve("c", "credit", "k1", 60).id == first.id  # same key: same reservation
        with pytest.raises(CapExceeded) as err:
            ledger.reserve("c", "credit", "k2", 41)
        assert err.value.left == 40 and err.value.campaign == "c"
        ledger.settle("k1", 55)
        ledger.settle("k1", 55)  # settling twice changes nothing
        s.commit()
        state = ledger.state("c", "credit")
        assert (state.spent, state.reserved, state.left) == (55, 0, 45)
        ledger.reserve("c", "credit", "k2", 45)
        ledger.settle("k2", None)  # a failed generation releases its reservation
        assert ledger.state("c", "credit").left == 45


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(cap=-1), "cap: expected >= 0"),
        (dict(cap=1.5), "cap: expected int minor units"),
        (dict(cap=1, spent=-2), "spent: expected >= 0"),
    ],
)
def test_invalid_cap_state(args, message):
    with pytest.raises(ValueError, match=message):
        CapState(**args)


def test_invalid_reservation_arguments():
    with pytest.raises(ValueError, match="days: expected >= 1"):
        reservation_for(100, 0)
    with pytest.raises(ValueError, match="overspend: expected >= 1.0"):
        reservation_for(100, 1, 0.9)
    with pytest.raises(ValueError, match="weights: expected non-negative"):
        split_budget(100, [-1.0])
