"""Contract tests: MetaAdPlatform (the real SDK) against the fake Graph API server on loopback."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date, timedelta
from typing import Any

import pytest
from facebook_business.adobjects.ad import Ad
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from fake_graph import TOKEN, FakeGraph, Fault, png_bytes, seed_account
from meta_helpers import FakeClock, make_platform

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets
from connectors.meta import MetaAdPlatform, MetaCampaign
from connectors.meta.insights import parse_row, to_minor
from connectors.meta.usage import GateSettings, parse_usage
from loop.logs import RedactingFilter
from policies.errors import AuthExpired, NotFound, PlatformError, RateLimited, TransientError

D0 = date(2026, 1, 1)


def arm(ids: dict[str, Any], label: str = "v1", seed: int = 3) -> LaunchTestArm:
    return LaunchTestArm(
        key=f"cl:lead-gen:hero:2026-01-20:{label}",
        campaign="lead-gen",
        parent_ad_id=ids["ads"][0],
        image=png_bytes(seed),
        headline="Fresh look",
    )


# -- safety ------------------------------------------------------------------------------
def test_no_process_globals_and_no_crash_reporter(platform: MetaAdPlatform) -> None:
    hook = sys.excepthook
    platform.list_ads("lead-gen")
    assert FacebookAdsApi.get_default_api() is None
    assert sys.excepthook is hook


def test_token_and_proof_travel_in_the_query_string_of_every_request(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    platform.list_ads("lead-gen")
    platform.apply(arm(ids))
    assert graph.seen and all("access_token=" in s.query or s.in_batch for s in graph.seen)
    assert all("appsecret_proof=" in s.query for s in graph.seen if not s.in_batch)


def test_token_never_reaches_the_logs(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    p = make_platform(graph, ids, clock)
    graph.stop()  # connection refused: requests puts the full URL (token included) in its message
    caplog.set_level(logging.DEBUG)
    logging.getLogger().addFilter(RedactingFilter())
    try:
        with pytest.raises(TransientError) as err:
            p.list_ads("lead-gen")
        logging.getLogger("creative_loop.test").exception("list_ads failed: %s", err.value)
    finally:
        logging.getLogger().removeFilter(RedactingFilter())
        p.close()
    assert TOKEN not in str(err.value)
    assert TOKEN not in str(err.value.__cause__)
    assert TOKEN not in caplog.text
    assert "list_ads failed" in caplog.text


# -- reads -------------------------------------------------------------------------------
def test_list_ads_reads_the_main_campaign(platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    ads = platform.list_ads("lead-gen")
    assert [a.ad_id for a in ads] == ids["ads"]
    assert {a.status for a in ads} == {"ACTIVE"}


def test_unknown_campaign_is_a_lookup_error(platform: MetaAdPlatform) -> None:
    with pytest.raises(NotFound):
        platform.list_ads("nope")


def test_insights_page_with_after_cursors(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    p = make_platform(graph, ids, clock, page_size=3)
    for d in range(5):
        graph.deliver(D0 + timedelta(days=d))
    rows = p.insights("lead-gen", D0, D0 + timedelta(days=4))
    p.close()
    assert len(rows) == 10
    pages = graph.calls("GET", "act_111/insights")
    assert len(pages) == 4  # 3 + 3 + 3 + 1 rows; no request after the page without `next`
    assert "after" not in pages[0].params and all("after" in s.params for s in pages[1:])
    first = pages[0].params
    assert first["level"] == "ad" and first["time_increment"] == "1"
    assert json.loads(first["time_range"]) == {"since": "2026-01-01", "until": "2026-01-05"}
    assert json.loads(first["filtering"])[0]["value"] == sorted([ids["main"], ids["test"]])
    assert "summary" not in first


def test_insights_numbers_and_late_attribution(graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    ad = ids["ads"][0]
    graph.set_row(ad, D0, impressions=1000, clicks=25, spend_minor=255, reach=900, frequency=1.11, conversions=3)
    (row,) = [r for r in platform.insights("lead-gen", D0, D0) if r.ad_id == ad]
    assert (row.impressions, row.clicks, row.spend_minor, row.conversions, row.reach) == (1000, 25, 255, 3, 900)
    assert row.frequency == pytest.approx(1.11)
    graph.set_row(ad, D0, impressions=1000, clicks=27, spend_minor=255, conversions=5)
    (row,) = [r for r in platform.insights("lead-gen", D0, D0) if r.ad_id == ad]
    assert (row.clicks, row.conversions) == (27, 5)


def test_spend_uses_the_account_currency_exponent() -> None:
    raw = {"ad_id": "1", "date_start": "2026-01-01", "spend": "2.505", "impressions": "10", "clicks": "1"}
    assert parse_row(raw, 2, "x").spend_minor == 251  # half up
    assert to_minor("1500", 0) == 1500
    raw["actions"] = [{"action_type": "lead", "value": "2"}, {"action_type": "other", "value": "9"}]
    assert parse_row(raw, 2, "lead").conversions == 2


@pytest.mark.parametrize("currency", ["JPY", "HUF", "TWD"])
def test_zero_decimal_currency_account(currency: str) -> None:
    """Meta's offset-1 currencies (not only JPY and KRW) send spend in whole units."""
    with FakeGraph(currency=currency) as graph:
        ids = seed_account(graph)
        p = make_platform(graph, ids, FakeClock())
        graph.set_row(ids["ads"][0], D0, impressions=100, clicks=1, spend_minor=1234)
        rows = p.insights("lead-gen", D0, D0)
        p.close()
    digits = {"JPY": 0, "HUF": 2, "TWD": 2}[currency]  # the loop's money: the ISO 4217 minor unit
    assert rows[0].spend_minor == 1234 * 10**digits
    acct = p.account(graph.account)
    assert (acct.exponent, acct.api_exponent) == (digits, 0)


