"""A creative id is the simulated platform's ad id: the same id in two campaigns is refused, not silently merged."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.ads.scenario import load_scenario
from loop.cli import main

CAMPAIGN = """
[[campaigns]]
id = "{id}"
daily_impressions = 20000
cpm = 8.0
test_daily_budget = 20.0
test_spend_cap = 300.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "{creative}"
ctr = 0.02
"""


def _scenario(tmp_path: Path, *creatives: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text("seed = 3\n" + "".join(CAMPAIGN.format(id=f"c{i}", creative=c) for i, c in enumerate(creatives)))
    return path


def test_the_same_creative_id_in_two_campaigns_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = _scenario(tmp_path, "hero", "hero")
    capsys.readouterr()
    code = main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "out"), "--quiet", "--days", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"creative-loop: {scenario}: campaigns[1].creatives[0].id: creative id 'hero'")
    assert "also used in campaign 'c0'" in err[0]
    assert not (tmp_path / "out" / "result.json").exists()


def test_distinct_ids_across_campaigns_each_get_their_own_delivery(tmp_path: Path) -> None:
    from connectors.ads.simulated import SimulatedAdPlatform

    platform = SimulatedAdPlatform(load_scenario(_scenario(tmp_path, "hero-a", "hero-b")))
    platform.run_day()
    for campaign in ("c0", "c1"):
        rows = platform.insights(campaign, platform.start, platform.start)
        assert len(rows) == 1 and rows[0].impressions > 0, campaign
    assert load_scenario(None).campaigns  # the bundled example stays valid
