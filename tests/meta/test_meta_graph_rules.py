"""What real Graph does that a naive connector gets wrong, each against the fake server that enforces it.

Late-committing writes, ignored name filters, effective status, edges scoped
to their parent, Meta's own error explanations, and one log line per retry.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

import pytest
from fake_graph import TOKEN, FakeGraph, Fault, LateCommit, png_bytes
from meta_helpers import FakeClock, make_platform

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets
from connectors.meta import MetaAdPlatform
from connectors.retry import RetrySettings
from policies.errors import PlatformError, TransientError

KEY = "cl:lead-gen:hero:2026-01-20:v1"


def arm(ids: dict[str, Any], label: str = "v1", seed: int = 3) -> LaunchTestArm:
    return LaunchTestArm(
        key=f"cl:lead-gen:hero:2026-01-20:{label}", campaign="lead-gen", parent_ad_id=ids["ads"][0],
        image=png_bytes(seed), headline="Fresh look",
    )  # fmt: skip


def edge_reads(graph: FakeGraph, since: int = 0) -> list[str]:
    """Name lookups: reads of the ads, adsets and adcreatives edges."""
    return [
        s.path for s in graph.seen[since:]
        if s.method == "GET" and s.path.rsplit("/", 1)[-1] in ("ads", "adsets", "adcreatives")
    ]  # fmt: skip


# -- late-committing writes ------------------------------------------------------------------
ROLE_PATHS = {"adset": "act_111/adsets", "creative": "act_111/adcreatives", "ad": "act_111/ads$"}


@pytest.mark.parametrize("role", ["adset", "creative", "ad"])
@pytest.mark.parametrize("respond_after", [0.6, None], ids=["answered-late", "connection-dropped"])
def test_a_create_whose_answer_is_lost_is_settled_not_sent_twice(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, role: str, respond_after: float | None,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Graph carries the create out, answers after the client's timeout (or drops the connection),
    and shows the object only 3 s later: the connector looks it up by name until it appears."""
    graph.clock = clock  # visibility follows the platform's (fake) clock: the settle waits advance it
    graph.late.append(LateCommit(path=ROLE_PATHS[role], respond_after=respond_after, visible_after=3.0))
    p = make_platform(graph, ids, clock, timeout=0.3)
    caplog.set_level(logging.INFO, "creative_loop")
    try:
        p.remember(KEY, {}, fresh=True)
        result = p.apply(arm(ids))
    finally:
        p.close()
    type_ = {"adset": "adset", "creative": "creative", "ad": "ad"}[role]
    assert len(graph.named(type_, KEY)) == 1  # the late one was adopted, not duplicated
    assert len(graph.named("ad", KEY)) == len(graph.named("adset", KEY)) == len(graph.named("creative", KEY)) == 1
    assert result["ad_id"] == graph.named("ad", KEY)[0]["id"]
    assert p.objects(KEY)[role] == graph.named(type_, KEY)[0]["id"]
    assert sum(clock.sleeps) >= 3.0  # it waited for the commit, with backoff
    waits = [r.getMessage() for r in caplog.records if "looking it up by name again" in r.getMessage()]
    assert waits and all(KEY in w and " in " in w and "(lookup " in w for w in waits)
    assert any("adopting it" in r.getMessage() for r in caplog.records)


