"""Test design in the loop: the plan before launch, untested drafts, elimination, a cap too small to test."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, BanditDecision, Creative, Experiment, PlatformMutation

from loop_helpers import SMALL_SCENARIO, make_runtime, run_days


def _hero(s):  # type: ignore[no-untyped-def]
    return s.exec(select(Experiment).where(Experiment.parent_creative_id == "shop:hero")).one()


@pytest.mark.parametrize(("selection", "generated"), [("first", 6), ("model", 24)])
def test_the_plan_launches_only_the_arms_the_money_resolves(engine, tmp_path, scenario_file, selection, generated):
    rt = make_runtime(engine, tmp_path, scenario_file, selection=selection)
    run_days(rt, 30)
    with open_session(engine) as s:
        exp = _hero(s)
        plan = exp.plan
        assert plan and 2 <= plan["arms"] < plan["wanted_arms"] == 6, plan
        # 60.00 a day at a CPM of 8.00 is 7,500 impressions a day; the plan's spend fits the cap.
        assert plan["daily_budget_minor"] == 6000 and plan["spend_minor"] <= 50_000
        assert plan["impressions"] == int(plan["spend_minor"] * 1000 / plan["cpm_minor"])
        assert abs(plan["cpm_minor"] - 800) < 1  # measured from the parent's reported spend
        events = s.exec(select(AuditEvent).where(AuditEvent.experiment_id == exp.id)).all()
        assert [e.data["arms"] for e in events if e.name == "TestPlanned"] == [plan["arms"]]
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
        assert len(arms) == plan["arms"]
        drafts = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "draft")).all()
        untested = [d for d in drafts if d.status == "untested"]
        assert len(drafts) == generated and len(untested) == generated - plan["arms"]
        # untested drafts stay in the gallery (stored) and never reach the platform
        assert all(d.image_hash and d.platform_ad_id is None for d in untested)
        keys = {m.key for m in s.exec(select(PlatformMutation)).all()}
        assert not any(f"cl:{exp.id}:{d.label}" in keys for d in untested)


def test_a_cap_too_small_to_resolve_two_arms_spends_nothing(engine, tmp_path, scenario_file):
    rt = make_runtime(engine, tmp_path, scenario_file, test_spend_cap=120.0)
    run_days(rt, 25)
    with open_session(engine) as s:
        exp = _hero(s)
        assert exp.state == "abandoned"
        assert exp.reason.startswith("test plan:") and "2 needed" in exp.reason and "lift" in exp.reason
        assert not s.exec(select(Creative).where(Creative.experiment_id == exp.id)).all()  # no credits spent
        ledger = Ledger(s)
        assert ledger.spent("shop", "test") == 0 and ledger.spent("shop", "credit") == 0


# The scenario of ../shared/DESIGN.md: 300.00 over 14 days of 20.00 buys 35,000 test impressions, which
# resolve a 20.6 % lift with two arms, not the 20 % asked.
DESIGN_EXAMPLE = """
seed = 7
days = 60
[variants]
lift_mu = -0.05
lift_sigma = 0.25
pro_lift = 0.10

