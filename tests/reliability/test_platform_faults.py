"""Platform faults: timeouts, 5xx, throttling, partial batches, lost responses and slow calls at 20 %."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import SCENARIO as SCENARIO_ONE
from reliability_helpers import assert_guarantees, make_runtime, run_days, write_scenario

from connectors.ads.base import LaunchTestArm, SetBudgets
from connectors.ads.faults import KINDS, FaultPlan
from connectors.ads.scenario import load_scenario
from connectors.ads.simulated import SimulatedAdPlatform
from policies.errors import RateLimited, TransientError

DAYS = 45


# Two campaigns that both fatigue: more mutations for the faults to hit.
SCENARIO = (
    SCENARIO_ONE
    + """
[[campaigns]]
id = "blog"
daily_impressions = 25000
cpm = 6.0
test_daily_budget = 40.0
test_spend_cap = 400.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 4.0

[[campaigns.creatives]]
id = "story"
ctr = 0.015
fatigue_onset_day = 8
fatigue_decay_per_day = 0.07
"""
)


@pytest.mark.parametrize("kinds", [KINDS, ("partial", "lost")], ids=["every-kind", "mutation-kinds"])
def test_the_loop_completes_the_scenario_at_20_percent_faults(engine, tmp_path: Path, kinds: tuple[str, ...]) -> None:
    slept: list[float] = []
    faults = FaultPlan(rate=0.2, kinds=kinds, sleep=slept.append)
    # Every experiment must have ended by the last day: that timing depends on which drafts are tested,
    # so the run keeps the first-come selection it was sized with (the crash tests cover the model's).
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "policy.toml").write_text('[defaults]\nselection = "first"\n')
    rt = make_runtime(engine, tmp_path / "run", write_scenario(tmp_path, SCENARIO), faults=faults)
    errors = run_days(rt, DAYS)
    # every kind of fault really happened (the slow ones really waited)
    assert set(faults.injected) == set(kinds), faults.injected
    assert bool(slept) == ("slow" in kinds)
    figures = assert_guarantees(engine, tmp_path / "run" / "platform.json", DAYS)
    states = [state for _, state in figures["experiments"]]
    assert "scaled" in states and set(states) <= {"scaled", "abandoned"}, (figures, errors)
    assert {e.split(":")[0] for e, _ in figures["experiments"]} == {"shop", "blog"}


def test_partial_launch_reuses_its_ad_set(scenario_file: Path) -> None:
    platform = SimulatedAdPlatform(load_scenario(scenario_file), faults=FaultPlan(rate=0.999, kinds=("partial",)))
    arm = LaunchTestArm(key="cl:e:v1", campaign="shop", parent_ad_id="hero", image=b"png", lineage={"variant": "v1"})
    for _ in range(3):
        with pytest.raises(TransientError, match="part-way"):
            platform.apply(arm)
    platform.faults = FaultPlan()
    result = platform.apply(arm)
    assert [s.name for s in platform.adsets.values()].count("cl:e:v1") == 1
    assert [a.name for a in platform.ads.values()].count("cl:e:v1") == 1
    assert platform.find(arm) == result


def test_partial_budget_batch_then_resend(scenario_file: Path) -> None:
    platform = SimulatedAdPlatform(load_scenario(scenario_file), faults=FaultPlan(rate=0.999, kinds=("partial",)))
    platform.faults, ok = FaultPlan(), platform.faults
    ids = [
        platform.apply(LaunchTestArm(key=f"cl:e:v{i}", campaign="shop", parent_ad_id="hero"))["adset_id"]
        for i in range(4)
    ]
    platform.faults = ok
    budgets = SetBudgets(key="cl:e:budgets", campaign="shop", budgets=tuple((i, 500) for i in ids))
    with pytest.raises(TransientError, match="part-way"):
        platform.apply(budgets)
    assert [platform.adsets[i].daily_budget_minor for i in ids] == [500, 500, 0, 0]  # half of the batch went through
    platform.faults = FaultPlan()
    platform.apply(budgets)  # resending the whole batch is safe
    assert [platform.adsets[i].daily_budget_minor for i in ids] == [500] * 4


def test_throttling_carries_retry_after(scenario_file: Path) -> None:
    platform = SimulatedAdPlatform(
        load_scenario(scenario_file), faults=FaultPlan(rate=0.999, kinds=("throttle",), retry_after=7.0)
    )
    with pytest.raises(RateLimited) as err:
        platform.list_ads("shop")
    assert err.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1.0}, r"fault_rate: expected in \[0, 1\), got 1.0"),
        ({"kinds": ("meteor",)}, "fault kinds: expected some of"),
        ({"slow_seconds": -1}, "slow_seconds"),
    ],
)
def test_fault_plan_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultPlan(**kwargs)
