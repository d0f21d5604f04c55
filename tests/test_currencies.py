"""Money in currencies whose minor unit is not the cent: JPY (none), KWD (three decimals).

The loop keeps money in each campaign currency's ISO 4217 minor unit; a yen
budget written as 2400 is 2,400 yen, never 240,000.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session

from connectors.ads.currencies import minor_digits
from loop.cli import main
from loop.config import load_config
from loop.plans import campaign_plans
from loop.web.queries import amount, money
from policies.errors import ConfigError
from policies.planning import plan_experiment
from storage.db import make_engine
from storage.ledger import Ledger
from storage.models import Campaign

from loop_helpers import SMALL_SCENARIO

YEN_CAMPAIGN = """
[[campaigns]]
id = "tokyo"
currency = "JPY"
test_spend_cap = 60000
credit_cap = 3000
test_daily_budget = 2400
fast_credit_cost = 3
pro_credit_cost = 90
min_arm_daily_budget = 150
"""

# The small scenario priced in yen: CPM, budgets, credits and caps in whole yen.
YEN_SCENARIO = (
    SMALL_SCENARIO.replace("cpm = 8.0", "cpm = 1200.0")
    .replace("test_daily_budget = 60.0", "test_daily_budget = 9000.0")
    .replace("test_spend_cap = 500.0", "test_spend_cap = 75000.0")
    .replace("fast_credit_cost = 0.02", "fast_credit_cost = 3.0")
    .replace("pro_credit_cost = 0.60", "pro_credit_cost = 90.0")
    .replace("credit_cap = 5.0", 'credit_cap = 750.0\ncurrency = "JPY"')
)


def test_minor_digits_follow_iso_4217() -> None:
    assert [minor_digits(c) for c in ("USD", "eur", "JPY", "KRW", "HUF", "KWD", "TND")] == [2, 2, 0, 0, 2, 3, 3]
    with pytest.raises(ValueError, match="unknown currency 'XYZ'"):
        minor_digits("XYZ")


def test_a_yen_campaign_is_planned_in_yen(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(YEN_CAMPAIGN + "[budget]\naccount_monthly_cap = 100000\n")
    (plan,) = campaign_plans(load_config(path))
    assert (plan.exponent, plan.test_daily_budget, plan.test_spend_cap) == (0, 2400, 60000)
    assert (plan.fast_credit_cost, plan.pro_credit_cost, plan.credit_cap) == (3, 90, 3000)
    assert (plan.min_arm_minor, plan.account_monthly_cap) == (150, 100000)
    path.write_text(YEN_CAMPAIGN.replace('"JPY"', '"KWD"').replace("= 2400", "= 12.345"))
    (plan,) = campaign_plans(load_config(path))
    assert (plan.exponent, plan.test_daily_budget, plan.min_arm_minor) == (3, 12345, 150_000)


def test_an_amount_below_one_minor_unit_or_an_unknown_currency_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(YEN_CAMPAIGN.replace("fast_credit_cost = 3", "fast_credit_cost = 0.02"))
    with pytest.raises(
        ConfigError, match=r"campaigns\[tokyo\]\.fast_credit_cost: 0\.02 is less than one minor unit of JPY"
    ):
        campaign_plans(load_config(path))
    path.write_text(YEN_CAMPAIGN.replace("min_arm_daily_budget = 150", "min_arm_daily_budget = 0.4"))
    with pytest.raises(  # an arm's floor under one yen would be 0: every arm "affordable" at no money
        ConfigError, match=r"campaigns\[tokyo\]\.min_arm_daily_budget: 0\.4 is less than one minor unit of JPY"
    ):
        campaign_plans(load_config(path))
    path.write_text(YEN_CAMPAIGN.replace('"JPY"', '"XYZ"'))
    with pytest.raises(ConfigError, match=r"campaigns\[tokyo\]\.currency: unknown currency 'XYZ'"):
        campaign_plans(load_config(path))


def test_money_is_shown_in_the_currency_s_decimals() -> None:
    assert money(240000, "JPY") == "240,000 JPY" and money(240000, "USD") == "2,400.00 USD"
    assert money(1234, "KWD") == "1.234 KWD" and money(-5, "KWD") == "-0.005 KWD"
    assert money(240000) == "2,400.00" and money(240000, "JPY", suffix=False) == "240,000"
    assert amount(240000, "JPY") == "240000" and amount(240005, "USD") == "2400.05" and amount(None) == "–"
    plan = plan_experiment(
        baseline_rate=0.01, cpm_minor=800, daily_budget_minor=2400, budget_left_minor=1000, max_days=14,
        max_arms=4, digits=0,
    )  # fmt: skip
    assert plan.reason == "test plan: 1,000 left cannot fund one day at 2,400"


def test_a_yen_scenario_simulates_in_yen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario in JPY: CPM, budgets and caps in yen; spend stays under the caps and is reported in yen."""
    yen = YEN_SCENARIO
    scenario = tmp_path / "yen.toml"
    scenario.write_text(yen)
    out = tmp_path / "out"
    assert main(["simulate", "--scenario", str(scenario), "--out", str(out), "--json", str(out / "r.json"), "-q"]) == 0
    (camp,) = json.loads((out / "r.json").read_text())["campaigns"]
    assert (camp["currency"], camp["test_spend_cap"], camp["credit_cap"]) == ("JPY", 75000, 750)
    assert 0 < camp["test_spend"] <= 75000 and camp["test_spend"] == int(camp["test_spend"])
    assert any(e["arms"] >= 2 for e in camp["experiments"])  # the yen budgets fund real tests
    scenario.write_text(yen.replace('currency = "JPY"', 'currency = "ABC"'))
    assert main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "o2"), "-q"]) == 2
    assert "unknown currency 'ABC'" in capsys.readouterr().err


