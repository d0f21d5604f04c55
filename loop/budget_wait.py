"""Waiting for budget: an experiment whose period cap is used waits for the next period.

A cap that holds per month or per week has room again when its period turns
(periods follow the platform's day, the ``today`` a tick runs for).  An
experiment that cannot go on for budget -- no test budget left to test
variants, no credits for two variants or for the pro render, no test budget
for tomorrow's split -- therefore *waits* instead of being abandoned:

- ``Experiment.waiting_until`` is the first day of the period that frees
  every cap in the way (the latest of their next periods), and a
  ``BudgetWaiting`` event records it with the caps that block;
- every tick tries again, so the experiment also goes on early when a
  settled reservation gives money back, and a ``BudgetResumed`` event
  records how long it waited.

Only a used *lifetime* cap ends an experiment, as before (abandoned, or a
test ended with the best arm so far).

A running test that waits keeps its data: its arms are paused (daily budgets
0), the bandit resumes from the same counts when the money is there, and the
days spent waiting do not count towards ``max_test_days``.  Ending the test
with the best arm so far would throw away a test that is simply out of money
for a few days; a month's wait is bounded by the period.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlmodel import Session

from connectors.ads.base import SetBudgets
from loop import events
from loop.plans import CampaignPlan
from loop.runtime import Runtime
from policies.budget import affordable_across, affordable_daily_budget
from storage.ledger import AccountSummary, Ledger
from storage.models import Arm, Experiment
from storage.states import ArmStatus, ExperimentState

log = logging.getLogger("creative_loop.experiments")


def blocking(ledger: Ledger, plan: CampaignPlan, account: str, day: date, needed: int) -> list[AccountSummary]:
    """The caps under which ``needed`` spent on ``day`` does not fit."""
    return [c for c in ledger.caps(plan.id, account, day) if not c.state.fits(needed)]


def affordable_test_budget(
    ledger: Ledger, plan: CampaignPlan, today: date, minimum: int
) -> tuple[int, list[AccountSummary]]:
    """Tomorrow's affordable test budget for the commitment window, and the caps that keep it under ``minimum``."""
    s = plan.settings
    caps = ledger.window_caps(plan.id, "test", today, s.commitment_days)
    budget = affordable_across([(c.state, n) for c, n in caps], plan.test_daily_budget, s.overspend)
    blockers = [c for c, n in caps if affordable_daily_budget(c.state, minimum, n, s.overspend) < minimum]
    return budget, blockers


def wait(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, account: str, today: date,
    blockers: list[AccountSummary], needed: int,
) -> bool:  # fmt: skip
    """Make ``exp`` wait for the next period of every cap in ``blockers``; False when waiting cannot help.

    Waiting cannot help under a used lifetime cap, nor under a cap smaller
    than ``needed`` itself (no period will ever hold it).  Idempotent: a
    repeated tick of a wait records nothing new.
    """
    ends = [c.end for c in blockers]
    if not ends or None in ends or any(c.cap < needed for c in blockers):
        return False
    until = max(e for e in ends if e is not None)
    if exp.waiting_since is None:
        exp.waiting_since = today
    if exp.waiting_until != until:
        exp.waiting_until = until
        events.record(
            session, events.BUDGET_WAITING, plan.id, exp.id, account=account, state=exp.state,
            period_end=until.isoformat(), since=exp.waiting_since.isoformat(),
            caps=[{"campaign": c.campaign_id, "account": c.account, "period": c.label, "cap": c.cap,
                   "spent": c.spent, "reserved": c.reserved} for c in blockers],
        )  # fmt: skip
        log.info("experiment %s: %s cap used, waiting for budget until %s", exp.id, account, until)
    session.add(exp)
    rt.commit(session)
    return True


def wait_while_testing(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, arms: list[Arm], today: date,
    blockers: list[AccountSummary], needed: int,
) -> bool:  # fmt: skip
    """:func:`wait` for a running test: its live arms are paused until the budget is back."""
    if not wait(rt, session, plan, exp, "test", today, blockers, needed):
        return False
    live = [a for a in arms if a.platform_adset_id and a.status == ArmStatus.LIVE]
    if live:
        rt.perform(
            session,
            SetBudgets(
                key=f"cl:{exp.id}:budget-wait:{today.isoformat()}",
                campaign=plan.id,
                budgets=tuple((a.platform_adset_id or "", 0) for a in live),
                end_day=today,
            ),
            exp.id,
        )
        for a in live:
            a.daily_budget_minor, a.status = 0, ArmStatus.PAUSED
            session.add(a)
        rt.commit(session)
    return True


def resume(session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """The caps have room again: end the wait (the caller commits with what it does next)."""
    if exp.waiting_since is None:
        return
    waited = (today - exp.waiting_since).days
    if exp.state == ExperimentState.TESTING:
        exp.waited_days += waited
    events.record(
        session, events.BUDGET_RESUMED, plan.id, exp.id, state=exp.state, waited_days=waited,
        since=exp.waiting_since.isoformat(),
    )  # fmt: skip
    exp.waiting_since = exp.waiting_until = None
    session.add(exp)


def waited_test_days(exp: Experiment, today: date) -> int:
    """Days this test has spent waiting for budget, the current wait included."""
    current = (
        (today - exp.waiting_since).days
        if exp.waiting_since is not None and exp.state == ExperimentState.TESTING
        else 0
    )
    return exp.waited_days + current


def waiting_note(exp: Experiment) -> str:
    """What status and the dashboard show of a wait ('' when the experiment is not waiting)."""
    return f"waiting for budget until {exp.waiting_until.isoformat()}" if exp.waiting_until else ""
