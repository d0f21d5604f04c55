"""The simulator's ``[realism]`` table and wear-out: each effect measured against its key (seeded, with margins)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from connectors.ads.base import LaunchTestArm, ScaleWinner, SetBudgets
from connectors.ads.scenario import load_scenario
from connectors.ads.simulated import SimulatedAdPlatform
from policies.errors import ConfigError

OFF = """
[realism]
ctr_overdispersion = 0.0
weekday_factors = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
impression_noise = 0.0
novelty_lift = 0.0
min_daily_budget = 0.0
"""


def scenario(tmp_path: Path, realism: str = "", creatives: int = 2, daily: int = 30_000, extra: str = "") -> Path:
    """A one-campaign scenario with ``creatives`` steady creatives at CTR 2 %."""
    ads = "".join(f'\n[[campaigns.creatives]]\nid = "c{i}"\nctr = 0.02\n' for i in range(creatives))
    text = f"""
seed = 5
days = 60
{realism}
[[campaigns]]
id = "shop"
daily_impressions = {daily}
cpm = 8.0
test_daily_budget = 60.0
test_spend_cap = 500.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0
{extra}
{ads}"""
    path = tmp_path / f"s{abs(hash(text))}.toml"
    path.write_text(text)
    return path


def deliver(path: Path, days: int) -> SimulatedAdPlatform:
    p = SimulatedAdPlatform(load_scenario(path))
    for _ in range(days):
        p.run_day()
    return p


def grid(p: SimulatedAdPlatform, days: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids = sorted({ad for ad, _ in p.rows})
    n = np.array([[p.rows[(a, d)].impressions for d in range(days)] for a in ids], dtype=float)
    c = np.array([[p.rows[(a, d)].clicks for d in range(days)] for a in ids], dtype=float)
    return ids, n, c


def test_realism_switched_off_draws_exactly_what_the_plain_simulator_draws(tmp_path):
    # The new noise comes from streams of its own: with every effect at 0 nothing moves.
    plain = deliver(scenario(tmp_path), 20)
    off = deliver(scenario(tmp_path, OFF), 20)
    assert off.rows == plain.rows


def test_ctr_noise_leaves_delivery_and_spend_alone(tmp_path):
    plain = deliver(scenario(tmp_path), 20)
    noisy = deliver(scenario(tmp_path, OFF.replace("ctr_overdispersion = 0.0", "ctr_overdispersion = 0.08")), 20)
    assert {k: (r.impressions, r.spend_minor) for k, r in noisy.rows.items()} == {
        k: (r.impressions, r.spend_minor) for k, r in plain.rows.items()
    }
    assert {k: r.clicks for k, r in noisy.rows.items()} != {k: r.clicks for k, r in plain.rows.items()}


def test_measured_overdispersion_matches_the_key(tmp_path):
    # 40 creatives x 60 days at ~50k impressions and 2 % CTR: binomial noise is small next to 8 %.
    realism = OFF.replace("ctr_overdispersion = 0.0", "ctr_overdispersion = 0.08")
    p = deliver(scenario(tmp_path, realism, creatives=40, daily=2_000_000), 60)
    _, n, c = grid(p, 60)
    expected = n * 0.02
    # Var(c) = n p (1 - p) + (n p)^2 tau^2 around the known true CTR; tau^2 = exp(sd^2) - 1.
    tau2 = (((c - expected) ** 2 - n * 0.02 * 0.98) / expected**2).mean()
    sd = float(np.sqrt(np.log1p(tau2)))
    assert sd == pytest.approx(0.08, abs=0.006)
    assert (c / n).mean() == pytest.approx(0.02, rel=0.01)  # the noise has mean 1: the CTR is unbiased


def test_measured_weekday_factors_match_the_key(tmp_path):
    factors = [1.06, 1.04, 1.02, 1.0, 0.98, 0.92, 0.9]
    realism = OFF.replace("[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]", str(factors))
    p = deliver(scenario(tmp_path, realism, creatives=20, daily=1_000_000), 56)
    _, n, c = grid(p, 56)
    weekday = np.array([(p.start + timedelta(days=d)).weekday() for d in range(56)])
    measured = [c[:, weekday == w].sum() / n[:, weekday == w].sum() / 0.02 for w in range(7)]
    assert measured == pytest.approx(factors, abs=0.01)
    assert p.start.weekday() == 0 and p.oracle_ctr("c0", 5) == pytest.approx(0.02 * 0.92)


def test_impression_noise_matches_the_key_and_keeps_the_mean(tmp_path):
    realism = OFF.replace("impression_noise = 0.0", "impression_noise = 0.15")
    days = 400
    p = deliver(scenario(tmp_path, realism, creatives=1, daily=50_000), days)
    totals = np.array([p.rows[("c0", d)].impressions for d in range(days)], dtype=float)
    assert np.log(totals).std(ddof=1) == pytest.approx(0.15, abs=0.015)
    assert totals.mean() == pytest.approx(50_000, rel=0.03)
    plain = deliver(scenario(tmp_path, creatives=1, daily=50_000), 5)
    assert {plain.rows[("c0", d)].impressions for d in range(5)} == {50_000}


def test_novelty_lifts_a_new_ads_first_days(tmp_path):
    realism = OFF.replace("novelty_lift = 0.0", "novelty_lift = 0.15\nnovelty_days = 2")
    p = deliver(scenario(tmp_path, realism, creatives=20, daily=2_000_000), 6)
    _, n, c = grid(p, 6)
    ctr = c.sum(axis=0) / n.sum(axis=0)
    assert ctr[:2] == pytest.approx([0.023, 0.023], rel=0.01)
    assert ctr[2:] == pytest.approx([0.02] * 4, rel=0.01)
    # counted from an ad's own first delivery: an arm launched later gets its lift then
    arm = p.apply(LaunchTestArm(key="cl:e:v1", campaign="shop", parent_ad_id="c0", image=b"x", lineage={}))
    p.apply(SetBudgets(key="b", campaign="shop", budgets=((arm["adset_id"], 2000),), end_day=p.today()))
    day = p.day
    p.run_day()
    base = p.ads[arm["ad_id"]].base_ctr
    assert p.oracle_ctr(arm["ad_id"], day) == pytest.approx(base * 1.15)
    assert p.oracle_ctr(arm["ad_id"], day + 2) == pytest.approx(base)


def test_budgets_under_the_minimum_are_refused_and_near_it_under_deliver(tmp_path):
    realism = OFF.replace("min_daily_budget = 0.0", "min_daily_budget = 2.0\nunderdelivery_below = 5.0")
    realism += "underdelivery_at_minimum = 0.6\n"
    p = SimulatedAdPlatform(load_scenario(scenario(tmp_path, realism)))
    arms = [
        p.apply(LaunchTestArm(key=f"cl:e:v{i}", campaign="shop", parent_ad_id="c0", image=b"x", lineage={}))
        for i in range(3)
    ]
    budgets = ((arms[0]["adset_id"], 150), (arms[1]["adset_id"], 400), (arms[2]["adset_id"], 2000))
    spend: dict[str, list[int]] = {a["ad_id"]: [] for a in arms}
    for _ in range(200):
        result = p.apply(SetBudgets(key=f"b{p.day}", campaign="shop", budgets=budgets, end_day=p.today()))
        assert result["below_minimum"] == [arms[0]["adset_id"]] and result["min_daily_budget"] == 200
        p.run_day()
        for r in p.insights("shop", p.today() - timedelta(days=1), p.today()):
            if r.ad_id in spend:
                spend[r.ad_id].append(r.spend_minor)
    assert spend[arms[0]["ad_id"]] == []  # refused like Meta does: the ad set sits out
    pacing = np.mean(np.minimum(1.25, np.random.default_rng(0).lognormal(0.0, 0.12, 100_000)))
    # at 2 minimums: 0.6 + 0.4 x (2 - 1) / (5 - 1) = 0.7 of the budget; at 10 minimums: all of it
    assert np.mean(spend[arms[1]["ad_id"]]) / 400 == pytest.approx(0.7 * pacing, rel=0.03)
    assert np.mean(spend[arms[2]["ad_id"]]) / 2000 == pytest.approx(pacing, rel=0.03)


WEAROUT = """
[[campaigns.creatives]]
id = "worn"
ctr = 0.02
wearout_frequency = 2.0
wearout_decay = 0.2
"""


def test_wearout_follows_cumulative_frequency(tmp_path):
    # 20k impressions a day to an audience of 100k: frequency 0.2 a day, 2.0 after day 9, past it after day 10.
    path = scenario(tmp_path, creatives=0, daily=20_000, extra="audience_size = 100000\n" + WEAROUT)
    p = deliver(path, 20)
    assert p.oracle_onset("worn") == 11
    assert p.oracle_ctr("worn", 10) == pytest.approx(0.02)
    assert p.oracle_frequency("worn", 15) == pytest.approx(3.0)
    assert p.oracle_ctr("worn", 15) == pytest.approx(0.02 * 0.8 ** (3.0 - 2.0))
    early = sum(p.rows[("worn", d)].clicks for d in range(10)) / 200_000
    late = sum(p.rows[("worn", d)].clicks for d in range(15, 20)) / 100_000
    assert early == pytest.approx(0.02, rel=0.05) and late < 0.8 * early
    # a successor wears out in turn, counting its own impressions
    done = p.apply(ScaleWinner(key="cl:e:scale", campaign="shop", parent_ad_id="worn", image=b"y", lineage={}))
    successor = p.ads[done["ad_id"]]
    assert (successor.wearout_frequency, successor.wearout_decay) == (2.0, 0.2)
    assert p.oracle_frequency(done["ad_id"], p.day) == 0.0


def test_wearout_needs_an_audience(tmp_path):
    path = scenario(tmp_path, creatives=1, extra=WEAROUT)
    with pytest.raises(ConfigError, match="audience_size is needed for wearout_frequency"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("realism", "match"),
    [
        ("[realism]\nweekday_factors = [1.0, 1.0]\n", r"realism\.weekday_factors"),
        ("[realism]\nweekday_factors = [1, 1, 1, 1, 1, 1, 0]\n", "weekday_factors must be 7 numbers in \\(0, 10\\)"),
        ("[realism]\nctr_overdispersion = -0.1\n", r"realism\.ctr_overdispersion"),
        ("[realism]\nnoise = 0.1\n", r"realism\.noise: unknown key \(allowed: ctr_overdispersion, weekday_factors"),
    ],
)
def test_bad_realism_keys_name_the_key(tmp_path, realism, match):
    with pytest.raises(ConfigError, match=match):
        load_scenario(scenario(tmp_path, realism))


def test_the_bundled_example_is_realistic():
    r = load_scenario().realism
    assert r is not None
    assert r.ctr_overdispersion == 0.08 and r.impression_noise == 0.15
    assert (r.novelty_days, r.novelty_lift) == (2, 0.15)
    assert max(r.weekday_factors) > 1.0 > min(r.weekday_factors)