def test_a_late_copy_seen_after_a_recreate_is_archived_and_recorded(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock
) -> None:
    """Past the settle window the create is sent again; when the first copy shows up at last,
    the one in use is kept and the other archived, and the mutation's result says so."""
    graph.clock = clock
    graph.late.append(LateCommit(path="act_111/adsets", respond_after=0.6, visible_after=120.0))
    p = make_platform(graph, ids, clock, timeout=0.3, settle_timeout=4.0)
    try:
        p.remember(KEY, {}, fresh=True)
        with pytest.raises(TransientError, match="not visible after 4 s") as err:
            p.apply(arm(ids))
        assert err.value.temporary and err.value.context.get("ambiguous")
        assert len(graph.named("adset", KEY)) == 1  # nothing was re-sent inside the settle window
        result = p.apply(arm(ids))  # the retry: one more look, then a new ad set
        assert len(graph.named("adset", KEY)) == 2 and p.objects(KEY)["unsettled"] == ["adset"]
        clock.now += 300  # the first copy becomes visible
        other = p.apply(arm(ids, "v2", 2))
        budgets = p.apply(
            SetBudgets(key="b1", campaign="lead-gen", budgets=((result["adset_id"], 300), (other["adset_id"], 300)))
        )
    finally:
        p.close()
    (late,) = [a for a in graph.named("adset", KEY) if a["id"] != result["adset_id"]]
    assert late["status"] == "ARCHIVED"
    assert graph.objects[result["adset_id"]]["status"] == "ACTIVE"  # the one holding the ad was kept
    assert [a["id"] for a in graph.named("adset", KEY, live=True)] == [result["adset_id"]]
    assert budgets["archived"] == [{"role": "adset", "id": late["id"], "kept": result["adset_id"]}]
    assert p.objects(KEY)["archived"] == budgets["archived"] and "unsettled" not in p.objects(KEY)
    assert p.count("meta_duplicates_archived", role="adset") == 1


