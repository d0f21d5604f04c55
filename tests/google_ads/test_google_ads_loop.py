"""The whole loop against the fake Google Ads API: GoogleAdsPlatform through loop.tick."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from ads_helpers import make_platform
from fake_ads import FakeGoogleAds, Fault, seed_account
from sqlmodel import select

from connectors.images.procedural import ProceduralGenerator
from connectors.retry import NO_WAIT, RetrySettings
from loop.config import CampaignSettings
from loop.plans import CampaignPlan
from loop.runtime import Runtime
from loop.tick import StopTick, tick
from storage.db import session as open_session
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, Campaign, Creative, Experiment, PlatformMutation, PlatformSignal

START = date(2026, 1, 5)
ONSET = 16  # the hero's CTR starts to decay after this day
ARM_CTR = {"v1": 0.010, "v2": 0.032, "v3": 0.012, "v4": 0.011}
TEST_CAP = 20000  # 200.00 of test spend over the campaign's life
KINDS = ("campaign", "campaign_budget", "ad_group", "ad_group_ad", "asset")


def ctr(ad: Any, day: date) -> float:
    name = ad.ad.name
    if name.startswith("cl:"):
        if name.endswith(":scale"):
            return 0.034
        return ARM_CTR[name.rsplit(":", 1)[1]]
    d = (day - START).days
    return 0.02 * (0.92 ** max(0, d - ONSET))


def plan() -> CampaignPlan:
    # overspend 2.0: Google may spend twice a daily budget on a day (loop.plans sets this floor for google_ads).
    settings = CampaignSettings(
        id="lead-gen", platform="google_ads", variants=4, min_impressions_per_arm=1500, burn_in_impressions=500,
        max_test_days=12, min_arm_daily_budget=1.0, overspend=2.0,
        selection="first",  # the fake's CTRs are scripted per arm label, v1-v4
    )  # fmt: skip
    return CampaignPlan(
        id="lead-gen", currency="USD", test_spend_cap=TEST_CAP, credit_cap=2000, test_daily_budget=2400,
        fast_credit_cost=2, pro_credit_cost=60, settings=settings,
    )  # fmt: skip


class World:
    """The fake Google Ads API, a platform pointed at it and a Runtime around them."""

    def __init__(self, engine: Any, tmp: Path, fake: FakeGoogleAds, **runtime: Any) -> None:
        self.fake = fake
        fake.ctr = ctr
        self.ids = seed_account(fake, ads=1)
        self.hero = self.ids["ads"][0]
        self.platform = make_platform(fake, self.ids)
        self.rt = Runtime(
            engine=engine, platform=self.platform, generators={"procedural": ProceduralGenerator()},
            images=ImageStore(tmp / "images"), plans=[plan()], approval="none",
            **{"retry": NO_WAIT, "sleep": lambda s: None, "backfill_days": 7, **runtime},
        )  # fmt: skip

    def history(self, days: int) -> None:
        for d in range(days):
            self.fake.deliver(START + timedelta(days=d))

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
            self.fake.deliver(today)
        return crashed

    def arm_spend_minor(self) -> int:
        micros = sum(
            m["cost_micros"]
            for (rn, _), m in self.fake.metrics.items()
            if self.fake.store["ad_group_ad"][rn].ad.name.startswith("cl:")
            and not self.fake.store["ad_group_ad"][rn].ad.name.endswith(":scale")
        )
        return micros // 10_000

    def assert_no_duplicates(self) -> None:
        for kind in KINDS:
            names = [n for n in (o.ad.name if kind == "ad_group_ad" else o.name for o in self.fake.store[kind].values()) if n.startswith("cl:")]  # fmt: skip
            assert len(names) == len(set(names)), (kind, Tally(names).most_common(2))

    def close(self) -> None:
        self.platform.close()


@pytest.fixture
def world(engine: Any, tmp_path: Path) -> Any:
    with FakeGoogleAds(seed=11) as fake:
        w = World(engine, tmp_path, fake)
        yield w
        w.close()


def test_full_experiment_against_the_fake_google_ads_api(world: World, engine: Any) -> None:
    f = world.fake
    world.history(ONSET)
    world.rt.backfill_days = ONSET  # the first tick backfills everything
    world.run(ONSET, ONSET + 40)

    with open_session(engine) as s:
        (exp,) = s.exec(select(Experiment)).all()
        assert exp.state == "scaled", (exp.state, exp.reason)
        assert ONSET < (exp.detected_on - START).days <= ONSET + 10
        winner = s.get(Creative, exp.winner_creative_id)
        assert winner is not None and winner.label == "v2"  # the arm with the best true CTR
        arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
        assert len(arms) == 4
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
        arm_campaigns = [a.platform_adset_id for a in arms]

    # caps hold: what Google reports as spent on the test arms (up to twice a day's budget) never passes the cap
    assert 0 < world.arm_spend_minor() <= TEST_CAP
    # one Demand Gen campaign per arm, each on its own budget, all paused after the decision
    cust = f.customer_id
    budgets = set()
    for cid in arm_campaigns:
        camp = f.get(f"customers/{cust}/campaigns/{cid}")
        assert camp.name.startswith("cl:lead-gen:") and camp.status == 3  # PAUSED
        budgets.add(camp.campaign_budget)
    assert len(budgets) == 4 and not any(f.get(b).explicitly_shared for b in budgets)
    # the pro render runs in the parent's ad group; the fatigued parent is paused
    assert scaled_ad_id is not None and scaled_ad_id.split("-")[0] == world.ids["ad_group"]
    assert f.get(f.ad_rn(scaled_ad_id)).status == 2  # ENABLED
    assert f.get(f.ad_rn(world.hero)).status == 3  # PAUSED
    world.assert_no_duplicates()
    # launches and scaling were atomic requests; budget and pause updates per arm with partial failure
    mutates = f.calls("Mutate")
    assert all(not m.partial_failure for m in mutates if "create" in m.text)
    assert all(m.partial_failure for m in mutates if "create" not in m.text)
    assert world.platform.count("google_ads_api_calls") > 0
    # the tick stored the API counts through its own session
    from storage.counters import read_all

    with open_session(engine) as s:
        stored = {(c.name, c.labels): c.value for c in read_all(s)}
    calls = sum(v for (n, lbl), v in stored.items() if n == "google_ads_api_calls" and 'platform="google_ads"' in lbl)
    assert calls == world.platform.count("google_ads_api_calls")


@pytest.mark.parametrize("kind", ["LaunchTestArm", "SetBudgets", "PauseAds", "ScaleWinner"])
def test_crash_between_intent_and_result_creates_no_duplicate(sqlite_engine: Any, tmp_path: Path, kind: str) -> None:
    with FakeGoogleAds(seed=11) as fake:
        w = World(sqlite_engine, tmp_path, fake)
        try:
            w.history(ONSET)
            w.rt.backfill_days = ONSET
            w.run(ONSET, ONSET + 1)
            w.rt.backfill_days = 7
            crashed = w.run(ONSET + 1, ONSET + 40, crash_at=f"sent:{kind}")
        finally:
            w.close()
        assert crashed == [f"sent:{kind}"]
        with open_session(sqlite_engine) as s:
            (exp,) = s.exec(select(Experiment)).all()
            assert exp.state == "scaled", (exp.state, exp.reason)
            assert all(m.status == "done" for m in s.exec(select(PlatformMutation)).all())
            arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
            assert len({a.platform_adset_id for a in arms}) == 4
        w.assert_no_duplicates()
        assert len(fake.named("ad_group_ad", f"cl:{exp.id}:scale")) == 1


def test_dry_run_reads_for_real_and_mutates_nothing(sqlite_engine: Any, tmp_path: Path) -> None:
    with FakeGoogleAds(seed=11) as fake:
        w = World(sqlite_engine, tmp_path, fake, dry_run=True, backfill_days=ONSET + 8)
        try:
            w.history(ONSET + 8)  # fatigue is visible by now
            before = {k: {rn: m.SerializeToString() for rn, m in v.items()} for k, v in fake.store.items()}
            report = tick(w.rt, START + timedelta(days=ONSET + 8))
        finally:
            w.close()
        assert report.detected and any(line.startswith("generate ") for line in report.plan)
        assert fake.calls("SearchStream", "FROM ad_group_ad") and not fake.calls("Mutate")
        assert {k: {rn: m.SerializeToString() for rn, m in v.items()} for k, v in fake.store.items()} == before
        with open_session(sqlite_engine) as s:
            assert s.exec(select(Experiment)).first() is None
            assert s.exec(select(PlatformMutation)).first() is None


def test_a_dry_run_during_a_test_prints_the_budgets_it_would_set(sqlite_engine: Any, tmp_path: Path) -> None:
    with FakeGoogleAds(seed=11) as fake:
        w = World(sqlite_engine, tmp_path, fake)
        try:
            w.history(ONSET)
            w.rt.backfill_days = ONSET
            for d in range(ONSET, ONSET + 20):  # until the arms run
                tick(w.rt, START + timedelta(days=d))
                w.rt.backfill_days = 7
                with open_session(sqlite_engine) as s:
                    if s.exec(select(Experiment.state)).first() == "testing":
                        break
                fake.deliver(START + timedelta(days=d))
            fake.ctr = lambda ad, day: 0.012  # arms alike: no winner yet, the test goes on
            fake.deliver(START + timedelta(days=d))
            mutations = len(fake.calls("Mutate"))
            w.rt.dry_run = True
            report = tick(w.rt, START + timedelta(days=d + 1))
        finally:
            w.close()
        (line,) = [p for p in report.plan if p.startswith("SetBudgets ")]
        assert '"budgets": [[' in line and '"end_day": "' in line
        assert len(fake.calls("Mutate")) == mutations  # read for real, sent nothing


def test_an_authentication_error_halts_the_campaign_without_a_retry_storm(sqlite_engine: Any, tmp_path: Path) -> None:
    with FakeGoogleAds(seed=11) as fake:
        w = World(sqlite_engine, tmp_path, fake, retry=RetrySettings(attempts=5, backoff=0, max_backoff=0, jitter=0))
        try:
            w.history(3)
            tick(w.rt, START + timedelta(days=3))
            fake.faults.append(Fault("auth", times=None))
            seen = len(fake.seen)
            report = tick(w.rt, START + timedelta(days=4))
            assert len(fake.seen) == seen + 1  # one refused call, no retries
            assert report.errors and "AUTHENTICATION_ERROR" in report.errors[0]
            with open_session(sqlite_engine) as s:
                assert "refresh token" in (s.get(Campaign, "lead-gen").halted_reason or "")
            fake.faults.clear()
            tick(w.rt, START + timedelta(days=5))
            with open_session(sqlite_engine) as s:
                assert s.get(Campaign, "lead-gen").halted_reason is None
        finally:
            w.close()


def test_the_experiment_completes_at_20_percent_random_faults(sqlite_engine: Any, tmp_path: Path) -> None:
    """Quota, internal errors, unavailability, cut streams, slow answers and lost answers on 20% of calls."""
    with FakeGoogleAds(seed=11) as fake:
        world = World(
            sqlite_engine, tmp_path, fake, retry=RetrySettings(attempts=8, backoff=0, max_backoff=0, jitter=0)
        )
        try:
            world.history(ONSET)
            fake.fault_rate = 0.2
            world.rt.backfill_days = ONSET
            for d in range(ONSET, ONSET + 45):
                today = START + timedelta(days=d)
                report = tick(world.rt, today)  # a campaign whose calls kept failing resumes next tick
                if any(t.endswith("→ scaled") for t in report.transitions):
                    break
                world.rt.backfill_days = 7
                fake.deliver(today)
            assert {"quota", "internal", "unavailable", "lost", "cut"} <= set(fake.random_faults)
            with open_session(sqlite_engine) as s:
                (exp,) = s.exec(select(Experiment)).all()
                assert exp.state == "scaled", (exp.state, exp.reason)
                ledger = Ledger(s)
                for account in ("test", "credit"):
                    state = ledger.state("lead-gen", account)
                    assert state.spent + state.reserved <= state.cap, account
                assert all(m.status == "done" for m in s.exec(select(PlatformMutation)).all())
            assert 0 < world.arm_spend_minor() <= TEST_CAP
            world.assert_no_duplicates()
        finally:
            world.close()


def test_a_low_label_after_a_good_one_opens_an_experiment(sqlite_engine: Any, tmp_path: Path) -> None:
    """Google's asset performance label as an extra fatigue signal, like Meta's webhook."""
    with FakeGoogleAds(seed=11) as fake:
        w = World(sqlite_engine, tmp_path, fake)
        fake.ctr = lambda ad, day: 0.02  # the CTR never decays: only the label can tell
        rn = fake.ad_rn(w.hero)
        try:
            w.history(6)
            fake.labels[(rn, w.ids["image"])] = "LOW"  # LOW without a good label before it: nothing
            assert not tick(w.rt, START + timedelta(days=6)).detected
            fake.labels[(rn, w.ids["image"])] = "GOOD"
            fake.deliver(START + timedelta(days=6))
            assert not tick(w.rt, START + timedelta(days=7)).detected
            fake.labels[(rn, w.ids["image"])] = "LOW"
            fake.deliver(START + timedelta(days=7))
            report = tick(w.rt, START + timedelta(days=8))
        finally:
            w.close()
        assert len(report.detected) == 1
        with open_session(sqlite_engine) as s:
            (exp,) = s.exec(select(Experiment)).all()
            assert exp.verdict["signal"] == "platform" and "FATIGUED" in exp.verdict["reason"]
            levels = [(p.name, p.level) for p in s.exec(select(PlatformSignal).order_by(PlatformSignal.id)).all()]
        assert levels == [
            ("asset_performance", "LOW"), ("asset_performance", "GOOD"), ("asset_performance", "LOW"),
            ("creative_fatigue", "FATIGUED"),
        ]  # fmt: skip
