"""The whole loop against the fake Graph API server: MetaAdPlatform through loop.tick."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_graph import FakeGraph, seed_account
from meta_helpers import FakeClock, make_platform
from sqlmodel import select

from connectors.images.procedural import ProceduralGenerator
from connectors.retry import NO_WAIT
from loop.config import CampaignSettings
from loop.plans import CampaignPlan
from loop.runtime import Runtime
from loop.tick import StopTick, tick
from storage.db import session as open_session
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, Creative, Experiment, PlatformMutation

START = date(2026, 1, 5)
ONSET = 16  # the hero's CTR starts to decay after this day
ARM_CTR = {"v1": 0.010, "v2": 0.032, "v3": 0.012, "v4": 0.011}
TEST_CAP = 15000  # 150.00 of test spend over the campaign's life


def ctr(ad: dict[str, Any], day: date) -> float:
    name = str(ad.get("name", ""))
    if name.startswith("cl:"):
        if name.endswith(":scale"):
            return 0.034
        return ARM_CTR[name.rsplit(":", 1)[1]]
    d = (day - START).days
    return 0.02 * (0.92 ** max(0, d - ONSET))


def plan() -> CampaignPlan:
    settings = CampaignSettings(
        id="lead-gen", variants=4, min_impressions_per_arm=1500, burn_in_impressions=500, max_test_days=12,
        min_arm_daily_budget=1.0, selection="first",  # the fake's CTRs are scripted per arm label, v1-v4
    )  # fmt: skip
    return CampaignPlan(
        id="lead-gen", currency="USD", test_spend_cap=TEST_CAP, credit_cap=2000, test_daily_budget=2400,
        fast_credit_cost=2, pro_credit_cost=60, settings=settings,
    )  # fmt: skip


class World:
    """The fake Graph server, a platform pointed at it and a Runtime around them."""

    def __init__(
        self, engine: Any, tmp: Path, graph: FakeGraph, options: dict[str, Any] | None = None, **runtime: Any
    ) -> None:
        self.graph = graph
        graph.ctr = ctr
        graph.cpm_minor = 200
        self.ids = seed_account(graph, ads=1)
        self.hero = self.ids["ads"][0]
        self.platform = make_platform(graph, self.ids, FakeClock(), **(options or {}))
        self.rt = Runtime(
            engine=engine, platform=self.platform, generators={"procedural": ProceduralGenerator()},
            images=ImageStore(tmp / "images"), plans=[plan()], approval="none",
            **{"retry": NO_WAIT, "sleep": lambda s: None, "backfill_days": 7, **runtime},
        )  # fmt: skip

    def history(self, days: int) -> None:
        for d in range(days):
            self.graph.deliver(START + timedelta(days=d))

    def run(self, first: int, last: int, crash_at: str | None = None) -> list[str]:
        """Tick then deliver each day until the experiment is scaled; crash once at ``crash_at``, rerun that tick."""
        crashed: list[str] = []

        def hook(name: str) -> None:
            if name == crash_at and not crashed:
                crashed.append(name)
                raise StopTick(name)

        self.rt.on_step = hook if crash_at else None
        for d in range(first, last):
            today = START + timedelta(days=d)
            try:
                report = tick(self.rt, today)
            except StopTick:
                self.rt.on_step = None
                report = tick(self.rt, today)  # the rerun after the crash
            if any(t.endswith("→ scaled") for t in report.transitions):
                break
            self.graph.deliver(today)
        return crashed

    def close(self) -> None:
        self.platform.close()


@pytest.fixture
def world(engine: Any, tmp_path: Path) -> Any:
    with FakeGraph(seed=11) as graph:
        w = World(engine, tmp_path, graph)
        yield w
        w.close()


def test_full_experiment_against_the_fake_graph_api(world: World, engine: Any) -> None:
    g = world.graph
    world.history(ONSET)
    world.rt.backfill_days = ONSET  # the first tick backfills everything (an async report run)
    world.run(ONSET, ONSET + 1)
    assert g.calls("POST", "act_111/insights")  # async report run
    world.rt.backfill_days = 7
    world.run(ONSET + 1, ONSET + 30)

    with open_session(engine) as s:
        (exp,) = s.exec(select(Experiment)).all()
        assert exp.state == "scaled", (exp.state, exp.reason)
        assert ONSET < (exp.detected_on - START).days <= ONSET + 10
        winner = s.get(Creative, exp.winner_creative_id)
        assert winner is not None and winner.label == "v2"  # the arm with the best true CTR
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
        assert len(arms) == 4
        # caps hold: what Meta reports as spent on the test arms never passes the cap
        ledger = Ledger(s)
        for account in ("test", "credit"):
            state = ledger.state("lead-gen", account)
            assert state.spent + state.reserved <= state.cap, account
        assert all(m.status == "done" for m in s.exec(select(PlatformMutation)).all())
        names = Tally(e.name for e in s.exec(select(AuditEvent).where(AuditEvent.experiment_id == exp.id)).all())
        for name in ("FatigueDetected", "ArmsLaunched", "AllocationSet", "WinnerDeclared", "WinnerScaled"):
            assert names[name] >= 1, name
        scaled = s.get(Creative, exp.scaled_creative_id)
        assert scaled is not None
        scaled_ad_id = scaled.platform_ad_id
        arm_adsets = [a.platform_adset_id for a in arms]

    arm_spend = sum(m["spend_minor"] for (ad, _), m in g.rows.items() if g.objects[ad]["name"].startswith("cl:") and not g.objects[ad]["name"].endswith(":scale"))  # fmt: skip
    assert 0 < arm_spend <= TEST_CAP
    # one ad set per arm, in the test campaign, all paused after the decision
    assert all(
        g.objects[a]["campaign_id"] == world.ids["test"] and g.objects[a]["status"] == "PAUSED" for a in arm_adsets
    )
    # the pro render runs in the parent's ad set; the fatigued parent is paused
    assert g.objects[scaled_ad_id]["adset_id"] == world.ids["adset"] and g.objects[scaled_ad_id]["status"] == "ACTIVE"
    assert g.objects[world.hero]["status"] == "PAUSED"
    # nothing was created twice
    for type_ in ("ad", "adset", "creative"):
        names = [o["name"] for o in g.of_type(type_) if o["name"].startswith("cl:")]
        assert len(names) == len(set(names)), type_
    # every budget update went through a batch of at most 50
    assert all(
        len(b.params["batch"]) and b.params["batch"].count('"method"') <= 50 for b in g.calls("POST") if b.path == ""
    )
    assert world.platform.count("meta_api_calls") > 0


@pytest.mark.parametrize("kind", ["LaunchTestArm", "SetBudgets", "PauseAds", "ScaleWinner"])
def test_crash_between_intent_and_result_creates_no_duplicate(sqlite_engine: Any, tmp_path: Path, kind: str) -> None:
    with FakeGraph(seed=11) as graph:
        w = World(sqlite_engine, tmp_path, graph)
        try:
            w.history(ONSET)
            w.rt.backfill_days = ONSET
            w.run(ONSET, ONSET + 1)
            w.rt.backfill_days = 7
            crashed = w.run(ONSET + 1, ONSET + 30, crash_at=f"sent:{kind}")
        finally:
            w.close()
        assert crashed == [f"sent:{kind}"]
        with open_session(sqlite_engine) as s:
            (exp,) = s.exec(select(Experiment)).all()
            assert exp.state == "scaled", (exp.state, exp.reason)
            muts = s.exec(select(PlatformMutation)).all()
            assert all(m.status == "done" for m in muts)
            arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
            assert len({a.platform_adset_id for a in arms}) == 4
        for type_ in ("ad", "adset", "creative"):
            names = [o["name"] for o in graph.of_type(type_) if o["name"].startswith("cl:")]
            assert len(names) == len(set(names)), (type_, Tally(names).most_common(2))
        assert len(graph.named("ad", f"cl:{exp.id}:scale")) == 1


def test_dry_run_reads_for_real_and_mutates_nothing(sqlite_engine: Any, tmp_path: Path) -> None:
    with FakeGraph(seed=11) as graph:
        # A sync read of the whole history: an async report run would be a POST (a read, but not one we can tell apart).
        w = World(
            sqlite_engine, tmp_path, graph, options={"async_after_days": 60}, dry_run=True, backfill_days=ONSET + 8
        )
        try:
            w.history(ONSET + 8)  # fatigue is visible by now
            before = {k: dict(v) for k, v in graph.objects.items()}
            report = tick(w.rt, START + timedelta(days=ONSET + 8))
        finally:
            w.close()
        assert report.detected and any(line.startswith("generate ") for line in report.plan)
        assert graph.calls("GET", "act_111/insights") and graph.calls("GET", "/ads")
        assert not graph.calls("POST")  # not even an upload
        assert graph.objects == before
        with open_session(sqlite_engine) as s:
            assert s.exec(select(Experiment)).first() is None
            assert s.exec(select(PlatformMutation)).first() is None


def test_expired_token_halts_the_campaign_without_a_retry_storm(sqlite_engine: Any, tmp_path: Path) -> None:
    from fake_graph import Fault

    from storage.models import Campaign

    with FakeGraph(seed=11) as graph:
        w = World(sqlite_engine, tmp_path, graph)
        try:
            w.history(3)
            tick(w.rt, START + timedelta(days=3))
            graph.faults.append(Fault(code=190, subcode=463, times=None, message="Session has expired"))
            seen = len(graph.seen)
            report = tick(w.rt, START + timedelta(days=4))
            assert len(graph.seen) == seen + 1  # one refused call, no retries
            assert report.errors and "access token" in report.errors[0]
            with open_session(sqlite_engine) as s:
                assert "access token" in (s.get(Campaign, "lead-gen").halted_reason or "")
            graph.faults.clear()
            tick(w.rt, START + timedelta(days=5))
            with open_session(sqlite_engine) as s:
                assert s.get(Campaign, "lead-gen").halted_reason is None
        finally:
            w.close()


def test_the_experiment_completes_at_20_percent_random_faults(sqlite_engine: Any, tmp_path: Path) -> None:
    """Throttling, transient errors, HTML 502s and slow answers on 20% of calls: same guarantees."""
    from connectors.retry import RetrySettings

    with FakeGraph(seed=11) as graph:
        world = World(
            sqlite_engine, tmp_path, graph, retry=RetrySettings(attempts=8, backoff=0, max_backoff=0, jitter=0)
        )
        try:
            world.history(ONSET)
            graph.fault_rate = 0.2
            world.rt.backfill_days = ONSET
            for d in range(ONSET, ONSET + 40):
                today = START + timedelta(days=d)
                report = tick(world.rt, today)  # a campaign whose calls kept failing resumes next tick
                if any(t.endswith("→ scaled") for t in report.transitions):
                    break
                world.rt.backfill_days = 7
                graph.deliver(today)
                world.platform.clock.now += 86400  # a day passes: any throttling pause is over
            assert {"throttle", "transient", "html502"} <= set(graph.random_faults)
            with open_session(sqlite_engine) as s:
                (exp,) = s.exec(select(Experiment)).all()
                assert exp.state == "scaled", (exp.state, exp.reason)
                ledger = Ledger(s)
                for account in ("test", "credit"):
                    state = ledger.state("lead-gen", account)
                    assert state.spent + state.reserved <= state.cap, account
                assert all(m.status == "done" for m in s.exec(select(PlatformMutation)).all())
            for type_ in ("ad", "adset", "creative"):
                names = [o["name"] for o in graph.of_type(type_) if o["name"].startswith("cl:")]
                assert len(names) == len(set(names)), type_
        finally:
            world.close()


def test_late_commits_and_lost_answers_leave_no_duplicate(engine: Any, tmp_path: Path) -> None:
    """Every create of the first arm is carried out but answered after the client's timeout (or its
    connection dropped), and Graph shows it only seconds later: the loop still makes each object once."""
    from fake_graph import LateCommit

    with FakeGraph(seed=11) as graph:
        world = World(engine, tmp_path, graph, options={"timeout": 1.0})
        graph.clock = world.platform.clock  # visibility follows the platform's clock (its settle waits)
        graph.late += [
            LateCommit(path="act_111/adsets", respond_after=2.0, visible_after=4.0),
            LateCommit(path="act_111/adcreatives", respond_after=None, visible_after=2.0),
            LateCommit(path="act_111/ads$", respond_after=2.0, visible_after=6.0),
        ]
        try:
            world.history(ONSET)
            world.rt.backfill_days = ONSET
            world.run(ONSET, ONSET + 1)
            world.rt.backfill_days = 7
            world.run(ONSET + 1, ONSET + 30)
        finally:
            world.close()
        assert all(x.times == 0 for x in graph.late)  # each late commit happened
        with open_session(engine) as s:
            (exp,) = s.exec(select(Experiment)).all()
            assert exp.state == "scaled", (exp.state, exp.reason)
            muts = s.exec(select(PlatformMutation).where(PlatformMutation.kind == "LaunchTestArm")).all()
            assert all(m.status == "done" and {"adset", "creative", "ad"} <= set(m.objects) for m in muts)
        for type_ in ("ad", "adset", "creative"):
            names = [o["name"] for o in graph.of_type(type_) if o["name"].startswith("cl:")]
            assert len(names) == len(set(names)), (type_, Tally(names).most_common(2))


def test_api_counts_go_through_the_tick_with_the_loop_s_engine(engine: Any, tmp_path: Path, caplog: Any) -> None:
    """The platform gets the loop's engine (as `loop.app` wires it) and still never writes during a tick:
    the counts are stored by the tick's session, all of them, with no lock wait."""
    from storage.counters import read_all

    with FakeGraph(seed=11) as graph:
        world = World(engine, tmp_path, graph, options={"counter_engine": engine})
        caplog.set_level(logging.WARNING)
        try:
            world.history(ONSET)
            world.rt.backfill_days = ONSET
            world.run(ONSET, ONSET + 4)
            calls = world.platform.count("meta_api_calls")
        finally:
            world.close()
        with open_session(engine) as s:
            stored = {(c.name, c.labels): c.value for c in read_all(s)}
    assert (
        sum(v for (n, _), v in stored.items() if n == "meta_api_calls")
        == calls
        == len(graph.seen) - len([x for x in graph.seen if x.in_batch])
    )
    expected = {
        (name, ",".join(f'{k}="{v}"' for k, v in sorted({**dict(labels), "platform": "meta"}.items()))): value
        for (name, labels), value in world.platform.counters.totals.items()
    }
    assert stored == expected and len(expected) > 1
    assert not [r for r in caplog.records if "counters" in r.getMessage() or "locked" in r.getMessage()]