def test_budgets_go_to_graph_in_its_unit_for_a_currency_without_cents_there() -> None:
    """HUF: the loop counts fillér (ISO 4217: 2 decimals), Graph takes whole forints (offset 1)."""
    with FakeGraph(currency="HUF") as graph:
        ids = seed_account(graph)  # the account's min_daily_budget: 100 forints
        p = make_platform(graph, ids, FakeClock())
        try:
            a, b = (p.apply(arm(ids, f"v{i}", i)) for i in (1, 2))
            assert graph.objects[a["adset_id"]]["daily_budget"] == 100  # paused at the minimum, in forints
            m = SetBudgets(
                key="cl:x:budgets:2026-01-21", campaign="lead-gen",
                budgets=((a["adset_id"], 150_099), (b["adset_id"], 9_999)),  # 1,500.99 and 99.99 HUF
            )  # fmt: skip
            result = p.apply(m)
            assert result["min_daily_budget"] == 10_000 and result["below_minimum"] == [b["adset_id"]]
            assert graph.objects[a["adset_id"]]["daily_budget"] == 1500  # rounded down: never above the reservation
            assert result["budgets"] == {a["adset_id"]: 150_000, b["adset_id"]: 0}  # what Graph was given, in fillér
            assert graph.objects[b["adset_id"]]["status"] == "PAUSED"
        finally:
            p.close()


def test_an_account_billing_in_another_currency_than_the_caps_is_refused() -> None:
    with FakeGraph(currency="JPY") as graph:
        ids = seed_account(graph)
        p = make_platform(graph, ids, FakeClock())
        p.campaigns["lead-gen"] = MetaCampaign("lead-gen", graph.account, ids["main"], ids["test"], "USD")
        try:
            with pytest.raises(
                PlatformError, match='bills in JPY, but campaign .lead-gen. caps are in USD: set its currency = "JPY"'
            ):
                p.insights("lead-gen", D0, D0)
            with pytest.raises(PlatformError, match="bills in JPY"):
                p.apply(arm(ids))
        finally:
            p.close()


def test_long_ranges_use_an_async_report_run(graph: FakeGraph, platform: MetaAdPlatform, clock: FakeClock) -> None:
    graph.run_polls = 3
    for d in range(30):
        graph.deliver(D0 + timedelta(days=d))
    rows = platform.insights("lead-gen", D0, D0 + timedelta(days=29))
    assert len(rows) == 60
    (post,) = graph.calls("POST", "act_111/insights")
    assert json.loads(post.params["fields"])[0] == "ad_id"  # the async POST sends fields as a JSON list
    assert len(graph.calls("GET", "/insights")) >= 1 and len(clock.sleeps) == 2  # polled 3 times, slept between


