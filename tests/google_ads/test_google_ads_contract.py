"""Contract tests: GoogleAdsPlatform (the real google-ads client) against the fake Google Ads API over TLS."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import grpc
import pytest
from ads_helpers import make_platform
from fake_ads import (
    CLIENT_SECRET,
    CONVERSION_ACTION,
    DEVELOPER_TOKEN,
    MANAGER,
    REFRESH_TOKEN,
    FakeGoogleAds,
    Fault,
    png_bytes,
    seed_account,
)
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as core

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets
from connectors.google_ads import GoogleAdsPlatform, gaql
from connectors.google_ads.images import ad_images, fit_image
from connectors.retry import RetrySettings, call_with_retry
from loop.logs import RedactingFilter
from policies.errors import AuthExpired, NotFound, PlatformError, RateLimited, TransientError

D0 = date(2026, 1, 1)


def arm(ids: dict[str, Any], label: str = "v1", seed: int = 3, size: tuple[int, int] = (512, 268)) -> LaunchTestArm:
    return LaunchTestArm(
        key=f"cl:lead-gen:lead-gen:{ids['ads'][0]}:2026-01-20:{label}",
        campaign="lead-gen",
        parent_ad_id=ids["ads"][0],
        image=png_bytes(seed, size),
        headline="Fresh look",
    )


def campaign_of(fake: FakeGoogleAds, campaign_id: str) -> Any:
    return fake.get(f"customers/{fake.customer_id}/campaigns/{campaign_id}")


def ad_of(fake: FakeGoogleAds, ad_id: str) -> Any:
    return fake.get(fake.ad_rn(ad_id))


def enum(msg: Any, name: str) -> str:
    fd = msg.DESCRIPTOR.fields_by_name.get(name) or msg.DESCRIPTOR.fields_by_name[name + "_"]
    return fd.enum_type.values_by_number[getattr(msg, fd.name)].name


# -- the wire and the secrets ---------------------------------------------------------------
def test_every_call_carries_the_token_developer_token_and_manager(fake: FakeGoogleAds, platform: GoogleAdsPlatform) -> None:  # fmt: skip
    platform.list_ads("lead-gen")
    platform.insights("lead-gen", D0, D0)
    assert len(fake.seen) == 4  # list ads; test campaigns, metrics, account
    for s in fake.seen:
        assert s.metadata["developer-token"] == DEVELOPER_TOKEN and s.metadata["login-customer-id"] == MANAGER
        assert s.metadata["authorization"].startswith("Bearer ya29.fake-")
    assert platform.count("google_ads_token_refreshes") == 1  # refreshed once, before the first call
    assert platform.count("google_ads_api_calls", method="SearchStream") == 4


def test_a_refused_refresh_token_is_auth_expired_before_any_call(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:
    p = make_platform(fake, ids, refresh_token="1//revoked")
    try:
        with pytest.raises(AuthExpired, match="refresh token") as err:
            p.list_ads("lead-gen")
    finally:
        p.close()
    assert not fake.seen and not err.value.temporary


def test_an_unreachable_token_endpoint_is_transient(ids: dict[str, Any]) -> None:
    with FakeGoogleAds() as other:
        p = make_platform(other, ids)
    try:  # both servers are down now
        with pytest.raises(TransientError):
            p.list_ads("lead-gen")
    finally:
        p.close()


def test_secrets_never_reach_errors_or_logs(
    fake: FakeGoogleAds, ids: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger().addFilter(RedactingFilter())
    p = make_platform(fake, ids, developer_token="dev-token-wrong-42")
    try:
        with pytest.raises(AuthExpired) as err:
            p.list_ads("lead-gen")
        logging.getLogger("creative_loop.test").exception("list_ads failed: %s", err.value)
        fake.developer_token = "dev-token-wrong-42"  # accepted now: a real call, logged by the library
        p.list_ads("lead-gen")
    finally:
        logging.getLogger().removeFilter(RedactingFilter())
        p.close()
    assert "DEVELOPER_TOKEN_INVALID" in str(err.value) and "request" in str(err.value)
    for secret in ("dev-token-wrong-42", REFRESH_TOKEN, CLIENT_SECRET, *fake.access_tokens):
        assert secret not in str(err.value)
        assert secret not in caplog.text
    assert "list_ads failed" in caplog.text


# -- reads ------------------------------------------------------------------------------------
def test_list_ads_reads_the_watched_campaigns_image_ads(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    paused = ad_of(fake, ids["ads"][1])
    paused.status = paused.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name["PAUSED"].number
    ads = platform.list_ads("lead-gen")
    assert [a.ad_id for a in ads] == sorted(ids["ads"])
    assert [(a.name, a.status, a.headline, a.reason) for a in ads] == [
        ("hero-0", "ACTIVE", "Hero 0", ""), ("hero-1", "PAUSED", "Hero 1", "AD_PAUSED"),
    ]  # fmt: skip
    # an enabled ad that cannot deliver is listed paused, with why
    active = ad_of(fake, ids["ads"][0])
    active.policy_summary.approval_status = active.policy_summary.DESCRIPTOR.fields_by_name["approval_status"].enum_type.values_by_name["DISAPPROVED"].number  # fmt: skip
    camp = campaign_of(fake, ids["main"])
    camp.status = camp.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name["PAUSED"].number
    assert [(a.status, a.reason) for a in platform.list_ads("lead-gen")] == [
        ("PAUSED", "CAMPAIGN_PAUSED, DISAPPROVED"), ("PAUSED", "AD_PAUSED, CAMPAIGN_PAUSED"),
    ]  # fmt: skip
    q = fake.calls("SearchStream")[0]
    assert f"campaign.id = {ids['main']}" in q.text and "DEMAND_GEN_MULTI_ASSET_AD" in q.text


def test_unknown_campaign_is_a_lookup_error(platform: GoogleAdsPlatform) -> None:
    with pytest.raises(NotFound):
        platform.list_ads("nope")


def test_insights_money_in_minor_units_and_late_attribution(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    aga = fake.ad_rn(ids["ads"][0])
    fake.set_metrics(aga, D0, impressions=1000, clicks=25, cost_micros=2_505_000, conversions=2.5, all_conversions=3.0)
    fake.set_metrics(aga, D0 - timedelta(days=1), impressions=9, clicks=1, cost_micros=1)  # outside the range
    (row,) = platform.insights("lead-gen", D0, D0)
    assert (row.ad_id, row.day, row.impressions, row.clicks, row.spend_minor, row.conversions) == (ids["ads"][0], D0, 1000, 25, 251, 3)  # fmt: skip
    fake.set_metrics(aga, D0, impressions=1000, clicks=27, cost_micros=2_504_999, conversions=4.0)
    (row,) = platform.insights("lead-gen", D0, D0)
    assert (row.clicks, row.spend_minor, row.conversions) == (27, 250, 4)
    metrics = [s for s in fake.calls("SearchStream") if "metrics." in s.text][-1]
    assert "segments.date BETWEEN '2026-01-01' AND '2026-01-01'" in metrics.text


def test_insights_include_the_test_arms_and_count_the_configured_conversion_action(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:  # fmt: skip
    p = make_platform(fake, ids, conversion_action=str(CONVERSION_ACTION))
    try:
        r = p.apply(arm(ids))
        p.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((r["adset_id"], 500),), end_day=D0 + timedelta(days=3)))  # fmt: skip
        for d in range(2):
            fake.deliver(D0 + timedelta(days=d))
        aga = fake.ad_rn(ids["ads"][0])
        fake.metrics[(aga, D0.isoformat())]["conversions_by_action"][f"customers/{fake.customer_id}/conversionActions/9"] = 50.0  # fmt: skip
        rows = p.insights("lead-gen", D0, D0 + timedelta(days=1))
    finally:
        p.close()
    assert {r.ad_id for r in rows} == {*ids["ads"], r["ad_id"]}
    by = {(x.ad_id, x.day): x for x in rows}
    want = fake.metrics[(aga, D0.isoformat())]
    assert by[(ids["ads"][0], D0)].conversions == gaql.whole(want["conversions_by_action"][fake.conversion_action])
    conv = [s for s in fake.calls("SearchStream") if "segments.conversion_action" in s.text]
    assert len(conv) == 1 and "metrics.impressions" not in conv[0].text  # Google refuses that combination


def test_a_zero_decimal_currency_account() -> None:
    with FakeGoogleAds(currency="JPY") as fake:
        ids = seed_account(fake)
        p = make_platform(fake, ids, currency="JPY")
        fake.set_metrics(fake.ad_rn(ids["ads"][0]), D0, impressions=10, clicks=1, cost_micros=1_500_000_000)  # fmt: skip
        try:
            (row,) = p.insights("lead-gen", D0, D0)
        finally:
            p.close()
    assert row.spend_minor == 1500


def test_a_currency_other_than_the_configs_is_refused(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:
    p = make_platform(fake, ids, currency="EUR")
    try:
        with pytest.raises(PlatformError, match="bills in USD"):
            p.insights("lead-gen", D0, D0)
    finally:
        p.close()


def test_streams_in_batches_and_a_stream_cut_half_way_is_transient(ids: dict[str, Any]) -> None:
    with FakeGoogleAds(batch_rows=3) as fake:
        ids = seed_account(fake, ads=4)
        p = make_platform(fake, ids)
        for d in range(5):
            fake.deliver(D0 + timedelta(days=d))
        try:
            assert len(p.insights("lead-gen", D0, D0 + timedelta(days=4))) == 20
            fake.faults.append(Fault("unavailable", method="SearchStream", contains="metrics.", after_rows=3))
            with pytest.raises(TransientError):
                p.insights("lead-gen", D0, D0 + timedelta(days=4))
            assert len(p.insights("lead-gen", D0, D0 + timedelta(days=4))) == 20
        finally:
            p.close()


def test_signals_report_each_ads_best_image_label(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    a0, a1 = (fake.ad_rn(a) for a in ids["ads"])
    assert platform.signals("lead-gen") == []  # PENDING says nothing
    fake.labels[(a0, ids["image"])] = "GOOD"
    fake.labels[(a1, ids["image"])] = "LEARNING"
    (s,) = platform.signals("lead-gen")
    assert (s.ad_id, s.name, s.level, s.fatigued_after) == (
        ids["ads"][0],
        "asset_performance",
        "GOOD",
        ("GOOD", "BEST"),
    )
    fake.labels[(a0, ids["image"])] = "LOW"
    assert platform.signals("lead-gen")[0].level == "LOW"


def test_source_creative_reads_copy_and_downloads_the_image(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    src = platform.source_creative("lead-gen", ids["ads"][0])
    assert (src.headline, src.message, src.link, src.call_to_action) == (
        "Hero 0", "Get the offer", "https://example.com/offer", "Sign up",
    )  # fmt: skip
    assert src.image == fake.images[ids["image"]]


def test_source_creative_of_an_ad_outside_the_campaign(fake: FakeGoogleAds, platform: GoogleAdsPlatform) -> None:
    other = seed_account(fake, ads=1)
    with pytest.raises(NotFound):
        platform.source_creative("lead-gen", other["ads"][0])
    with pytest.raises(NotFound):
        platform.source_creative("lead-gen", "123; DROP TABLE")


def test_image_download_limits(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:
    p = make_platform(fake, ids, image_max_bytes=100)
    try:
        with pytest.raises(PlatformError, match="larger than 100 bytes"):
            p.source_creative("lead-gen", ids["ads"][0])
    finally:
        p.close()


# -- mutations -------------------------------------------------------------------------------------
def test_launch_creates_one_paused_demand_gen_campaign_per_arm_atomically(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = arm(ids)
    assert platform.find(m) is None
    result = platform.apply(m)
    (mutate,) = fake.calls("Mutate")
    assert (
        not mutate.partial_failure and mutate.operations == 9
    )  # asset, budget, campaign (+2 criteria), group (+2), ad
    camp = campaign_of(fake, result["adset_id"])
    budget = fake.get(camp.campaign_budget)
    assert camp.name == budget.name == m.key
    assert (enum(camp, "status"), enum(camp, "advertising_channel_type"), enum(camp, "bidding_strategy_type")) == (
        "PAUSED", "DEMAND_GEN", "TARGET_SPEND",
    )  # fmt: skip
    assert enum(camp, "contains_eu_political_advertising") == "DOES_NOT_CONTAIN_EU_POLITICAL_ADVERTISING"
    assert not budget.explicitly_shared and budget.amount_micros == 1_000_000  # the minimum, while paused
    crit = {enum(c, "type"): c for c in fake.store["campaign_criterion"].values() if c.campaign == camp.resource_name}
    assert crit["LOCATION"].location.geo_target_constant == "geoTargetConstants/2840" and "LANGUAGE" in crit
    ad = ad_of(fake, result["ad_id"])
    group = fake.get(ad.ad_group)
    assert group.campaign == camp.resource_name and group.name == m.key
    assert group.demand_gen_ad_group_settings.channel_controls.selected_channels.discover
    gcrit = {enum(c, "type") for c in fake.store["ad_group_criterion"].values() if c.ad_group == group.resource_name}
    assert gcrit == {"AGE_RANGE", "AUDIENCE"}
    dg = ad.ad.demand_gen_multi_asset_ad
    assert ad.ad.name == m.key and enum(ad, "status") == "ENABLED"  # the paused campaign holds it back
    assert [h.text for h in dg.headlines] == ["Fresh look", "Hero 0", "Fresh every week"]
    assert (list(ad.ad.final_urls), dg.business_name, dg.call_to_action_text) == (["https://example.com/offer"], "Acme", "Sign up")  # fmt: skip
    assert [i.asset for i in dg.logo_images] == [ids["logo"]]
    (image,) = dg.marketing_images  # 512x268 is 1.91:1: landscape, scaled up to Google's 600x314 minimum
    assert fake.image_size[image.asset] == (600, 315)
    assert result["images"] == [{"slot": "MARKETING_IMAGE", "size": [600, 315]}]
    assert platform.find(m) == {k: result[k] for k in ("adset_id", "ad_id", "budget")}
    assert platform.apply(m)["ad_id"] == result["ad_id"]  # idempotent
    for kind in ("campaign", "campaign_budget", "ad_group", "ad_group_ad", "asset"):
        assert len(fake.named(kind, m.key)) == 1, kind


def test_a_failed_launch_leaves_nothing_behind(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = arm(ids)
    fake.faults.append(Fault("internal", method="Mutate"))
    with pytest.raises(TransientError) as err:
        platform.apply(m)
    assert isinstance(err.value.__cause__, core.InternalServerError)  # the client does not wrap INTERNAL
    assert all(not fake.named(kind, m.key) for kind in ("campaign", "campaign_budget", "asset", "ad_group_ad"))
    platform.apply(m)
    assert len(fake.named("campaign", m.key)) == 1


def test_a_launch_whose_answer_was_lost_is_adopted(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = arm(ids)
    fake.faults.append(Fault("lost", method="Mutate"))
    with pytest.raises(TransientError):
        platform.apply(m)  # made, but the answer never came
    result = platform.apply(m)
    assert len(fake.calls("Mutate")) == 1 and len(fake.named("campaign", m.key)) == 1
    assert result["adset_id"] == fake.named("campaign", m.key)[0].resource_name.rsplit("/", 1)[1]


def test_a_campaign_name_taken_by_something_else_is_refused(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = arm(ids)
    platform.apply(arm(ids, "v2", 4))
    (other,) = fake.named("campaign", arm(ids, "v2").key)
    fake.store["campaign"][other.resource_name].name = m.key  # a campaign with the key but no arm's ad
    with pytest.raises(PlatformError, match="DUPLICATE_CAMPAIGN_NAME") as err:
        platform.apply(m)
    assert isinstance(err.value.__cause__, GoogleAdsException) and err.value.context["request_id"]


def test_the_parents_bidding_must_be_copyable(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    camp = campaign_of(fake, ids["main"])
    camp.bidding_strategy_type = camp.DESCRIPTOR.fields_by_name["bidding_strategy_type"].enum_type.values_by_name["MANUAL_CPM"].number  # fmt: skip
    with pytest.raises(PlatformError, match="MANUAL_CPM"):
        platform.apply(arm(ids))
    assert not fake.calls("Mutate")


def test_set_budgets_enables_funded_arms_until_the_end_day_and_pauses_the_rest(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    a, b, c = (platform.apply(arm(ids, f"v{i}", i)) for i in (1, 2, 3))
    m = SetBudgets(
        key="cl:x:budgets", campaign="lead-gen",
        budgets=((a["adset_id"], 700), (b["adset_id"], 50), (c["adset_id"], 0)), end_day=date(2026, 1, 22),
    )  # fmt: skip
    result = platform.apply(m)
    assert result["below_minimum"] == [b["adset_id"]] and result["budgets"][b["adset_id"]] == 0
    ca, cb, cc = (campaign_of(fake, x["adset_id"]) for x in (a, b, c))
    assert (enum(ca, "status"), ca.end_date_time, fake.get(ca.campaign_budget).amount_micros) == (
        "ENABLED", "2026-01-22 23:59:59", 7_000_000,
    )  # fmt: skip
    assert enum(cb, "status") == enum(cc, "status") == "PAUSED"
    assert fake.calls("Mutate")[-1].partial_failure
    assert platform.find(m) is None  # budget updates are resent, not adopted
    platform.apply(m)
    assert fake.get(ca.campaign_budget).amount_micros == 7_000_000


def test_an_arm_under_googles_own_minimum_is_paused_and_the_minimum_learned(ids: dict[str, Any]) -> None:
    with FakeGoogleAds(min_daily_budget_micros=5_000_000) as fake:
        ids = seed_account(fake)
        p = make_platform(fake, ids, min_daily_budget_minor=0)
        fake.min_daily_budget_micros = 0
        a, b = (p.apply(arm(ids, f"v{i}", i)) for i in (1, 2))
        fake.min_daily_budget_micros = 5_000_000
        try:
            result = p.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 900))))  # fmt: skip
        finally:
            p.close()
        assert result["below_minimum"] == [a["adset_id"]] and result["min_daily_budget"] == 500
        assert enum(campaign_of(fake, a["adset_id"]), "status") == "PAUSED"
        assert enum(campaign_of(fake, b["adset_id"]), "status") == "ENABLED"


def test_a_launch_under_googles_minimum_learns_it_and_goes_through(ids: dict[str, Any]) -> None:
    with FakeGoogleAds(min_daily_budget_micros=5_000_000) as fake:
        ids = seed_account(fake)
        p = make_platform(fake, ids)  # our floor: 1.00
        try:
            result = p.apply(arm(ids))
        finally:
            p.close()
        assert fake.get(campaign_of(fake, result["adset_id"]).campaign_budget).amount_micros == 5_000_000
        assert [s.partial_failure for s in fake.calls("Mutate")] == [False, False]  # refused whole, then sent again


def test_budgets_are_never_set_on_a_campaign_that_is_not_an_arm(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    a = platform.apply(arm(ids))
    with pytest.raises(PlatformError, match="not test arms"):
        platform.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((a["adset_id"], 300), (ids["main"], 99999))))  # fmt: skip
    assert not [s for s in fake.calls("Mutate") if "update" in s.text]
    with pytest.raises(PlatformError, match="expected digits"):
        platform.apply(SetBudgets(key="b", campaign="lead-gen", budgets=(("1 OR 1=1", 300),)))


def test_pause_ads(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:
    r = platform.apply(arm(ids))
    platform.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((r["adset_id"], 300),)))
    assert (
        platform.apply(PauseAds(key="p", campaign="lead-gen", ad_ids=(r["ad_id"],), adset_ids=(r["adset_id"],))) == {}
    )
    assert enum(ad_of(fake, r["ad_id"]), "status") == enum(campaign_of(fake, r["adset_id"]), "status") == "PAUSED"


def test_scale_winner_goes_live_in_the_parent_ad_group_and_pauses_the_parent(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = ScaleWinner(key="cl:x:scale", campaign="lead-gen", parent_ad_id=ids["ads"][0], image=png_bytes(5, (1080, 1080)), headline="Pro")  # fmt: skip
    result = platform.apply(m)
    (mutate,) = fake.calls("Mutate")
    assert mutate.operations == 3 and not mutate.partial_failure  # asset, ad, parent paused: all or nothing
    ad = ad_of(fake, result["ad_id"])
    assert result["ad_id"].split("-")[0] == ids["ad_group"] and ad.ad.name == m.key and enum(ad, "status") == "ENABLED"
    assert fake.image_size[ad.ad.demand_gen_multi_asset_ad.square_marketing_images[0].asset] == (1080, 1080)
    assert enum(ad_of(fake, ids["ads"][0]), "status") == "PAUSED"
    assert platform.find(m) == {"ad_id": result["ad_id"]} and platform.apply(m)["ad_id"] == result["ad_id"]
    assert len(fake.named("ad_group_ad", m.key)) == 1


def test_scale_winner_finishes_when_the_parent_runs_again(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    m = ScaleWinner(key="cl:x:scale", campaign="lead-gen", parent_ad_id=ids["ads"][0], image=png_bytes(5), headline="Pro")  # fmt: skip
    fake.faults.append(Fault("lost", method="Mutate"))
    with pytest.raises(TransientError):
        platform.apply(m)
    parent = ad_of(fake, ids["ads"][0])
    parent.status = parent.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name["ENABLED"].number
    assert platform.find(m) is None  # the parent runs: not complete
    result = platform.apply(m)
    assert enum(ad_of(fake, ids["ads"][0]), "status") == "PAUSED" and len(fake.named("ad_group_ad", m.key)) == 1
    assert platform.find(m) == result


def test_images_are_fitted_to_a_slot() -> None:
    data, slot, w, h = fit_image(png_bytes(1, (640, 560)))  # 8:7: nearest square, centre-cropped
    assert (slot.field, w, h) == ("square_marketing_images", 560, 560)
    data, slot, w, h = fit_image(png_bytes(1, (700, 500)))  # 1.4: nearer 1.91:1, cropped to it
    assert (slot.field, w, h) == ("marketing_images", 700, 366)
    data, slot, w, h = fit_image(png_bytes(1, (512, 910)))  # 9:16, under 600x1067: scaled up
    assert slot.field == "tall_portrait_marketing_images" and (w, h) == (601, 1067)
    same = png_bytes(2, (600, 600))
    assert fit_image(same)[0] is same  # already fits: untouched
    with pytest.raises(PlatformError, match="not a readable image"):
        fit_image(b"<html>")
    portrait = ad_images(png_bytes(3, (512, 640)))  # 4:5: an ad also needs a landscape or square image
    assert [(f.slot.field, f.width, f.height) for f in portrait] == [
        ("portrait_marketing_images", 512, 640), ("square_marketing_images", 512, 512),
    ]  # fmt: skip


def test_a_portrait_variant_launches_with_a_square_of_itself(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    result = platform.apply(arm(ids, size=(512, 910)))
    dg = ad_of(fake, result["ad_id"]).ad.demand_gen_multi_asset_ad
    assert len(dg.tall_portrait_marketing_images) == len(dg.square_marketing_images) == 1
    assert fake.image_size[dg.tall_portrait_marketing_images[0].asset] == (601, 1067)
    assert fake.image_size[dg.square_marketing_images[0].asset] == (601, 601)


# -- the fake's rules, through the real client -------------------------------------------------------
def _mutate(platform: GoogleAdsPlatform, ops: list[Any], partial: bool = False) -> Any:
    req = platform.client.get_type("MutateGoogleAdsRequest")
    req.customer_id = platform.campaigns["lead-gen"].customer_id
    req.mutate_operations.extend(ops)
    req.partial_failure = partial
    platform._ensure_token()
    return platform.service.mutate(request=req)


def _budget_op(platform: GoogleAdsPlatform, name: str, micros: int, shared: bool = False, rn: str = "") -> Any:
    op = platform.client.get_type("MutateOperation")
    b = op.campaign_budget_operation.create
    b.name, b.amount_micros, b.explicitly_shared = name, micros, shared
    if rn:
        b.resource_name = rn
    return op


def _codes(exc: GoogleAdsException) -> list[str]:
    from connectors.google_ads.errors import failure_details

    return [d.code for d in failure_details(exc.failure)]


def test_the_fake_enforces_googles_rules(fake: FakeGoogleAds, platform: GoogleAdsPlatform) -> None:
    cust = fake.customer_id
    with pytest.raises(GoogleAdsException) as err:
        _mutate(platform, [_budget_op(platform, "odd", 1_234_567)])
    assert _codes(err.value) == ["campaign_budget_error.NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"]
    with pytest.raises(GoogleAdsException) as err:
        _mutate(platform, [_budget_op(platform, "x", 2_000_000, rn=f"customers/{cust}/campaignBudgets/abc")])
    assert _codes(err.value) == ["request_error.RESOURCE_NAME_MALFORMED"]
    op = platform.client.get_type("MutateOperation")
    c = op.campaign_operation.create
    c.resource_name, c.name, c.campaign_budget = f"customers/{cust}/campaigns/-2", "dg", f"customers/{cust}/campaignBudgets/-1"  # fmt: skip
    c.advertising_channel_type = platform.client.enums.AdvertisingChannelTypeEnum.DEMAND_GEN
    c.target_spend.SetInParent()
    with pytest.raises(GoogleAdsException) as err:  # a Demand Gen campaign on a shared budget
        _mutate(platform, [_budget_op(platform, "shared", 2_000_000, True, f"customers/{cust}/campaignBudgets/-1"), op])
    assert _codes(err.value) == ["campaign_error.CAMPAIGN_CANNOT_USE_SHARED_BUDGET"]
    assert not fake.named("campaign_budget", "shared")  # atomic: the budget did not stay either
    g = platform.client.get_type("MutateOperation")
    g.ad_group_operation.create.name, g.ad_group_operation.create.campaign = "g", f"customers/{cust}/campaigns/-2"
    with pytest.raises(GoogleAdsException) as err:  # no EU political advertising declaration on the campaign
        _mutate(
            platform, [_budget_op(platform, "own", 2_000_000, False, f"customers/{cust}/campaignBudgets/-1"), op, g]
        )
    assert _codes(err.value) == ["ad_group_error.MISSING_EU_POLITICAL_ADVERTISING_SELF_DECLARATION"]
    resp = _mutate(platform, [_budget_op(platform, "bad", 5), _budget_op(platform, "good", 3_000_000)], partial=True)
    assert not resp.mutate_operation_responses[0].campaign_budget_result.resource_name
    assert resp.mutate_operation_responses[1].campaign_budget_result.resource_name
    assert fake.named("campaign_budget", "good") and not fake.named("campaign_budget", "bad")
    assert resp.partial_failure_error.details  # the failures as a GoogleAdsFailure in a google.rpc.Status


def test_the_fake_refuses_an_image_of_the_wrong_shape(fake: FakeGoogleAds, platform: GoogleAdsPlatform, ids: dict[str, Any]) -> None:  # fmt: skip
    cust = fake.customer_id
    asset = platform._asset_op(cust, f"customers/{cust}/assets/-1", png_bytes(1, (640, 480)), "odd")
    parent = platform._parent(platform.campaigns["lead-gen"], ids["ads"][0], "lead-gen")
    ad = platform._ad_op(parent, f"customers/{cust}/adGroups/{ids['ad_group']}", "odd", [("marketing_images", f"customers/{cust}/assets/-1")], "h")  # fmt: skip
    with pytest.raises(GoogleAdsException) as err:
        _mutate(platform, [asset, ad])
    assert _codes(err.value) == ["image_error.ASPECT_RATIO_NOT_ALLOWED"]


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "expected", "cause"),
    [
        (Fault("quota"), RateLimited, core.ResourceExhausted),
        (Fault("internal"), TransientError, core.InternalServerError),
        (Fault("unavailable"), TransientError, core.ServiceUnavailable),
        (Fault("concurrent"), TransientError, GoogleAdsException),
        (Fault("auth"), AuthExpired, GoogleAdsException),
        (
            Fault(
                "custom", code="authorization_error.USER_PERMISSION_DENIED", status=grpc.StatusCode.PERMISSION_DENIED
            ),
            PlatformError,
            GoogleAdsException,
        ),  # fmt: skip
        (
            Fault("custom", code="quota_error.ACCESS_PROHIBITED", status=grpc.StatusCode.RESOURCE_EXHAUSTED),
            PlatformError,
            core.ResourceExhausted,
        ),  # fmt: skip
        (Fault("custom", code="query_error.BAD_FIELD_NAME"), PlatformError, GoogleAdsException),
    ],
    ids=lambda v: v.kind + (":" + v.code if v.code else "") if isinstance(v, Fault) else None,
)
def test_errors_translate_into_our_tree(fake: FakeGoogleAds, platform: GoogleAdsPlatform, fault: Fault, expected: type, cause: type) -> None:  # fmt: skip
    fake.faults.append(fault)
    with pytest.raises(expected) as err:
        platform.list_ads("lead-gen")
    assert type(err.value) is expected and isinstance(err.value.__cause__, cause)
    assert err.value.temporary == (expected in (RateLimited, TransientError))
    if fault.kind != "unavailable":
        assert err.value.context["request_id"].startswith("req-") and "." in err.value.context["error"]
    if expected is RateLimited:
        assert err.value.retry_after == 1
        assert platform.count("google_ads_throttled") == 1
    if expected is AuthExpired:
        assert "refresh token" in str(err.value)


def test_a_slow_answer_past_the_timeout_is_transient(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:
    p = make_platform(fake, ids, request_timeout=0.3)
    fake.faults.append(Fault("slow", delay=1.0))
    try:
        with pytest.raises(TransientError, match="DEADLINE_EXCEEDED") as err:
            p.list_ads("lead-gen")
        assert isinstance(err.value.__cause__, core.DeadlineExceeded)
    finally:
        p.close()


def test_the_manager_account_is_required(fake: FakeGoogleAds, ids: dict[str, Any]) -> None:
    p = make_platform(fake, ids, login_customer_id="")
    try:
        with pytest.raises(PlatformError, match="USER_PERMISSION_DENIED"):
            p.list_ads("lead-gen")
    finally:
        p.close()


def test_retries_only_what_google_calls_transient(fake: FakeGoogleAds, platform: GoogleAdsPlatform) -> None:
    sleeps: list[float] = []
    settings = RetrySettings(attempts=4, backoff=0.0, max_backoff=60.0, jitter=0.0)
    fake.faults += [Fault("quota"), Fault("internal"), Fault("unavailable")]
    assert len(call_with_retry(lambda: platform.list_ads("lead-gen"), settings, sleep=sleeps.append)) == 2
    assert sleeps == [1.0, 0.0, 0.0]  # the quota error's retry delay, then backoff
    fake.faults.append(Fault("custom", code="authorization_error.USER_PERMISSION_DENIED", times=None))
    seen = len(fake.seen)
    with pytest.raises(PlatformError):
        call_with_retry(lambda: platform.list_ads("lead-gen"), settings, sleep=sleeps.append)
    assert len(fake.seen) == seen + 1  # refused once, never retried


def test_counters_are_drained_and_the_rest_stored_on_close(fake: FakeGoogleAds, ids: dict[str, Any], sqlite_engine: Any) -> None:  # fmt: skip
    from storage.counters import read_all
    from storage.db import session as open_session

    p = make_platform(fake, ids)
    p.counters.engine = sqlite_engine
    p.list_ads("lead-gen")
    drained = p.drain_counters()
    assert ("google_ads_api_calls", {"method": "SearchStream"}, 1.0) in drained and p.drain_counters() == []
    p.restore_counters(drained)  # a tick that could not store them hands them back
    p.list_ads("lead-gen")
    p.close()
    with open_session(sqlite_engine) as s:
        counters = {(c.name, c.labels): c.value for c in read_all(s)}
    assert counters[("google_ads_api_calls", 'method="SearchStream",platform="google_ads"')] == 2


def test_gaql_literals_are_escaped() -> None:
    assert gaql.string("it's a \\ test") == "'it\\'s a \\\\ test'"
    assert gaql.like_prefix("cl:a_b%[c]:") == "'cl:a[_]b[%][[]c[]]:%'"
    with pytest.raises(ValueError, match="expected digits"):
        gaql.ids(["1", "2) OR (1=1"])
    assert (gaql.micros_to_minor(2_505_000, 2), gaql.micros_to_minor(2_504_999, 2), gaql.micros_to_minor(999, 0)) == (251, 250, 0)  # fmt: skip
    assert gaql.minor_to_micros(1234, 3) == 1_234_000 and gaql.currency_exponent("kwd") == 3


def test_logs_redact_google_oauth_and_developer_token_forms() -> None:
    from loop.logs import redact

    text = redact(
        f"refresh_token={REFRESH_TOKEN}&client_secret={CLIENT_SECRET} "
        f'{{"refresh_token": "{REFRESH_TOKEN}"}} developer-token: {DEVELOPER_TOKEN} ("developer-token", "{DEVELOPER_TOKEN}")'
    )
    assert REFRESH_TOKEN not in text and CLIENT_SECRET not in text and DEVELOPER_TOKEN not in text
    assert text.count("***") == 5
