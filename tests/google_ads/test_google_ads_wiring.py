"""Wiring: the [google_ads] config, make_platform, doctor, `tick --dry-run`, and Meta and Google side by side."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_ads import CLIENT_ID, CLIENT_SECRET, DEVELOPER_TOKEN, MANAGER, REFRESH_TOKEN, FakeGoogleAds, seed_account
from sqlmodel import select

from connectors.ads.routing import RoutingAdPlatform
from connectors.google_ads import GoogleAdsPlatform
from loop.config import load_config
from policies.errors import ConfigError, NotFound

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "meta"))  # the fake Graph API server, for side by side

from fake_graph import APP_SECRET, TOKEN, FakeGraph  # noqa: E402
from fake_graph import seed_account as seed_meta  # noqa: E402

CAPS = "test_spend_cap = 200.0\ncredit_cap = 20.0\ntest_daily_budget = 24.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.6\n"  # fmt: skip
ENV = {
    "T_DEV": DEVELOPER_TOKEN, "T_CID": CLIENT_ID, "T_CSECRET": CLIENT_SECRET, "T_REFRESH": REFRESH_TOKEN,
    "T_META": TOKEN, "T_META_SECRET": APP_SECRET,
}  # fmt: skip


def google_section(fake: FakeGoogleAds, **extra: str) -> str:
    lines = {
        "customer_id": f'"{fake.customer_id[:3]}-{fake.customer_id[3:6]}-{fake.customer_id[6:]}"',
        "login_customer_id": f'"{MANAGER}"', "developer_token_env": '"T_DEV"', "client_id_env": '"T_CID"',
        "client_secret_env": '"T_CSECRET"', "refresh_token_env": '"T_REFRESH"', "endpoint": f'"{fake.endpoint}"',
        "token_uri": f'"{fake.token_uri}"', **extra,
    }  # fmt: skip
    return "[google_ads]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    db = tmp_path / "db.sqlite"
    path.write_text(f'[loop]\ndatabase = "sqlite:///{db}"\ndata_dir = "{tmp_path / "data"}"\n' + text)
    return path


def test_the_loop_builds_it_with_the_secrets_from_the_environment(
    fake: FakeGoogleAds, ids: dict[str, Any], tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = f'[[campaigns]]\nid = "shop"\ncampaign_id = "{ids["main"]}"\n{CAPS}'
    path = write(tmp_path, 'platform = "google_ads"\n' + google_section(fake) + campaign)
    monkeypatch.delenv("T_REFRESH")
    from loop.app import make_platform

    with pytest.raises(ConfigError, match="T_REFRESH") as err:
        make_platform(load_config(path))
    assert err.value.key == "google_ads.refresh_token_env"
    monkeypatch.setenv("T_REFRESH", REFRESH_TOKEN)
    p = make_platform(load_config(path))
    try:
        assert isinstance(p, GoogleAdsPlatform)
        assert p.campaigns["shop"].customer_id == fake.customer_id  # dashes dropped
        assert [a.ad_id for a in p.list_ads("shop")] == ids["ads"]
    finally:
        p.close()


@pytest.mark.parametrize(
    ("section", "campaign", "key", "problem"),
    [
        ({"customer_id": '"12345"'}, 'campaign_id = "1"\n', "google_ads.customer_id", "10-digit customer id"),
        ({"conversion_action": '"purchase"'}, 'campaign_id = "1"\n', "google_ads.conversion_action", "pattern"),
        ({"endpoint": '"https://x"'}, 'campaign_id = "1"\n', "google_ads.endpoint", "pattern"),
        ({}, "", "campaigns[0].campaign_id", "required when the campaign is on google_ads"),
        ({}, 'campaign_id = "12 OR 1"\n', "campaigns[0]", "expected digits"),
        ({"customer_id": '""'}, 'campaign_id = "1"\n', "google_ads.customer_id", "required by campaigns[0]"),
    ],
)
def test_bad_google_ads_settings_name_the_key(
    fake: FakeGoogleAds, tmp_path: Path, env: None, section: dict[str, str], campaign: str, key: str, problem: str
) -> None:
    from loop.app import make_platform

    path = write(tmp_path, 'platform = "google_ads"\n' + google_section(fake, **section) + f'[[campaigns]]\nid = "shop"\n{campaign}{CAPS}')  # fmt: skip
    with pytest.raises(ConfigError) as err:
        make_platform(load_config(path))
    assert err.value.key == key and problem in err.value.problem


def test_a_google_ads_campaign_reserves_twice_its_daily_budget(fake: FakeGoogleAds, tmp_path: Path) -> None:
    from loop.plans import campaign_plans

    path = write(tmp_path, 'platform = "google_ads"\n[defaults]\noverspend = 1.25\n' + f'[[campaigns]]\nid = "g"\ncampaign_id = "1"\n{CAPS}')  # fmt: skip
    (plan,) = campaign_plans(load_config(path))
    assert plan.settings.overspend == 2.0
    path = write(tmp_path, 'platform = "google_ads"\n[[campaigns]]\nid = "g"\ncampaign_id = "1"\ntest_spend_cap = 30.0\ncredit_cap = 5.0\ntest_daily_budget = 20.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.6\n')  # fmt: skip
    with pytest.raises(ConfigError, match="platform's daily overspend"):
        campaign_plans(load_config(path))


def test_per_campaign_platforms_need_a_real_loop_platform(tmp_path: Path) -> None:
    path = write(tmp_path, '[[campaigns]]\nid = "g"\nplatform = "google_ads"\n')
    with pytest.raises(ConfigError, match=r"campaigns\[0\]\.platform"):
        load_config(path)


def test_doctor_checks_the_google_ads_secrets_and_reads_the_account(
    fake: FakeGoogleAds, ids: dict[str, Any], tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loop.doctor import run_checks

    campaign = f'[[campaigns]]\nid = "shop"\ncampaign_id = "{ids["main"]}"\n{CAPS}'
    cfg = load_config(write(tmp_path, 'platform = "google_ads"\n' + google_section(fake) + campaign))
    checks = {c.name: c for c in run_checks(cfg)}
    assert checks["secrets"].ok and checks["secrets"].detail == "T_DEV, T_CID, T_CSECRET, T_REFRESH set"
    assert checks["platform"].ok and "campaign shop lists 2 ad(s)" in checks["platform"].detail
    monkeypatch.delenv("T_CSECRET")
    checks = {c.name: c for c in run_checks(cfg)}
    assert checks["secrets"].ok is False and "T_CSECRET (google_ads.client_secret_env)" in checks["secrets"].detail
    assert CLIENT_SECRET not in checks["secrets"].detail and checks["platform"].ok is None


def test_tick_dry_run_reads_for_real_and_prints_every_mutation(
    fake: FakeGoogleAds, tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI end to end: `tick --dry-run` against the fake API, dated by today's real date."""
    from loop.cli import main

    today = datetime.now(UTC).date()
    start = today - timedelta(days=26)
    fake.ctr = lambda ad, day: 0.02 * (0.9 ** max(0, (day - start).days - 16))
    ids = seed_account(fake, ads=1)
    for d in range(26):
        fake.deliver(start + timedelta(days=d))
    campaign = f'[[campaigns]]\nid = "shop"\ncampaign_id = "{ids["main"]}"\nvariants = 3\ndrafts = 5\n{CAPS}'
    path = write(tmp_path, 'platform = "google_ads"\napproval = "none"\nbackfill_days = 30\n' + google_section(fake) + campaign)  # fmt: skip
    code = main(["tick", "--dry-run", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fatigue detected: shop:" in out and "planned change(s), nothing sent" in out
    assert out.count("would: generate ") == 5  # the drafts the trait model will pick from (selection "model")
    assert fake.calls("SearchStream", "FROM ad_group_ad") and not fake.calls("Mutate")


# -- Meta and Google Ads side by side ------------------------------------------------------------------
START = date(2026, 1, 5)
ONSET = 16


def decaying(name: str, day: date) -> float:
    if name.startswith("cl:"):
        if name.endswith(":scale"):
            return 0.034
        return {"v1": 0.010, "v2": 0.032, "v3": 0.012, "v4": 0.011}[name.rsplit(":", 1)[1]]
    return 0.02 * (0.92 ** max(0, (day - START).days - ONSET))


def test_meta_and_google_campaigns_run_side_by_side(
    fake: FakeGoogleAds, tmp_path: Path, env: None, sqlite_engine: Any
) -> None:
    from loop.app import build_runtime, make_platform
    from loop.tick import tick
    from storage.db import session as open_session
    from storage.ledger import Ledger
    from storage.models import Experiment

    with FakeGraph(seed=11) as graph:
        graph.ctr = lambda ad, day: decaying(str(ad.get("name", "")), day)
        graph.cpm_minor = 200
        meta_ids = seed_meta(graph, ads=1)
        fake.ctr = lambda ad, day: decaying(ad.ad.name, day)
        google_ids = seed_account(fake, ads=1)
        # selection "first": the fakes' CTRs are scripted per arm label, v1-v4
        policy = 'variants = 4\nselection = "first"\nmin_impressions_per_arm = 1500\nburn_in_impressions = 500\nmax_test_days = 12\n'  # fmt: skip
        text = (
            'platform = "meta"\napproval = "none"\n'
            f'[meta]\ngraph_url = "{graph.base_url}"\naccess_token_env = "T_META"\napp_secret_env = "T_META_SECRET"\npage_id = "5550001"\n'
            + google_section(fake)
            + f'[[campaigns]]\nid = "m-shop"\naccount_id = "{graph.account}"\ncampaign_id = "{meta_ids["main"]}"\n'
            f'test_campaign_id = "{meta_ids["test"]}"\n{policy}{CAPS}'
            + f'[[campaigns]]\nid = "g-shop"\nplatform = "google_ads"\ncampaign_id = "{google_ids["main"]}"\n{policy}{CAPS}'
        )  # fmt: skip
        cfg = load_config(write(tmp_path, text))
        platform = make_platform(cfg)
        try:
            assert isinstance(platform, RoutingAdPlatform)
            assert [a.ad_id for a in platform.list_ads("g-shop")] == google_ids["ads"]
            assert [a.ad_id for a in platform.list_ads("m-shop")] == meta_ids["ads"]
            with pytest.raises(NotFound):
                platform.list_ads("nowhere")
            rt = build_runtime(cfg, engine=sqlite_engine, platform=platform)
            from connectors.retry import NO_WAIT

            rt.retry, rt.sleep = NO_WAIT, lambda s: None
            for d in range(ONSET):
                graph.deliver(START + timedelta(days=d))
                fake.deliver(START + timedelta(days=d))
            rt.backfill_days = ONSET
            scaled: set[str] = set()
            for d in range(ONSET, ONSET + 40):
                today = START + timedelta(days=d)
                report = tick(rt, today)
                assert not report.errors, report.errors
                scaled |= {t.split(":", 1)[0] for t in report.transitions if t.endswith("→ scaled")}
                if scaled == {"m-shop", "g-shop"}:
                    break
                rt.backfill_days = 7
                graph.deliver(today)
                fake.deliver(today)
        finally:
            platform.close()
        assert scaled == {"m-shop", "g-shop"}
        from storage.counters import read_all

        with open_session(sqlite_engine) as s:
            labels = {(c.name, c.labels) for c in read_all(s)}
        assert ("meta_api_calls", 'method="GET",platform="meta"') in labels
        assert ("google_ads_api_calls", 'method="SearchStream",platform="google_ads"') in labels
        with open_session(sqlite_engine) as s:
            by = {e.campaign_id: e for e in s.exec(select(Experiment)).all()}
            ledger = Ledger(s)
            for cid in ("m-shop", "g-shop"):
                assert by[cid].state == "scaled"
                state = ledger.state(cid, "test")
                assert state.spent + state.reserved <= state.cap
        # each campaign's arms went to its own platform, and only there
        assert {c.name.split(":")[1] for c in fake.store["campaign"].values() if c.name.startswith("cl:")} == {"g-shop"}
        assert {a["name"].split(":")[1] for a in graph.of_type("adset") if a["name"].startswith("cl:")} == {"m-shop"}


def test_routing_closes_every_platform_even_when_one_fails() -> None:
    from connectors.ads.simulated import SimulatedAdPlatform

    closed: list[str] = []

    class Failing(SimulatedAdPlatform):
        def __init__(self, name: str, fail: bool) -> None:
            self.label, self.fail = name, fail

        def close(self) -> None:
            closed.append(self.label)
            if self.fail:
                raise RuntimeError("boom")

    r = RoutingAdPlatform({"a": Failing("a", True), "b": Failing("b", False)}, {"x": "a", "y": "b"})
    with pytest.raises(RuntimeError):
        r.close()
    assert closed == ["a", "b"]
    with pytest.raises(ValueError, match="not given: c"):
        RoutingAdPlatform({"a": Failing("a", False)}, {"x": "c"})
