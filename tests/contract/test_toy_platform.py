"""A platform registered from a test module runs a whole experiment through the loop.

``toy_platform`` registers the toy platform (one registry line) and nothing
in ``loop/`` names it: the config accepts ``platform = "toy"`` and its
``[toy]`` section, ``doctor`` checks its secret, and ``creative-loop tick``,
day after day, takes a fatigued ad through variants, a test and a winner to
scale.  The contract suite runs over it too (``test_platform_contract.py[toy]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import col, select
from toy_platform import ToyAdPlatform, ToySettings, variant_ctr

from connectors.ads.registry import PLATFORMS
from loop import events
from loop.cli import main
from loop.config import load_config
from policies.errors import ConfigError
from storage.db import make_engine
from storage.db import session as open_session
from storage.models import Arm, AuditEvent, Creative, Experiment

CAMPAIGN = """
[[campaigns]]
id = "shop"
test_spend_cap = 600.0
credit_cap = 20.0
test_daily_budget = 30.0
fast_credit_cost = 0.02
pro_credit_cost = 0.6
"""


def write_config(tmp_path: Path, toy: str = "") -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n'
        'platform = "toy"\napproval = "none"\nbackfill_days = 3\n'
        "[defaults]\nvariants = 3\nmin_impressions_per_arm = 500\nplan_lift = 1.0\n"
        f'[toy]\ntoken_env = "T_TOY_TOKEN"\n{toy}' + CAMPAIGN
    )
    return path


def test_the_config_takes_a_registered_platform_and_its_section(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "fatigue_onset_day = 5\n"))
    assert cfg.loop.platform == "toy" and "toy" in PLATFORMS
    settings = cfg.section("toy")
    assert isinstance(settings, ToySettings) and settings.fatigue_onset_day == 5
    bad = tmp_path / "bad.toml"
    bad.write_text(write_config(tmp_path).read_text().replace("[toy]\n", "[toy]\ncolour = 1\n"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert (
        err.value.key == "toy.colour"
        and "unknown key" in err.value.problem
        and "fatigue_onset_day" in err.value.problem
    )
    bad.write_text('[loop]\nplatform = "nope"\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert err.value.key == "loop.platform" and "unknown platform 'nope'" in err.value.problem
    assert "toy" in err.value.problem  # the registered names, the toy among them


def test_doctor_checks_the_registered_platforms_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    monkeypatch.delenv("T_TOY_TOKEN", raising=False)
    assert main(["doctor", "--config", str(path)]) == 1
    assert "T_TOY_TOKEN (toy.token_env)" in capsys.readouterr().out
    monkeypatch.setenv("T_TOY_TOKEN", "toy-token")
    assert main(["tick", "--dry-run", "--config", str(path)]) == 0  # migrates, reads, sends nothing
    assert main(["doctor", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok   platform    toy: campaign shop lists 2 ad(s)" in out and "all checks passed" in out


def test_a_whole_experiment_runs_on_the_toy_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """fatigue -> variants -> test -> winner -> scaled, one `creative-loop tick` per toy day."""
    monkeypatch.setenv("T_TOY_TOKEN", "toy-token")
    path = write_config(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        for _ in range(40):
            assert main(["tick", "--config", str(path)]) == 0, capsys.readouterr().err
            with open_session(engine) as s:
                if s.exec(select(Experiment).where(Experiment.state == "scaled")).first():
                    break
        with open_session(engine) as s:
            (exp,) = s.exec(select(Experiment)).all()
            assert exp.state == "scaled", (exp.state, exp.reason)
            names = [e.name for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()]
            arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
            winner = s.get(Creative, exp.winner_creative_id)
            assert winner is not None
            keys = {a.creative_id: a for a in arms}
    finally:
        engine.dispose()
    order = [events.FATIGUE_DETECTED, events.VARIANTS_GENERATED, events.ARMS_LAUNCHED, events.WINNER_DECLARED,
             events.WINNER_SCALED]  # fmt: skip
    assert [n for n in names if n in order] == order
    # The winner is the arm with the highest true CTR (the toy delivers exactly).
    state = json.loads((tmp_path / "data" / "toy-platform.json").read_text())
    true_ctr = {ad["ad_id"]: variant_ctr(ad["name"]) for ad in state["ads"].values() if ad["name"].startswith("cl:")}
    launched = {a.platform_ad_id: cid for cid, a in keys.items() if a.platform_ad_id in true_ctr}
    assert launched and launched[max(launched, key=lambda ad: true_ctr[ad])] == winner.id
    # On the platform: the fatigued ad is paused and the winner's pro render is live in its place.
    platform = ToyAdPlatform(ToySettings(), ("shop",), tmp_path / "data" / "toy-platform.json", "toy-token")
    live = {a.ad_id: a.status for a in platform.list_ads("shop")}
    assert live["shop-hero"] == "PAUSED" and live["shop-steady"] == "ACTIVE"
    assert [ad for ad, status in live.items() if status == "ACTIVE" and ad.startswith("toyad")]