[[campaigns]]
id = "lead-gen"
daily_impressions = 40000
cpm = 8.0
test_daily_budget = 20.0
test_spend_cap = 300.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 50.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.018
fatigue_onset_day = 20
fatigue_decay_per_day = 0.04
"""


@pytest.mark.parametrize("tolerance", [1.5, 1.0])
def test_money_that_resolves_a_slightly_larger_lift_still_tests(engine, tmp_path, tolerance):
    path = tmp_path / "design.toml"
    path.write_text(DESIGN_EXAMPLE)
    rt = make_runtime(engine, tmp_path, path, plan_lift_tolerance=tolerance)
    run_days(rt, 32)
    with open_session(engine) as s:
        exp = s.exec(select(Experiment).where(Experiment.parent_creative_id == "lead-gen:hero")).first()
        assert exp is not None
        if tolerance == 1.0:  # the plan must resolve plan_lift itself: refused, nothing spent
            assert exp.state == "abandoned" and "2 needed" in exp.reason and "more than the 20% allowed" in exp.reason
            assert Ledger(s).spent("lead-gen", "test") == 0
            return
        plan = exp.plan
        assert plan["arms"] == 2 and plan["asked_lift"] == 0.2 and 0.2 < plan["lift"] <= 0.3, plan
        assert exp.state in ("testing", "decided", "scaling", "scaled"), exp.reason
        assert len(s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()) == 2
        assert Ledger(s).spent("lead-gen", "test") > 0


WIDE = SMALL_SCENARIO.replace("lift_sigma = 0.3", "lift_sigma = 0.8").replace(
    "test_spend_cap = 500.0", "test_spend_cap = 2500.0"
)


def test_losing_arms_are_eliminated_and_get_no_more_budget(engine, tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text(WIDE)
    rt = make_runtime(engine, tmp_path, path)
    run_days(rt, 35)
    with open_session(engine) as s:
        exp = _hero(s)
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(Arm.position)).all()
        events = s.exec(
            select(AuditEvent).where(AuditEvent.experiment_id == exp.id, AuditEvent.name == "ArmsEliminated")
        ).all()
        assert events, "a spread this wide eliminates at least one arm"
        gone = {c for e in events for c in e.data["arms"]}
        assert {a.creative_id for a in arms if a.status == "eliminated"} == gone
        assert exp.winner_creative_id not in gone
        first = min(e.data["day"] for e in events)
        for d in s.exec(select(BanditDecision).where(BanditDecision.experiment_id == exp.id)).all():
            if d.day.isoformat() > first:
                out = [
                    i for i, a in enumerate(arms) if a.creative_id in gone and a.creative_id in events[0].data["arms"]
                ]
                assert all(d.budgets_minor[i] == 0 and d.weights[i] == 0.0 for i in out)
                assert np.isclose(sum(d.weights), 1.0)
        # an eliminated arm's ad set is paused on the platform
        for a in arms:
            if a.status == "eliminated":
                assert rt.platform.adsets[a.platform_adset_id].status == "PAUSED"


def test_status_and_the_dashboard_show_the_plan(engine, tmp_path, scenario_file):
    from urllib.parse import quote

    from starlette.testclient import TestClient

    from loop.config import load_config
    from loop.web import create_app
    from policies.planning import ExperimentPlan
    from storage.images import ImageStore

    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 22)
    with open_session(engine) as s:
        exp = _hero(s)
        summary = ExperimentPlan.from_dict(exp.plan).summary()
    assert summary.startswith(f"{exp.plan['arms']} of 6 arms x ")
    cfg = load_config(None)
    app = create_app(cfg, engine=engine, images=ImageStore(tmp_path / "images"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get(f"/experiments/{quote(exp.id, safe='')}").text
    assert "test plan" in page and summary.replace("x ", "x ") in page.replace("&#39;", "'")


def test_the_loop_builds_thompson_with_the_configured_variance_scale(tmp_path):
    from loop.config import PolicySettings, load_config
    from loop.experiments import loop_policy

    path = tmp_path / "c.toml"
    path.write_text("[defaults]\nthompson_variance_scale = 0.5\narm_floor = 0.03\n[[campaigns]]\nid = 'a'\n")
    settings = load_config(path).campaign_settings("a")
    for name in ("thompson", "top_two_thompson", "discounted_thompson"):
        policy = loop_policy(name, settings)
        assert policy.variance_scale == 0.5 and policy.floor == 0.03, name
    for name in ("uniform", "epsilon_greedy", "ucb1"):  # the scale is Thompson's alone; the floor is every policy's
        policy = loop_policy(name, settings)
        assert not hasattr(policy, "variance_scale") and policy.floor == 0.03, name
    # The defaults (bench/README.md, "The same frontier at 200 runs"), in the code and the bundled config alike.
    for defaults in (load_config(None).campaign_settings("example"), PolicySettings()):
        policy = loop_policy("thompson", defaults)
        assert policy.variance_scale == 0.25 and policy.floor == 0.05
