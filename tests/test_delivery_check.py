"""The delivery check: a split the platform did not honour is flagged; ordinary pacing is not."""

from __future__ import annotations

from sqlmodel import select

from loop.tick import tick
from storage.db import session as open_session
from storage.models import Arm, AuditEvent, BanditDecision, DailyMetric, Experiment

from loop_helpers import make_runtime, run_days


def _testing_experiment(rt):  # type: ignore[no-untyped-def]
    for _ in range(40):
        run_days(rt, 1)
        with open_session(rt.engine) as s:
            exp = s.exec(select(Experiment).where(Experiment.state == "testing")).first()
            if exp is not None and exp.testing_started_on and (rt.platform.today() - exp.testing_started_on).days >= 2:
                return exp
    raise AssertionError("no experiment reached testing")


def test_ordinary_pacing_noise_is_not_flagged(sqlite_engine, tmp_path, scenario_file):
    rt = make_runtime(sqlite_engine, tmp_path, scenario_file)
    run_days(rt, 30)
    with open_session(sqlite_engine) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.name == "DeliveryMismatchFlagged")).first() is None


def test_a_starved_arm_is_flagged_and_the_bandit_uses_delivered_counts(sqlite_engine, tmp_path, scenario_file):
    from dataclasses import replace

    # A test that runs a few days (this is about delivery, not stopping): no early stop by expected loss.
    rt = make_runtime(sqlite_engine, tmp_path, scenario_file, max_expected_loss=0.0)
    exp = _testing_experiment(rt)
    today = rt.platform.today()
    yesterday = rt.platform.day - 1
    with open_session(sqlite_engine) as s:
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(Arm.position)).all()
        last = s.exec(
            select(BanditDecision).where(BanditDecision.experiment_id == exp.id).order_by(BanditDecision.day.desc())
        ).first()  # type: ignore[attr-defined]
    i = max(range(len(arms)), key=lambda k: last.budgets_minor[k])
    ad_id = arms[i].platform_ad_id
    # The platform under-delivers one arm: it reports a tenth of its share.
    row = rt.platform.rows[(ad_id, yesterday)]
    rt.platform.rows[(ad_id, yesterday)] = starved = replace(
        row, impressions=row.impressions // 10, clicks=row.clicks // 10
    )
    rt.platform._by_day[("shop", yesterday)][ad_id] = starved
    tick(rt, today)
    with open_session(sqlite_engine) as s:
        flag = s.exec(select(AuditEvent).where(AuditEvent.name == "DeliveryMismatchFlagged")).first()
        assert flag is not None and flag.experiment_id == exp.id
        assert "chi-square" in flag.data["reason"] and flag.data["delivered"][i] == starved.impressions
        decision = s.exec(
            select(BanditDecision).where(BanditDecision.experiment_id == exp.id, BanditDecision.day == today)
        ).first()
        if decision is not None:  # still testing: the bandit used what was delivered
            total = sum(
                m.impressions
                for m in s.exec(select(DailyMetric).where(DailyMetric.creative_id == arms[i].creative_id)).all()
            )
            assert decision.impressions[i] == total
