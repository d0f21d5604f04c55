"""Creative insights through the loop: traits stored, drafts chosen by the model, the CLI and the dashboard page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import col, select

from storage.db import session as open_session
from storage.models import Arm, AuditEvent, Creative, Experiment, PlatformMutation

from loop_helpers import make_runtime, run_days

# Two creatives that tire early, so that the second selection already learns from the first decided test.
TRAIT_SCENARIO = """
seed = 5
days = 60
[variants]
lift_mu = 0.0
lift_sigma = 0.2
pro_lift = 0.10
trait_sigma = 0.15

[[campaigns]]
id = "shop"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 60.0
test_spend_cap = 2000.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 10.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.02
fatigue_onset_day = 8
fatigue_decay_per_day = 0.06
headline = "Fresh deals"

[[campaigns.creatives]]
id = "promo"
ctr = 0.015
fatigue_onset_day = 22
fatigue_decay_per_day = 0.06
headline = "Two for one"

[[campaigns.creatives]]
id = "steady"
ctr = 0.012
"""
DAYS = 50
FAMILIES = {"aspect", "zoom", "grade", "brightness", "contrast", "band", "band_colour", "cta"}


def _scenario(folder: Path) -> Path:
    path = folder / "traits.toml"
    path.write_text(TRAIT_SCENARIO)
    return path


def test_the_model_picks_the_drafts_and_learns_from_decided_tests(engine, tmp_path):
    """End to end (SQLite and PostgreSQL): traits stored, 24 fast drafts, the model's picks launched, the rest never uploaded."""
    rt = make_runtime(engine, tmp_path, _scenario(tmp_path))
    run_days(rt, DAYS)
    with open_session(engine) as s:
        exps = s.exec(select(Experiment).order_by(col(Experiment.created_at))).all()
        tested = [e for e in exps if s.exec(select(Arm).where(Arm.experiment_id == e.id)).first() is not None]
        assert len(tested) >= 2, [(e.id, e.state, e.reason) for e in exps]
        keys = {m.key: m for m in s.exec(select(PlatformMutation)).all()}
        picks = []
        for exp in tested:
            drafts = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "draft")).all()
            assert len(drafts) == 24 and all(set(d.traits) == FAMILIES for d in drafts)
            arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all()
            (event,) = s.exec(
                select(AuditEvent).where(AuditEvent.experiment_id == exp.id, AuditEvent.name == "DraftsSelected")
            ).all()
            labels = {a.creative_id.rsplit(":", 1)[1] for a in arms}
            assert event.data["strategy"] == "model" and set(event.data["chosen"]) == labels
            assert len(arms) == exp.plan["arms"] == event.data["arms"] and event.data["candidates"] == 24
            for d in drafts:
                launched = keys.get(f"cl:{exp.id}:{d.label}")
                if d.label in labels:
                    assert launched is not None and launched.payload["lineage"]["traits"] == d.traits
                else:  # untested: kept in the gallery, never uploaded
                    assert d.status == "untested" and d.platform_ad_id is None and launched is None and d.image_hash
            picks.append(event.data)
        # The first selection had nothing to learn from; a later one learnt from the decided tests before it.
        assert picks[0]["model_variants"] == 0
        assert max(p["model_variants"] for p in picks[1:]) >= 2
        # Extra drafts cost fast-tier credits only (0.02 each in the scenario).
        from storage.models import LedgerEntry

        for exp in tested:
            drafts = s.exec(
                select(LedgerEntry).where(
                    LedgerEntry.account == "credit",
                    LedgerEntry.experiment_id == exp.id,
                    col(LedgerEntry.key).startswith(f"credit:{exp.id}:v"),
                )
            ).all()
            assert {e.amount_minor for e in drafts if e.kind == "reserve"} == {2}
            assert len({e.key for e in drafts}) == 24


def test_insights_fit_the_tested_variants(engine, tmp_path):
    from loop.insights import insights, sentence, trait_data

    rt = make_runtime(engine, tmp_path, _scenario(tmp_path))
    run_days(rt, DAYS)
    with open_session(engine) as s:
        data = trait_data(s, ["shop"])
        (account,) = insights(s, rt.plans)
        again = insights(s, rt.plans)[0]
    assert len(data) >= 2 and account.posterior.variants == len(data)
    assert [sentence(e) for e in account.effects] == [sentence(e) for e in again.effects]  # seeded: repeatable
    by_family: dict[str, int] = {}
    for e in account.effects:
        by_family[e.family] = by_family.get(e.family, 0) + e.variants
        assert e.lo <= e.mean <= e.hi
    assert by_family and all(n == len(data) for n in by_family.values())  # one level per family per variant


# -- the command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose SQLite database the loop filled over the trait scenario (model selection)."""
    from storage.db import make_engine, migrate

    folder = tmp_path_factory.mktemp("insights")
    scenario = _scenario(folder)
    engine = make_engine(f"sqlite:///{folder / 'loop.db'}")
    migrate(engine)
    run_days(make_runtime(engine, folder, scenario), DAYS)
    engine.dispose()
    path = folder / "creative-loop.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///{folder / "loop.db"}"\ndata_dir = "{folder / "data"}"\n'
        f'[simulated]\nscenario = "{scenario}"\n'
    )
    return path


def test_cli_prints_one_sentence_per_tried_trait(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loop.cli import main

    assert main(["insights", "--config", str(filled)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("account (shop): ") and "tested variants from" in out[0] and "% CTR [" in out[0]
    lines = [line for line in out if line.startswith("  ") and "% CTR [" in line]
    assert lines and all(line.rstrip().split(" · ")[0].endswith(("variant", "variants")) for line in lines)
    assert any(" grade: " in line for line in lines) and any(line.startswith("  CTA “") for line in lines)
    assert out[-1].startswith("effects are against the average variant")
    # Seeded: the same database gives the same lines.
    assert main(["insights", "--config", str(filled)]) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_cli_json_and_one_campaign(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loop.cli import main

    assert main(["insights", "--config", str(filled), "--campaign", "shop", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (account,) = doc["accounts"]
    assert doc["campaign"] == "shop" and account["campaigns"] == ["shop"] and account["level"] == 0.9
    assert account["variants"] >= 2 and account["experiments"] >= 1
    traits = account["traits"]
    assert {"family", "value", "effect_pct", "lo_pct", "hi_pct", "variants", "reliable", "sentence"} <= set(traits[0])
    for t in traits:
        assert t["lo_pct"] <= t["effect_pct"] <= t["hi_pct"] and t["sentence"].endswith(("variant", "variants"))
        assert t["reliable"] == (t["lo_pct"] > 0 or t["hi_pct"] < 0)
    per_family: dict[str, int] = {}
    for t in traits:
        per_family[t["family"]] = per_family.get(t["family"], 0) + t["variants"]
    assert set(per_family.values()) == {account["variants"]}


def test_cli_unknown_campaign_is_one_line_and_exit_2(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loop.cli import main

    assert main(["insights", "--config", str(filled), "--campaign", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["creative-loop: --campaign: campaign: unknown campaign 'nope' (known: shop)"]


def test_cli_with_nothing_decided_says_so(tmp_path: Path, scenario_file: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from loop.cli import main

    path = tmp_path / "c.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "d"}"\n'
        f'[simulated]\nscenario = "{scenario_file}"\n'
    )
    assert main(["insights", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no decided experiment yet, nothing learnt" in out and "% CTR" not in out