def test_two_ads_with_one_key_keep_the_recorded_one(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    """A duplicate ad found when budgets are set is archived, never activated."""
    p = make_platform(graph, ids, clock)
    try:
        r = p.apply(arm(ids))
        first = graph.objects[r["ad_id"]]
        dup = graph.add("ad", name=KEY, account=graph.account, campaign_id=ids["test"], adset_id=r["adset_id"],
                        creative_id=first["creative_id"], status="PAUSED")  # fmt: skip
        result = p.apply(SetBudgets(key="b1", campaign="lead-gen", budgets=((r["adset_id"], 300),)))
    finally:
        p.close()
    assert result["archived"] == [{"role": "ad", "id": dup["id"], "kept": r["ad_id"]}]
    assert graph.objects[r["ad_id"]]["status"] == "ACTIVE" and dup["status"] == "ARCHIVED"


def test_a_5xx_on_a_create_is_settled_and_an_unambiguous_refusal_is_not(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock
) -> None:
    p = make_platform(graph, ids, clock, settle_timeout=2.0)
    try:
        p.remember(KEY, {}, fresh=True)
        # the fake answers the 500 before doing anything: the settle lookups find nothing, then give up
        graph.faults.append(Fault(code=2, status=500, transient=True, method="POST", path="act_111/ads$"))
        with pytest.raises(TransientError, match="not visible after 2 s"):
            p.apply(arm(ids))
        looked = len(edge_reads(graph))
        assert looked >= 2 and clock.sleeps
        # a throttle is a definite "no": nothing to settle, and the retry creates without a look
        graph.faults.append(Fault(code=17, subcode=2446079, method="POST", path="act_111/ads$"))
        clock.now += 1000
        before = len(graph.seen)
        with pytest.raises(Exception, match="#17"):
            p.apply(arm(ids))
        assert len(edge_reads(graph, before)) == 1  # one look (the 500 left it unsettled), no settling
        clock.now += 1000
        before = len(graph.seen)
        p.apply(arm(ids))
        created = next(i for i, x in enumerate(graph.seen[before:]) if x.method == "POST" and x.path == "act_111/ads")
        assert edge_reads(graph, before + created) == [f"{ids['test']}/ads"]  # only the late-copy sweep, after
    finally:
        p.close()
    assert len(graph.named("ad", KEY)) == 1


# -- name lookups ------------------------------------------------------------------------------
def test_a_fresh_mutation_makes_no_lookup_and_few_calls(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock
) -> None:
    p = make_platform(graph, ids, clock)
    try:
        costs = []
        for i in (1, 2):
            m = arm(ids, f"v{i}", i)
            p.remember(m.key, {}, fresh=True)
            before, calls = len(graph.seen), p.count("meta_api_calls")
            p.apply(m)
            assert edge_reads(graph, before) == []
            costs.append(p.count("meta_api_calls") - calls)
    finally:
        p.close()
    # first arm: account, parent ad, its ad set and creative; then upload, ad set, creative, ad
    assert costs == [8, 4]


@pytest.mark.parametrize("ignore", [False, True], ids=["filter-honoured", "filter-ignored"])
@pytest.mark.parametrize("name_filter", [True, False], ids=["filter-sent", "filter-not-sent"])
def test_lookups_find_the_key_with_or_without_server_side_filtering(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, ignore: bool, name_filter: bool
) -> None:
    """A restart after a half-made arm: the new process finds the ad set and creative by name."""
    graph.ignore_filtering = ignore
    for i in range(230):  # three pages of someone else's creatives
        graph.add("creative", name=f"other {i}", account=graph.account)
    first = make_platform(graph, ids, clock, name_filter=name_filter)
    graph.faults.append(Fault(code=100, subcode=1487390, method="POST", path="act_111/ads$"))
    with pytest.raises(PlatformError):
        first.apply(arm(ids))
    first.close()
    second = make_platform(graph, ids, clock, name_filter=name_filter)  # no memory of the first
    try:
        before = len(graph.seen)
        result = second.apply(arm(ids))
    finally:
        second.close()
    assert len(graph.named("adset", KEY)) == len(graph.named("creative", KEY)) == len(graph.named("ad", KEY)) == 1
    assert graph.objects[result["ad_id"]]["creative_id"] == graph.named("creative", KEY)[0]["id"]
    pages = [s for s in graph.seen[before:] if s.path.endswith("adcreatives")]
    assert len(pages) == (3 if ignore or not name_filter else 1)  # bounded paging when the filter does not apply
    assert all(("filtering" in s.params) == name_filter for s in pages)


def test_the_record_s_ids_spare_every_lookup(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    first = make_platform(graph, ids, clock)
    graph.faults.append(Fault(code=100, subcode=1487390, method="POST", path="act_111/ads$"))
    with pytest.raises(PlatformError):
        first.apply(arm(ids))
    record = first.objects(KEY)  # what Runtime.perform stores on the mutation
    first.close()
    assert set(record) == {"adset", "creative"}
    second = make_platform(graph, ids, clock)
    try:
        second.remember(KEY, record, fresh=False)
        before = len(graph.seen)
        result = second.apply(arm(ids))
    finally:
        second.close()
    assert [s for s in edge_reads(graph, before) if not s.endswith("/ads")] == []  # only "is the ad there?"
    assert graph.objects[result["ad_id"]]["adset_id"] == record["adset"]
    assert len(graph.named("creative", KEY)) == 1


def test_a_lookup_reads_at_most_the_configured_pages(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    graph.ignore_filtering = True
    for i in range(500):
        graph.add("creative", name=f"other {i}", account=graph.account)
    p = make_platform(graph, ids, clock, lookup_max_pages=2)
    try:
        p._finder("creative", graph.account, KEY, "lead-gen")()
    finally:
        p.close()
    assert len([s for s in graph.seen if s.path.endswith("adcreatives")]) == 2


# -- effective status --------------------------------------------------------------------------
def test_only_effectively_active_ads_are_live(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    acct = graph.account
    paused_set = graph.add("adset", name="paused set", account=acct, campaign_id=ids["main"], status="PAUSED")
    creative = graph.objects[ids["ads"][0]]["creative_id"]

    def ad(name: str, **kw: Any) -> str:
        fields = {"account": acct, "campaign_id": ids["main"], "adset_id": ids["adset"], "creative_id": creative,
                  "status": "ACTIVE", **kw}  # fmt: skip
        return graph.add("ad", name=name, **fields)["id"]

    in_paused_set = ad("in a paused ad set", adset_id=paused_set["id"])
    disapproved = ad("disapproved", review="DISAPPROVED")
    issues = ad("with issues", review="WITH_ISSUES", issue="Image has too much text")
    archived = ad("archived", status="ARCHIVED")
    p = make_platform(graph, ids, clock)
    try:
        ads = {a.ad_id: a for a in p.list_ads("lead-gen")}
        assert {a for a, x in ads.items() if x.status == "ACTIVE"} == set(ids["ads"])
        assert ads[in_paused_set].reason == "ADSET_PAUSED" and ads[disapproved].reason == "DISAPPROVED"
        assert ads[issues].reason == "WITH_ISSUES: Image has too much text"
        assert archived not in ads
        graph.objects[ids["main"]]["status"] = "PAUSED"
        assert {a.reason for a in p.list_ads("lead-gen")} >= {"CAMPAIGN_PAUSED"}
        assert not [a for a in p.list_ads("lead-gen") if a.status == "ACTIVE"]
    finally:
        p.close()


# -- edges scoped to their parent ----------------------------------------------------------------
def test_edges_are_scoped_to_their_parent(graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]) -> None:
    from facebook_business.adobjects.ad import Ad
    from facebook_business.adobjects.adaccount import AdAccount
    from facebook_business.exceptions import FacebookRequestError

    api = platform.api
    with pytest.raises(FacebookRequestError, match="nonexisting field \\(adcreatives\\) on node type \\(Campaign\\)"):
        api.call("GET", (ids["main"], "adcreatives"), params={"fields": "id"})
    with pytest.raises(FacebookRequestError, match="cannot create ads on node type \\(Campaign\\)"):
        api.call("POST", (ids["main"], "ads"), params={"name": "x"})
    other = graph.add("campaign", name="elsewhere", account="act_999")
    with pytest.raises(FacebookRequestError, match="does not exist"):
        AdAccount(graph.account, api=api).create_ad_set(
            params={
                "name": "x",
                "campaign_id": other["id"],
                "daily_budget": 500,
                "status": "PAUSED",
                "targeting": {"geo_locations": {"countries": ["US"]}},
            }  # fmt: skip
        )
    graph.set_row(ids["ads"][0], date(2026, 1, 1), impressions=10, clicks=1)
    graph.set_row(ids["ads"][1], date(2026, 1, 1), impressions=20, clicks=2)
    rows = list(Ad(ids["ads"][1], api=api).get_insights(fields=["ad_id", "impressions"], params={"level": "ad"}))
    assert [r["ad_id"] for r in rows] == [ids["ads"][1]]


# -- Meta's explanation, all the way to the record ---------------------------------------------
def test_meta_s_own_explanation_reaches_the_error_and_the_mutation_record(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, engine: Any, tmp_path: Any
) -> None:
    from sqlmodel import select

    from connectors.images.procedural import ProceduralGenerator
    from loop.runtime import Runtime
    from storage.db import session as open_session
    from storage.images import ImageStore
    from storage.models import Campaign, PlatformMutation

    del graph.objects[ids["adset"]]["targeting"]["geo_locations"]  # Meta will refuse the copied targeting
    p = make_platform(graph, ids, clock)
    rt = Runtime(engine=engine, platform=p, generators={"procedural": ProceduralGenerator()},
                 images=ImageStore(tmp_path / "img"), plans=[], sleep=clock.sleep)  # fmt: skip
    try:
        with open_session(engine) as s:
            s.add(Campaign(id="lead-gen"))
            s.commit()
            with pytest.raises(PlatformError) as err:
                rt.perform(s, arm(ids))
            rec = s.exec(select(PlatformMutation)).one()
    finally:
        p.close()
    text = str(err.value)
    assert "(#100/1885364) Invalid parameter -- Invalid targeting spec: The targeting spec is invalid" in text
    assert "HTTP 400" in text and "fbtrace_id AfakeTrace" in text and TOKEN not in text
    assert err.value.context["user_title"] == "Invalid targeting spec" and err.value.context["fbtrace_id"]
    assert rec.status == "failed" and rec.error == text
    assert rec.objects == {}  # the ad set was refused: nothing to adopt


# -- every retry says why --------------------------------------------------------------------------
def test_every_retry_logs_what_why_the_wait_and_the_attempt(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, sqlite_engine: Any, tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from connectors.images.procedural import ProceduralGenerator
    from loop.runtime import Runtime
    from storage.images import ImageStore

    p = make_platform(graph, ids, clock, timeout=0.3)
    rt = Runtime(engine=sqlite_engine, platform=p, generators={"procedural": ProceduralGenerator()},
                 images=ImageStore(tmp_path / "img"), plans=[], sleep=clock.sleep,
                 retry=RetrySettings(attempts=5, backoff=1.0, max_backoff=120.0, jitter=0.0))  # fmt: skip
    graph.faults += [
        Fault(code=17, subcode=2446079, path="/ads$", message="User request limit reached"),
        Fault(status=502, html=True, path="/ads$"),
    ]
    graph.late.append(LateCommit(path="/ads$", method="GET", respond_after=0.6))
    caplog.set_level(logging.INFO, "creative_loop")
    try:
        ads = rt.call(lambda: p.list_ads("lead-gen"), "list ads of lead-gen")
    finally:
        p.close()
    assert len(ads) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "creative_loop.retry"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("retrying list ads of lead-gen in 60.0 s (attempt 2 of 5): RateLimited, code 17/2446079")
    assert lines[1].startswith("retrying list ads of lead-gen in 2.0 s (attempt 3 of 5): TransientError, HTTP 502")
    assert "HTTP 502 text/html" in lines[1]
    assert lines[2].startswith("retrying list ads of lead-gen in 4.0 s (attempt 4 of 5): TransientError: ")
    assert "ReadTimeout" in lines[2]
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


def test_scale_winner_settles_a_lost_create_too(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    graph.clock = clock
    graph.late.append(LateCommit(path="act_111/ads$", respond_after=None, visible_after=2.0))
    m = ScaleWinner(key="cl:x:scale", campaign="lead-gen", parent_ad_id=ids["ads"][0], image=png_bytes(5))
    p = make_platform(graph, ids, clock, timeout=0.3)
    try:
        result = p.apply(m)
    finally:
        p.close()
    assert len(graph.named("ad", m.key)) == 1 and graph.objects[result["ad_id"]]["status"] == "ACTIVE"


# -- batches: calls Graph did not run, statuses outside the enum -------------------------------------
def test_a_batch_call_graph_did_not_run_is_sent_again(
    graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Graph answers ``null`` for a call it did not run: the connector resends those calls, and only those."""
    first, second = ids["ads"]
    graph.faults.append(Fault(not_run=True, method="POST", path=first))
    p = make_platform(graph, ids, clock)
    caplog.set_level(logging.INFO, "creative_loop")
    try:
        p.apply(PauseAds(key="p1", campaign="lead-gen", ad_ids=(first, second)))
    finally:
        p.close()
    assert graph.objects[first]["status"] == graph.objects[second]["status"] == "PAUSED"
    sent = [json.loads(s.params["batch"]) for s in graph.calls("POST") if s.path == ""]
    assert [[i["relative_url"].split("/")[0] for i in b] for b in sent] == [[first, second], [first]]
    assert any("1 of 2 requests were not run" in r.getMessage() for r in caplog.records)


def test_batch_calls_never_run_are_a_transient_failure(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> None:
    first, second = ids["ads"]
    graph.faults.append(Fault(not_run=True, method="POST", path=first, times=None))
    p = make_platform(graph, ids, clock)
    try:
        with pytest.raises(TransientError, match="some requests were not run"):
            p.apply(PauseAds(key="p1", campaign="lead-gen", ad_ids=(first, second)))
    finally:
        p.close()
    assert graph.objects[first]["status"] == "ACTIVE" and graph.objects[second]["status"] == "PAUSED"
    assert len([s for s in graph.calls("POST") if s.path == ""]) == 3  # the first try and two resends


def test_a_status_outside_graph_s_enum_is_refused(
    graph: FakeGraph, platform: MetaAdPlatform, ids: dict[str, Any]
) -> None:
    """The SDK only warns about a status it does not know (``api_update``); Graph refuses it."""
    from facebook_business.exceptions import FacebookRequestError

    with pytest.raises(FacebookRequestError, match="Param status must be one of") as err:
        platform.api.call("POST", (ids["ads"][0],), params={"status": "ENABLED"})  # Google's word, not Meta's
    assert err.value.api_error_code() == 100
    assert graph.objects[ids["ads"][0]]["status"] == "ACTIVE"
