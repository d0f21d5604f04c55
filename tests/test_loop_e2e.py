"""The whole loop on the simulated platform, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter as Tally

import pytest
from sqlmodel import select

from loop.simulate import score
from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, Creative, Experiment, PlatformMutation

from loop_helpers import make_runtime, run_days


def test_fatigued_creative_is_replaced_by_a_tested_winner(engine, tmp_path, scenario_file):
    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 45)
    platform = rt.platform

    with open_session(engine) as s:
        exps = s.exec(select(Experiment)).all()
        hero = [e for e in exps if e.parent_creative_id == "shop:hero"]
        assert len(hero) == 1, [e.id for e in exps]
        exp = hero[0]
        # detected after the true onset (day 12), not before: no false alarm
        detected_day = platform.day_index(exp.detected_on)
        assert 12 < detected_day <= 22
        assert exp.state == "scaled", (exp.state, exp.reason)
        # the steady creative never fatigues, so it never opens an experiment
        assert not [e for e in exps if e.parent_creative_id == "shop:steady"]

        drafts = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "draft")).all()
        pros = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "pro")).all()
        assert len(drafts) == 24  # selection = "model": more cheap drafts than the test can take
        assert [p.parent_id for p in pros] == [exp.winner_creative_id]  # a pro render only for the winner
        winner = s.get(Creative, exp.winner_creative_id)
        assert pros[0].seed == winner.seed and pros[0].recipe == winner.recipe
        assert pros[0].width > winner.width
        for d in drafts:  # lineage is complete, so any image can be re-rendered
            assert d.parent_id == "shop:hero" and d.image_hash and d.seed is not None and d.model and d.tier == "fast"

        # the winner is live in the parent's ad set and the parent is paused
        scaled_ad = platform.ads[pros[0].platform_ad_id]
        assert scaled_ad.adset_id == "main:shop"
        successor = [e for e in exps if e.parent_creative_id == pros[0].id and e.state == "scaled"]
        assert scaled_ad.status == ("PAUSED" if successor else "ACTIVE")  # live until it fatigues in turn
        assert platform.ads["hero"].status == "PAUSED"
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
        assert all(platform.adsets[a.platform_adset_id].status == "PAUSED" for a in arms)

        # caps hold, and every reservation is closed or still in its window
        ledger = Ledger(s)
        for account in ("test", "credit"):
            state = ledger.state("shop", account)
            assert state.spent + state.reserved <= state.cap
        assert ledger.spent("shop", "credit", exp.id) == 24 * 2 + 60  # 24 fast drafts and one pro render, in cents

        # every mutation was recorded with its result, once
        muts = s.exec(select(PlatformMutation)).all()
        assert all(m.status == "done" for m in muts)
        assert len({m.key for m in muts}) == len(muts)
        names = Tally(e.name for e in s.exec(select(AuditEvent).where(AuditEvent.experiment_id == exp.id)).all())
        for name in (
            "FatigueDetected",
            "VariantsGenerated",
            "DraftsSelected",
            "ArmsLaunched",
            "AllocationSet",
            "WinnerDeclared",
            "ProRendered",
            "WinnerScaled",
        ):
            assert names[name] >= 1, name

    # platform objects are never duplicated
    test_ads = [a for a in platform.ads.values() if a.name.startswith("cl:")]
    assert len({a.name for a in test_ads}) == len(test_ads)


def test_json_result_matches_the_design(engine, tmp_path, scenario_file):
    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 45)
    result = score(rt, rt.platform, "small", "thompson", "tiered", 45)
    json.dumps(result)  # serialisable
    assert set(result) >= {"scenario", "policy", "tiering", "days", "campaigns"}
    (camp,) = result["campaigns"]
    assert set(camp) >= {
        "id", "fatigue", "false_alarms", "experiments", "test_spend", "test_spend_cap", "credit_spend",
        "credit_cap", "impressions", "clicks", "regret_clicks", "cost_per_winning_asset",
    }  # fmt: skip
    hero = next(f for f in camp["fatigue"] if f["creative"] == "hero")
    assert hero["true_onset_day"] == 12 and hero["detected_day"] > 12
    assert camp["false_alarms"] == 0
    exp = camp["experiments"][0]
    assert set(exp) >= {"parent", "variants", "winner", "winner_true_ctr", "best_true_ctr", "decided_day", "test_spend"}
    assert exp["parent"] == "hero" and exp["variants"] == 24 and exp["winner"].startswith("v")
    assert exp["winner_true_ctr"] <= exp["best_true_ctr"]
    assert camp["test_spend"] <= camp["test_spend_cap"] and camp["credit_spend"] <= camp["credit_cap"]
    assert camp["impressions"] > 30000 * 44 and 0 < camp["clicks"] < camp["impressions"]
    winners = sum(1 for e in camp["experiments"] if e["state"] == "scaled")
    assert camp["cost_per_winning_asset"] == pytest.approx(
        (camp["test_spend"] + camp["credit_spend"]) / winners, abs=0.01
    )


def test_pro_only_tiering_renders_every_variant_at_pro_cost(engine, tmp_path, scenario_file):
    rt = make_runtime(engine, tmp_path, scenario_file, tiering="pro-only")
    run_days(rt, 45)
    with open_session(engine) as s:
        (exp,) = [e for e in s.exec(select(Experiment)).all() if e.parent_creative_id == "shop:hero"]
        drafts = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "draft")).all()
        assert drafts and all(d.tier == "pro" for d in drafts)
        # 5.00 of credit at 0.60 a render: at most 8 fit; the default asks for 6
        assert Ledger(s).spent("shop", "credit", exp.id) == 60 * len(drafts)


def test_a_cap_too_small_for_two_variants_abandons_with_the_reason(engine, tmp_path, scenario_file):
    text = scenario_file.read_text().replace("credit_cap = 5.0", "credit_cap = 0.61")
    scenario_file.write_text(text)
    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 25)
    with open_session(engine) as s:
        exp = s.exec(select(Experiment).order_by(Experiment.created_at)).first()
        assert exp.state == "abandoned" and "credit cap" in exp.reason
        assert Ledger(s).state("shop", "credit").reserved == 0
        assert s.exec(select(AuditEvent).where(AuditEvent.name == "CapReached")).first() is not None


def test_the_platforms_fatigue_signal_opens_an_experiment(engine, tmp_path, scenario_file):
    from datetime import UTC, datetime, time

    from storage.models import PlatformSignal

    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 9)  # own test still silent: the creative has not started to decay
    with open_session(engine) as s:
        assert not s.exec(select(Experiment)).all()
        day = rt.platform.today()
        s.add(
            PlatformSignal(
                platform_ad_id="steady",
                name="creative_fatigue",
                level="FATIGUED",
                received_at=datetime.combine(day, time(8), tzinfo=UTC),
            )
        )
        s.commit()
    run_days(rt, 1)
    with open_session(engine) as s:
        (exp,) = s.exec(select(Experiment)).all()
        assert exp.parent_creative_id == "shop:steady"
        assert exp.verdict["signal"] == "platform" and "FATIGUED" in exp.verdict["reason"]


def test_a_new_ads_learning_days_are_not_its_baseline(sqlite_engine):
    """A novelty burst in an ad's first days, then a steady CTR: no false alarm."""
    from datetime import date, timedelta

    import numpy as np

    from loop.tick import detect
    from policies import fatigue
    from storage.models import Campaign, DailyMetric

    rng = np.random.default_rng(3)
    n = np.full(30, 20000)
    ctr = np.r_[np.full(2, 0.03), np.full(28, 0.02)]  # two bright learning days, then steady
    c = rng.binomial(n, ctr)
    # The data are binomial: with that noise model and without the learning mask, a false alarm.
    # (The default model would read the two bright days as over-dispersion instead.)
    assert fatigue.detect(n, c, overdispersion=1.0, seasonality=None).fatigued
    start = date(2026, 1, 5)
    with open_session(sqlite_engine) as s:
        s.add(Campaign(id="shop", test_spend_cap_minor=10_000, credit_cap_minor=1_000))
        s.add(Creative(id="shop:new", campaign_id="shop", role="live", platform_ad_id="new", status="active"))
        for d in range(30):
            s.add(
                DailyMetric(
                    creative_id="shop:new", day=start + timedelta(days=d), impressions=int(n[d]), clicks=int(c[d])
                )
            )
        s.commit()
        from loop_helpers import plan_for

        assert detect(s, plan_for("shop"), start + timedelta(days=30)) == []