def _yen_tick_config(tmp_path: Path, db_url: str, cap: str = "") -> Path:
    (tmp_path / "yen.toml").write_text(YEN_SCENARIO)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[loop]\ndatabase = "{db_url}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[simulated]\nscenario = "{tmp_path / "yen.toml"}"\n' + cap
    )
    return config


@pytest.mark.parametrize("ny_day", [date(2026, 1, 2), date(2025, 12, 31)])
def test_an_account_cap_never_adds_yen_to_dollars_in_the_ledger(
    tmp_path: Path, db_url: str, ny_day: date, capsys: pytest.CaptureFixture[str]
) -> None:
    """Config with one currency, but the ledger holds this month's dollars of a campaign no longer configured:
    the yen cap cannot add them up, so the tick refuses in one line (a past month's dollars do not matter)."""
    config = _yen_tick_config(tmp_path, db_url, "[budget]\naccount_monthly_cap = 100000\n")
    assert main(["spend", "--config", str(config)]) == 0  # migrates
    engine = make_engine(db_url)
    with Session(engine) as s:
        s.add(Campaign(id="ny", currency="USD", test_spend_cap_minor=100_000, credit_cap_minor=1_000))
        s.flush()
        Ledger(s).reserve("ny", "test", "k", 50_000, day=ny_day)  # $500.00: not 50,000 yen
        Ledger(s).settle("k", 50_000)
        s.commit()
    engine.dispose()
    capsys.readouterr()
    rc = main(["tick", "--config", str(config)])  # the simulated platform's first day: 2026-01-05
    err = capsys.readouterr().err
    if ny_day.month == 12:
        assert rc == 0, err
        return
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "budget.account_monthly_cap: the cap is in JPY" in err and "ny (USD)" in err


def _shop_money_in_dollars(db_url: str) -> None:
    """The ledger holds a credit of campaign "shop" in cents, from when it was a USD campaign."""
    engine = make_engine(db_url)
    with Session(engine) as s:
        s.add(Campaign(id="shop", currency="USD", test_spend_cap_minor=50_000, credit_cap_minor=500))
        s.flush()
        Ledger(s).reserve("shop", "credit", "c", 2, day=date(2025, 6, 1))
        s.commit()
    engine.dispose()


def test_a_campaign_s_currency_cannot_change_under_its_ledger(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its entries stay in the old currency's minor unit (cents): read as yen they would be 100 times too much."""
    config = _yen_tick_config(tmp_path, db_url)
    assert main(["spend", "--config", str(config)]) == 0
    _shop_money_in_dollars(db_url)
    capsys.readouterr()
    assert main(["tick", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "campaigns[shop].currency: JPY, but the ledger holds this campaign's money in USD" in err


def test_a_refused_campaign_does_not_stop_the_others(tmp_path: Path, db_url: str) -> None:
    """The currency check refuses one campaign: the tick still runs the others and records the round, then
    exits 2 with that one line (the daemon logs the line and goes on ticking)."""
    from sqlmodel import select

    from storage.models import DailyMetric, TickRun

    config = _yen_tick_config(tmp_path, db_url)
    other = SMALL_SCENARIO.split("[[campaigns]]", 1)[1].replace('id = "shop"', 'id = "blog"')
    other = other.replace('id = "hero"', 'id = "post"').replace('id = "steady"', 'id = "page"')
    scenario = tmp_path / "yen.toml"
    scenario.write_text(scenario.read_text() + "\n[[campaigns]]" + other)
    assert main(["spend", "--config", str(config)]) == 0
    _shop_money_in_dollars(db_url)
    engine = make_engine(db_url)
    for _ in range(2):
        assert main(["tick", "--config", str(config)]) == 2
    with Session(engine) as s:
        ingested = {m.creative_id.split(":")[0] for m in s.exec(select(DailyMetric)).all()}
        runs = s.exec(select(TickRun)).all()
    engine.dispose()
    assert any(c.startswith("blog") for c in ingested) and not any(c.startswith("shop") for c in ingested)
    assert runs and all(r.finished_at is not None and not r.ok and "shop" in r.error for r in runs)