def test_a_failed_report_run_is_transient(graph: FakeGraph, platform: MetaAdPlatform) -> None:
    graph.fail_runs = True
    with pytest.raises(TransientError, match="Job Failed.*Report Failed \\(code -2\\)"):
        platform.insights("lead-gen", D0, D0 + timedelta(days=40))
    assert not [s for s in graph.calls("GET", "/insights") if s.path != "act_111/insights"]  # no result read


def test_a_report_run_s_result_is_read_only_once_it_is_complete(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    """The fake refuses a run's result before 'Job Completed' at 100 %: a connector that skips the polls fails."""
    from facebook_business.adobjects.adaccount import AdAccount

    graph.deliver(D0)
    run = AdAccount(graph.account, api=platform.api).get_insights(
        fields=["ad_id"], params={"level": "ad", "time_range": {"since": "2026-01-01", "until": "2026-01-01"}},
        is_async=True,
    )  # fmt: skip
    first = run.api_get(fields=["async_status", "async_percent_completion"])
    assert (first["async_status"], first["async_percent_completion"]) == ("Job Not Started", 0)
    with pytest.raises(FacebookRequestError, match="not ready"):
        list(run.get_result(params={"limit": 10}))
    assert run.api_get(fields=["async_status"])["async_status"] == "Job Completed"
    assert len(list(run.get_result(params={"limit": 10}))) == 2


def test_sync_insights_timeout_falls_back_to_async(graph: FakeGraph, platform: MetaAdPlatform) -> None:
    graph.deliver(D0)
    graph.faults.append(Fault(code=100, subcode=1504018, method="GET", path="act_111/insights"))
    assert len(platform.insights("lead-gen", D0, D0)) == 2
    assert graph.calls("POST", "act_111/insights")


def test_source_creative_reads_copy_and_downloads_the_image(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    src = platform.source_creative("lead-gen", ids["ads"][0])
    assert (src.headline, src.message, src.link, src.call_to_action) == (
        "Hero 0", "Get the offer", "https://example.com/offer", "SIGN_UP",
    )  # fmt: skip
    assert src.image == graph.images[ids["image"]["hash"]]


def test_source_creative_resolves_an_image_hash(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    creative = graph.objects[graph.objects[ids["ads"][1]]["creative_id"]]
    del creative["image_url"]
    src = platform.source_creative("lead-gen", ids["ads"][1])
    assert src.image == graph.images[ids["image"]["hash"]]
    assert graph.calls("GET", "act_111/adimages")


@pytest.mark.parametrize(
    ("options", "match"),
    [({"image_max_bytes": 1000}, "larger than"), ({"image_max_pixels": 1000}, "exceeds 1000 pixels")],
)
def test_image_download_limits(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, options: dict[str, Any], match: str
) -> None:
    p = make_platform(graph, ids, clock, **options)
    try:
        with pytest.raises(PlatformError, match=match):
            p.source_creative("lead-gen", ids["ads"][0])
    finally:
        p.close()


def test_image_download_checks_the_content_type(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    creative = graph.objects[graph.objects[ids["ads"][0]]["creative_id"]]
    graph.static["/page.html"] = ("text/html", b"<html>a login page</html>")
    creative["image_url"] = f"{graph.base_url}/page.html"
    with pytest.raises(PlatformError, match="expected one of image/"):
        platform.source_creative("lead-gen", ids["ads"][0])
    creative["image_url"] = f"{graph.base_url}/img/missing.png"
    platform._parents.clear()
    with pytest.raises(PlatformError, match="HTTP 404"):
        platform.source_creative("lead-gen", ids["ads"][0])


def test_source_creative_of_an_ad_outside_the_campaign(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    other = graph.add("campaign", name="other", account=graph.account)
    graph.objects[ids["ads"][1]]["campaign_id"] = other["id"]
    with pytest.raises(NotFound):
        platform.source_creative("lead-gen", ids["ads"][1])


# -- mutations ---------------------------------------------------------------------------------
def test_launch_creates_a_paused_arm_in_its_own_ad_set(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    m = arm(ids)
    assert platform.find(m) is None
    result = platform.apply(m)
    adset, ad = graph.objects[result["adset_id"]], graph.objects[result["ad_id"]]
    parent_adset = graph.objects[ids["adset"]]
    assert adset["name"] == ad["name"] == m.key
    assert adset["campaign_id"] == ids["test"] and adset["status"] == "PAUSED" and ad["status"] == "PAUSED"
    assert adset["targeting"] == parent_adset["targeting"]
    assert (adset["optimization_goal"], adset["billing_event"]) == ("LINK_CLICKS", "IMPRESSIONS")
    assert adset["daily_budget"] == 100  # the account minimum, while paused
    creative = graph.objects[ad["creative_id"]]
    link = creative["object_story_spec"]["link_data"]
    assert creative["name"] == m.key and creative["object_story_spec"]["page_id"] == "5550001"
    assert (link["link"], link["message"], link["name"], link["call_to_action"]["type"]) == (
        "https://example.com/offer", "Get the offer", "Fresh look", "SIGN_UP",
    )  # fmt: skip
    assert graph.images[link["image_hash"]] == m.image
    assert platform.find(m) == result
    assert platform.apply(m) == result  # idempotent
    assert len(graph.named("ad", m.key)) == len(graph.named("adset", m.key)) == len(graph.named("creative", m.key)) == 1


def test_launch_adopts_a_half_made_arm(graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    m = arm(ids)
    graph.faults.append(Fault(code=2, transient=True, status=500, method="POST", path="act_111/ads"))
    with pytest.raises(TransientError):
        platform.apply(m)  # ad set and creative made, the ad not
    assert platform.find(m) is None
    result = platform.apply(m)
    assert len(graph.named("adset", m.key)) == len(graph.named("creative", m.key)) == len(graph.named("ad", m.key)) == 1
    assert graph.objects[result["ad_id"]]["adset_id"] == graph.named("adset", m.key)[0]["id"]


def test_images_upload_as_bytes_and_as_a_multipart_filename(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any], tmp_path: Any
) -> None:
    from facebook_business.adobjects.adaccount import AdAccount

    platform.apply(arm(ids))
    (up,) = graph.calls("POST", "act_111/adimages")
    assert "bytes" in up.params
    path = tmp_path / "pic.png"
    path.write_bytes(png_bytes(9))
    img = AdAccount("act_111", api=platform.api).create_ad_image(params={"filename": str(path)})
    assert graph.images[img["hash"]] == png_bytes(9)
    assert any(o.get("name") == "pic.png" for o in graph.of_type("image"))


def test_set_budgets_activates_funded_arms_and_pauses_the_rest(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    a, b, c = (platform.apply(arm(ids, f"v{i}", i)) for i in (1, 2, 3))
    m = SetBudgets(
        key="cl:x:budgets:2026-01-21", campaign="lead-gen",
        budgets=((a["adset_id"], 700), (b["adset_id"], 50), (c["adset_id"], 0)), end_day=date(2026, 1, 22),
    )  # fmt: skip
    result = platform.apply(m)
    assert result["below_minimum"] == [b["adset_id"]]  # 0.50 < the account's 1.00 minimum: paused
    sa, sb, sc = (graph.objects[x["adset_id"]] for x in (a, b, c))
    assert (sa["status"], sa["daily_budget"], sa["end_time"]) == ("ACTIVE", 700, "2026-01-23T00:00:00+0000")
    assert sb["status"] == sc["status"] == "PAUSED"
    assert graph.objects[a["ad_id"]]["status"] == "ACTIVE"
    assert graph.objects[b["ad_id"]]["status"] == graph.objects[c["ad_id"]]["status"] == "PAUSED"
    assert platform.find(m) is None  # budget updates are resent, not adopted
    before = len(graph.seen)
    platform.apply(m)
    assert sa["daily_budget"] == 700 and len(graph.seen) > before


def test_ad_updates_go_in_batches_of_at_most_50(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    p = make_platform(graph, ids, clock)
    ads = [graph.add("ad", name=f"a{i}", account=graph.account, campaign_id=ids["test"], adset_id=ids["adset"],
                     creative_id="", status="ACTIVE")["id"] for i in range(120)]  # fmt: skip
    p.apply(PauseAds(key="k", campaign="lead-gen", ad_ids=tuple(ads)))
    p.close()
    batches = [s for s in graph.calls("POST") if s.path == ""]
    assert [len(json.loads(b.params["batch"])) for b in batches] == [50, 50, 20]
    assert all(graph.objects[a]["status"] == "PAUSED" for a in ads)
    assert p.count("meta_batch_items") == 120 and p.count("meta_api_calls") == 3


def test_a_batch_never_holds_two_ad_sets_of_one_campaign(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    arms = [platform.apply(arm(ids, f"v{i}", i)) for i in range(1, 5)]
    sent = len(graph.seen)
    platform.apply(
        SetBudgets(key="b", campaign="lead-gen", budgets=tuple((a["adset_id"], 300) for a in arms), end_day=D0)
    )
    rounds = [s for s in graph.seen[sent:] if not s.in_batch and s.method == "POST"]
    for r in rounds:
        items = json.loads(r.params["batch"]) if r.path == "" else [{"relative_url": r.path + "/"}]
        adsets = [i["relative_url"].split("/")[0] for i in items]
        adsets = [a for a in adsets if graph.objects[a]["type"] == "adset"]
        assert len(adsets) <= 1, adsets  # all four are in the one test campaign
    # 4 ad-set updates, one per request, the activations riding along: 4 rounds + 1 for the last ad
    assert len(rounds) == 5
    assert all(graph.objects[a["ad_id"]]["status"] == "ACTIVE" for a in arms)


def test_the_fake_refuses_what_meta_documents_it_refuses(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock
) -> None:
    """A connector told to pack ad sets of one campaign into a batch fails against the fake, as against Meta."""
    p = make_platform(graph, ids, clock, one_adset_per_campaign=False)
    try:
        a, b = p.apply(arm(ids, "v1", 1)), p.apply(arm(ids, "v2", 2))
        with pytest.raises(PlatformError, match="multiple ad sets under the same campaign"):
            p.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 300))))
        assert graph.objects[a["adset_id"]]["status"] == graph.objects[b["adset_id"]]["status"] == "PAUSED"
        graph.batch_grouping = False  # should a sandbox account show Meta accepts it, the switch packs them
        p.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 300))))
        assert graph.objects[a["ad_id"]]["status"] == graph.objects[b["ad_id"]]["status"] == "ACTIVE"
    finally:
        p.close()


def test_graph_refuses_batches_over_50(platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    batch = platform.api.new_batch()
    for _ in range(51):
        Ad(ids["ads"][0], api=platform.api).api_get(fields=["status"], batch=batch)
    with pytest.raises(FacebookRequestError, match="Maximum batch size is 50"):
        batch.execute()


def test_pause_ads(graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    r = platform.apply(arm(ids))
    platform.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((r["adset_id"], 300),)))
    assert (
        platform.apply(PauseAds(key="p", campaign="lead-gen", ad_ids=(r["ad_id"],), adset_ids=(r["adset_id"],))) == {}
    )
    assert graph.objects[r["ad_id"]]["status"] == graph.objects[r["adset_id"]]["status"] == "PAUSED"


def test_scale_winner_goes_live_in_the_parent_ad_set_and_pauses_the_parent(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    m = ScaleWinner(
        key="cl:x:scale", campaign="lead-gen", parent_ad_id=ids["ads"][0], image=png_bytes(5), headline="Pro"
    )
    result = platform.apply(m)
    ad = graph.objects[result["ad_id"]]
    assert ad["adset_id"] == ids["adset"] and ad["status"] == "ACTIVE" and ad["name"] == m.key
    assert graph.objects[ids["ads"][0]]["status"] == "PAUSED"
    assert platform.find(m) == result and platform.apply(m) == result
    assert len(graph.named("ad", m.key)) == 1


def test_scale_winner_finishes_a_half_done_scale(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    m = ScaleWinner(
        key="cl:x:scale", campaign="lead-gen", parent_ad_id=ids["ads"][0], image=png_bytes(5), headline="Pro"
    )
    graph.faults.append(
        Fault(code=2, transient=True, status=500, method="POST", path=ids["ads"][0])
    )  # pausing the parent
    with pytest.raises(TransientError):
        platform.apply(m)
    assert platform.find(m) is None  # not complete: the parent still runs
    result = platform.apply(m)
    assert graph.objects[ids["ads"][0]]["status"] == "PAUSED" and len(graph.named("ad", m.key)) == 1
    assert platform.find(m) == result


# -- errors --------------------------------------------------------------------------------------
BUC = "X-Business-Use-Case-Usage"


@pytest.mark.parametrize(
    ("fault", "expected", "code"),
    [
        (Fault(code=190, subcode=463, message="Error validating access token: Session has expired"), AuthExpired, 190),
        (Fault(code=4, subcode=1504022, transient=True), RateLimited, 4),
        (Fault(code=17, subcode=2446079, transient=True), RateLimited, 17),
        (Fault(code=32), RateLimited, 32),
        (Fault(code=613, subcode=1487742), RateLimited, 613),
        *[(Fault(code=c, subcode=2446079), RateLimited, c) for c in range(80000, 80015)],
        (Fault(code=1, subcode=99, status=500, transient=True), TransientError, 1),
        (Fault(code=2, status=500, transient=True), TransientError, 2),
        (Fault(status=502, html=True), TransientError, None),
        (Fault(code=100, subcode=33), PlatformError, 100),
        (Fault(code=10, status=403), PlatformError, 10),
        (Fault(code=200, status=403), PlatformError, 200),
        (Fault(code=294, status=403), PlatformError, 294),
        (Fault(code=368), PlatformError, 368),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_errors_translate_into_our_tree(
    graph: FakeGraph, platform: MetaAdPlatform, fault: Fault, expected: type, code: int | None
) -> None:
    fault.path = "/ads"
    graph.faults.append(fault)
    with pytest.raises(expected) as err:
        platform.list_ads("lead-gen")
    assert type(err.value) is expected
    if code is not None:
        assert err.value.context.get("code") == code
    assert err.value.temporary == (expected in (RateLimited, TransientError))
    assert err.value.__cause__ is not None
    if expected is AuthExpired:
        assert "access_token_env" in str(err.value)


def test_throttle_waits_the_estimated_time_to_regain_access(
    graph: FakeGraph, platform: MetaAdPlatform, clock: FakeClock
) -> None:
    usage = {"act_111": [{"type": "ads_management", "call_count": 100, "total_cputime": 40, "total_time": 30,
                          "estimated_time_to_regain_access": 7}]}  # fmt: skip
    graph.faults.append(Fault(code=80004, subcode=2446079, path="/ads", headers={BUC: json.dumps(usage)}))
    with pytest.raises(RateLimited) as err:
        platform.list_ads("lead-gen")
    assert err.value.retry_after == 7 * 60
    assert platform.count("meta_throttled", code="80004") == 1
    # The gate now refuses to send until access comes back: no retry storm.
    sent = len(graph.seen)
    with pytest.raises(RateLimited, match="usage gate") as gated:
        platform.list_ads("lead-gen")
    assert len(graph.seen) == sent and gated.value.retry_after == pytest.approx(420)
    clock.now += 421
    assert len(platform.list_ads("lead-gen")) == 2


def test_usage_headers_slow_down_then_pause(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    p = make_platform(graph, ids, clock, gate=GateSettings(slow_at=75, pause_at=90, max_slow_delay=2, pause=60,
                                                           max_inline_wait=120))  # fmt: skip
    graph.usage = {"X-App-Usage": {"call_count": 50, "total_cputime": 10, "total_time": 10}}
    p.list_ads("lead-gen")
    p.list_ads("lead-gen")
    assert clock.sleeps == []
    graph.usage = {"X-App-Usage": {"call_count": 85, "total_cputime": 10, "total_time": 10}}
    p.list_ads("lead-gen")
    p.list_ads("lead-gen")
    assert clock.sleeps == [pytest.approx(2 * 10 / 15)]
    graph.usage = {"X-Ad-Account-Usage": {"acc_id_util_pct": 95.5, "reset_time_duration": 30}}
    p.list_ads("lead-gen")
    p.list_ads("lead-gen")
    assert clock.sleeps[-1] == pytest.approx(60)  # paused, inline
    assert p.count("meta_usage_waits", how="paused") == 1
    p.close()


def test_a_throttled_answer_s_usage_does_not_outlive_the_pause(
    graph: FakeGraph, platform: MetaAdPlatform, clock: FakeClock
) -> None:
    """100 % on a throttling error pauses; answers without usage headers afterwards are not slowed by it."""
    usage = {"act_111": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 0}]}
    graph.faults.append(Fault(code=17, path="/ads$", headers={BUC: json.dumps(usage)}))
    with pytest.raises(RateLimited) as err:
        platform.list_ads("lead-gen")
    assert err.value.retry_after == pytest.approx(60)  # no estimate from Meta: the gate's pause
    clock.now += 61
    platform.list_ads("lead-gen")
    platform.list_ads("lead-gen")
    assert clock.sleeps == []


def test_usage_parsing() -> None:
    headers = {
        "x-business-use-case-usage": json.dumps(
            {"1": [{"type": "ads_insights", "call_count": 12, "total_time": 91, "estimated_time_to_regain_access": 2}]}
        ),  # fmt: skip
        "X-App-Usage": json.dumps({"call_count": 28, "total_cputime": 25, "total_time": 25}),
        "X-FB-Ads-Insights-Throttle": "not json",
    }
    u = parse_usage(headers)
    assert u is not None and (u.pct, u.regain_seconds, u.source) == (91, 120, "x-business-use-case-usage:ads_insights")
    assert parse_usage([{"name": "X-App-Usage", "value": '{"call_count": 5}'}]).pct == 5  # type: ignore[union-attr]
    assert parse_usage({}) is None


def test_batch_item_failures_are_recorded_by_severity(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    a, b = platform.apply(arm(ids, "v1", 1)), platform.apply(arm(ids, "v2", 2))
    graph.faults.append(Fault(code=368, path=b["adset_id"], message="blocked by policy"))
    with pytest.raises(PlatformError, match="blocked by policy") as err:
        platform.apply(SetBudgets(key="b", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 300))))
    assert err.value.code == 368
    assert "1 ad activation(s) held back" in str(err.value)
    assert graph.objects[a["adset_id"]]["status"] == graph.objects[a["ad_id"]]["status"] == "ACTIVE"  # the rest went
    # The failed ad set stays paused, and so does its ad: never an active ad in a paused ad set.
    assert graph.objects[b["adset_id"]]["status"] == graph.objects[b["ad_id"]]["status"] == "PAUSED"


def test_budgets_go_out_in_an_order_that_never_leaves_an_ad_active_in_a_paused_ad_set(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    a, b = platform.apply(arm(ids, "v1", 1)), platform.apply(arm(ids, "v2", 2))
    platform.apply(SetBudgets(key="d1", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 300))))
    sent = len(graph.seen)
    platform.apply(SetBudgets(key="d2", campaign="lead-gen", budgets=((a["adset_id"], 0), (b["adset_id"], 400))))
    posts = [(x.path, x.params.get("status")) for x in graph.seen[sent:] if x.method == "POST" and x.path]
    # a goes to 0: its ad is paused before its ad set
    assert posts.index((a["ad_id"], "PAUSED")) < posts.index((a["adset_id"], "PAUSED"))
    assert graph.objects[a["ad_id"]]["status"] == graph.objects[a["adset_id"]]["status"] == "PAUSED"
    # b is funded again: its ad set, already active with an active ad, is updated; nothing else
    assert (b["adset_id"], "ACTIVE") in posts and not [p for p in posts if p[0] == b["ad_id"]]
    sent = len(graph.seen)
    platform.apply(SetBudgets(key="d3", campaign="lead-gen", budgets=((a["adset_id"], 300), (b["adset_id"], 0))))
    posts = [(x.path, x.params.get("status")) for x in graph.seen[sent:] if x.method == "POST" and x.path]
    # a comes back: ad set first, then its ad
    assert posts.index((a["adset_id"], "ACTIVE")) < posts.index((a["ad_id"], "ACTIVE"))
    assert posts.index((b["ad_id"], "PAUSED")) < posts.index((b["adset_id"], "PAUSED"))
    for x in (a, b):
        ad, adset = graph.objects[x["ad_id"]], graph.objects[x["adset_id"]]
        assert not (ad["status"] == "ACTIVE" and adset["status"] != "ACTIVE")


def test_html_502_on_a_paged_read_is_transient(graph: FakeGraph, platform: MetaAdPlatform) -> None:
    """The SDK builds a cursor page from the HTML and fails on it: still an unreadable answer, retried."""
    graph.deliver(D0)
    graph.faults.append(Fault(status=502, html=True, method="GET", path="act_111/insights"))
    with pytest.raises(TransientError, match=r"unreadable response \(HTTP 502 text/html"):
        platform.insights("lead-gen", D0, D0)
    assert len(platform.insights("lead-gen", D0, D0)) == 2


def test_html_502_on_a_mutation_is_transient(graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    graph.faults.append(Fault(status=502, html=True, method="POST", path="act_111/adsets"))
    with pytest.raises(TransientError, match="unreadable response"):
        platform.apply(arm(ids))
    assert platform.apply(arm(ids))["ad_id"]


def test_counters_are_stored_when_an_engine_is_given(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, sqlite_engine: Any
) -> None:
    from storage.counters import read_all
    from storage.db import session as open_session

    p = make_platform(graph, ids, clock)
    p.counters.engine = sqlite_engine
    p.list_ads("lead-gen")
    p.list_ads("lead-gen")
    p.close()
    with open_session(sqlite_engine) as s:
        counters = {(c.name, c.labels): c.value for c in read_all(s)}
    assert counters[("meta_api_calls", 'method="GET",platform="meta"')] == 2


# -- configuration -------------------------------------------------------------------------------
def test_the_loop_builds_it_from_the_config(
    graph: FakeGraph, ids: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, sqlite_engine: Any
) -> None:
    """``[meta]`` and the campaigns on Meta, through the registry line (``loop.app.make_platform``)."""
    from loop.app import make_platform
    from loop.config import load_config
    from policies.errors import ConfigError

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    cfg_path = tmp_path / "c.toml"
    loop = '[loop]\nplatform = "meta"\n'
    campaign = f'[[campaigns]]\nid = "lead-gen"\naccount_id = "act_111"\ncampaign_id = "{ids["main"]}"\n'
    meta = f'[meta]\ngraph_url = "{graph.base_url}"\naccess_token_env = "T_TOKEN"\napp_secret_env = "T_SECRET"\nbatch_size = 20\n'
    cfg_path.write_text(loop + meta + campaign)
    monkeypatch.delenv("T_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="T_TOKEN") as err:
        make_platform(load_config(cfg_path), engine=sqlite_engine)
    assert err.value.key == "meta.access_token_env"
    monkeypatch.setenv("T_TOKEN", TOKEN)
    monkeypatch.setenv("T_SECRET", "fake-app-secret")
    with pytest.raises(ConfigError, match=r"campaigns\[0\]\.test_campaign_id"):
        make_platform(load_config(cfg_path), engine=sqlite_engine)
    cfg_path.write_text(loop + meta + campaign + f'test_campaign_id = "{ids["test"]}"\n')
    p = make_platform(load_config(cfg_path), engine=sqlite_engine)
    try:
        assert isinstance(p, MetaAdPlatform) and p.counters.engine is sqlite_engine
        assert p.options.batch_size == 20
        assert str(p.session.GRAPH) == graph.base_url
        assert [a.ad_id for a in p.list_ads("lead-gen")] == ids["ads"]
    finally:
        p.close()


def test_from_settings_takes_typed_settings_and_secrets(graph: FakeGraph, ids: dict[str, Any]) -> None:
    """The connector never reads the application config: settings, campaigns and secrets come in typed."""
    from connectors.meta import MetaCampaign
    from connectors.meta.settings import MetaSettings

    settings = MetaSettings(graph_url=graph.base_url, batch_size=7, page_id="5550001")
    campaigns = {"lead-gen": MetaCampaign("lead-gen", graph.account, ids["main"], ids["test"])}
    p = MetaAdPlatform.from_settings(settings, campaigns, access_token=TOKEN, app_secret="fake-app-secret", trust_env=False)  # fmt: skip
    try:
        assert p.options.batch_size == 7 and p.options.page_id == "5550001" and p.counters.engine is None
        assert [a.ad_id for a in p.list_ads("lead-gen")] == ids["ads"]
    finally:
        p.close()
