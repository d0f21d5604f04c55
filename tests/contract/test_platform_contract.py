"""The AdPlatform contract, run against every registered platform (connectors/ads/base.py states it).

Each test gets a :class:`PlatformHarness` for one backend (``harness``, parametrised over
``connectors.ads.registry.PLATFORMS``): the platform against its fake, and the fake's levers.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from contract_harness import PlatformHarness
from PIL import Image

from connectors.ads.base import AdPlatform, InsightRow, LaunchTestArm, LiveAd, PauseAds, ScaleWinner, SetBudgets
from connectors.ads.registry import PLATFORMS
from policies.errors import ConnectorError, CreativeLoopError, NotFound

DAYS = 4


def _launch(h: PlatformHarness, parent: str, label: str = "v1") -> LaunchTestArm:
    return LaunchTestArm(
        key=f"cl:{h.campaign}:contract:{label}", campaign=h.campaign, parent_ad_id=parent, image=h.image,
        headline="Fresh look", lineage={"variant": label, "tier": "fast", "seed": 7},
    )  # fmt: skip


def _main_ads(h: PlatformHarness) -> list[LiveAd]:
    return [a for a in h.platform.list_ads(h.campaign) if a.status == "ACTIVE"]


# -- the registry line -------------------------------------------------------------------------------------
def test_the_registry_line_builds_a_working_platform(platform_name: str, harness: PlatformHarness) -> None:
    entry = PLATFORMS.get(platform_name)
    assert entry.missing() == ""  # the harness runs, so its extra is installed
    assert isinstance(harness.context.settings, entry.settings)
    built = entry.build(harness.context)
    try:
        assert isinstance(built, AdPlatform) and built.name == platform_name
        assert len(built.list_ads(harness.campaign)) >= 2
    finally:
        built.close()
    for key in entry.secrets:  # every secret the entry names is a settings field naming a variable
        assert isinstance(getattr(harness.context.settings, key), str)


# -- reads -------------------------------------------------------------------------------------------------
def test_list_ads_reads_the_main_ad_set(harness: PlatformHarness) -> None:
    ads = harness.platform.list_ads(harness.campaign)
    assert len(ads) >= 2 and all(isinstance(a, LiveAd) for a in ads)
    assert len({a.ad_id for a in ads}) == len(ads)
    assert all(a.status in ("ACTIVE", "PAUSED") for a in ads)
    assert all((a.reason == "") == (a.status == "ACTIVE") for a in ads if a.status == "ACTIVE")


def test_an_unknown_campaign_is_not_found(harness: PlatformHarness) -> None:
    with pytest.raises(NotFound) as err:
        harness.platform.list_ads("no-such-campaign")
    assert isinstance(err.value, LookupError)


def test_source_creative_is_an_image_with_its_copy(harness: PlatformHarness) -> None:
    ad = _main_ads(harness)[0]
    source = harness.platform.source_creative(harness.campaign, ad.ad_id)
    assert source.ad_id == ad.ad_id
    with Image.open(io.BytesIO(source.image)) as img:
        assert img.width > 0 and img.height > 0


def test_insights_are_daily_rows_in_minor_units_each_once(harness: PlatformHarness) -> None:
    """Every (ad, day) delivered comes back once, whatever the paging; the window is respected."""
    days = [harness.first_day + timedelta(days=i) for i in range(DAYS)]
    for day in days:
        harness.deliver(day)
    active = {a.ad_id for a in _main_ads(harness)}
    rows = harness.platform.insights(harness.campaign, days[0], days[-1])
    assert all(isinstance(r, InsightRow) for r in rows)
    keys = [(r.ad_id, r.day) for r in rows]
    assert len(keys) == len(set(keys)), "a row came back twice (paging)"
    assert {(ad, day) for ad in active for day in days} <= set(keys)
    if harness.page_rows is not None:
        assert len(rows) > harness.page_rows  # more than one page was read
    for r in rows:
        assert days[0] <= r.day <= days[-1]
        assert isinstance(r.impressions, int) and isinstance(r.clicks, int) and isinstance(r.spend_minor, int)
        assert 0 <= r.clicks <= r.impressions and r.spend_minor >= 0
    inner = harness.platform.insights(harness.campaign, days[1], days[2])
    assert sorted((r.ad_id, r.day) for r in inner) == sorted(k for k in keys if days[1] <= k[1] <= days[2])


# -- mutations: launch, find, apply, idempotency ----------------------------------------------------------
def test_a_launch_is_found_by_its_key_and_applied_once(harness: PlatformHarness) -> None:
    p = harness.platform
    m = _launch(harness, _main_ads(harness)[0].ad_id)
    assert p.find(m) is None
    first = p.apply(m)
    assert isinstance(first["ad_id"], str) and isinstance(first["adset_id"], str)
    found = p.find(m)
    assert found is not None and (found["ad_id"], found["adset_id"]) == (first["ad_id"], first["adset_id"])
    before = harness.state()
    again = p.apply(m)
    assert (again["ad_id"], again["adset_id"]) == (first["ad_id"], first["adset_id"])
    assert harness.state() == before, "applying the launch a second time changed the platform"
    # A second object (a restarted process) finds it by its key alone.
    other = harness.reopen()
    adopted = other.find(m)
    assert adopted is not None and adopted["ad_id"] == first["ad_id"]
    # The arm is made paused: it spends nothing until its budget is set.
    assert first["ad_id"] not in {a.ad_id for a in _main_ads(harness)}


def test_budgets_and_pauses_applied_twice_change_nothing_the_second_time(harness: PlatformHarness) -> None:
    p = harness.platform
    arm = p.apply(_launch(harness, _main_ads(harness)[0].ad_id))
    end = harness.first_day + timedelta(days=3)
    budgets = SetBudgets(key=f"cl:{harness.campaign}:contract:budgets", campaign=harness.campaign,
                         budgets=((arm["adset_id"], 1500),), end_day=end)  # fmt: skip
    for m in (
        budgets,
        PauseAds(key=f"cl:{harness.campaign}:contract:pause", campaign=harness.campaign,
                 ad_ids=(arm["ad_id"],), adset_ids=(arm["adset_id"],)),
    ):  # fmt: skip
        p.apply(m)
        before = harness.state()
        p.apply(m)
        assert harness.state() == before, f"{m.kind} applied a second time changed the platform"


def test_scaling_puts_the_winner_live_and_pauses_the_parent_once(harness: PlatformHarness) -> None:
    p = harness.platform
    parent = _main_ads(harness)[0].ad_id
    m = ScaleWinner(
        key=f"cl:{harness.campaign}:contract:scale", campaign=harness.campaign, parent_ad_id=parent,
        image=harness.image, headline="Winner", lineage={"variant": "v1", "tier": "pro", "seed": 7},
    )  # fmt: skip
    assert p.find(m) is None
    result = p.apply(m)
    found = p.find(m)
    assert found is not None and found["ad_id"] == result["ad_id"]
    before = harness.state()
    assert p.apply(m)["ad_id"] == result["ad_id"]
    assert harness.state() == before, "scaling a second time changed the platform"
    status = {a.ad_id: a.status for a in p.list_ads(harness.campaign)}
    assert status[result["ad_id"]] == "ACTIVE" and status.get(parent) != "ACTIVE"


# -- errors ------------------------------------------------------------------------------------------------
def test_failures_are_translated_into_the_one_tree(harness: PlatformHarness) -> None:
    assert harness.faults, "a harness arms at least one of the platform's own failures"
    for expected, arm in harness.faults.items():
        arm()
        with pytest.raises(CreativeLoopError) as err:
            harness.platform.list_ads(harness.campaign)
        assert type(err.value) is expected or isinstance(err.value, expected), (expected, err.value)
        assert isinstance(err.value, ConnectorError)
        assert err.value.temporary == expected.temporary
        # One failure, not a broken object: once the wait it asks for is over, the next call works.
        harness.wait(float(getattr(err.value, "retry_after", None) or 0.0))
        assert len(harness.platform.list_ads(harness.campaign)) >= 2


# -- the clock, counters and close ---------------------------------------------------------------------------
def test_a_platform_with_its_own_clock_moves_one_day_per_advance(harness: PlatformHarness) -> None:
    p = harness.platform
    day = p.today()
    p.advance_day()
    after = p.today()
    if day is None:
        assert after is None  # it follows the calendar; advance_day changes nothing
    else:
        assert after == day + timedelta(days=1) and p.today(harness.campaign) == after
    scenario = p.scenario
    assert scenario is None or harness.campaign in [c.id for c in scenario.campaigns]


def test_counters_drain_and_close_is_safe_twice(harness: PlatformHarness) -> None:
    p = harness.platform
    p.list_ads(harness.campaign)
    counts = p.drain_counters()
    assert all(isinstance(n, str) and isinstance(labels, dict) and amount > 0 for n, labels, amount in counts)
    assert p.drain_counters() == []
    p.restore_counters(counts)
    assert sorted(p.drain_counters()) == sorted(counts)
    p.close()
    p.close()
