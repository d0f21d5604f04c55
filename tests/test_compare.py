"""Policy comparison (loop.compare, loop.compare_report, `simulate --compare`): same streams, consistent table, offline report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connectors.ads.scenario import Scenario, load_scenario
from loop.cli import main
from loop.compare import Comparison, compare_policies, parse_policies, summarize
from loop.compare_report import COLUMNS, markdown_table, render_report, table_rows, write_report
from loop.config import BUNDLED_CONFIG, Config, load_config

# One campaign whose hero tires early, so that an experiment is tested within a short run.
TINY_SCENARIO = """
seed = 21
days = 24
[variants]
lift_mu = 0.0
lift_sigma = 0.3
pro_lift = 0.10

[[campaigns]]
id = "shop"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 60.0
test_spend_cap = 500.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.02
fatigue_onset_day = 4
fatigue_decay_per_day = 0.08

[[campaigns.creatives]]
id = "steady"
ctr = 0.012
"""

POLICIES = ["thompson", "uniform", "epsilon_greedy"]
RUNS = 2


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "tiny.toml"
    path.write_text(TINY_SCENARIO)
    return path


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(BUNDLED_CONFIG)


@pytest.fixture(scope="module")
def scenario(scenario_path: Path) -> Scenario:
    return load_scenario(scenario_path)


@pytest.fixture(scope="module")
def comparison(cfg: Config, scenario: Scenario) -> Comparison:
    progress: list[tuple[int, int]] = []
    result = compare_policies(
        cfg,
        scenario,
        POLICIES,
        RUNS,
        scenario_name="tiny",
        days=16,
        workers=1,
        on_run=lambda i, n: progress.append((i, n)),
    )
    assert progress[-1] == (RUNS * len(POLICIES), RUNS * len(POLICIES))
    return result


def test_every_policy_sees_the_same_streams(comparison: Comparison) -> None:
    for r in range(RUNS):
        runs = [comparison.summaries[p][r] for p in POLICIES]
        assert {s.seed for s in runs} == {21 + r}
        # The root creative's fatigue is detected before any policy acts: same noise, same day.
        hero = {s.detections["shop/hero"] for s in runs}
        assert len(hero) == 1 and hero != {None}
    # Different runs draw different streams.
    seeds = [s.seed for s in comparison.summaries["thompson"]]
    assert seeds == [21, 22]


def test_allocation_is_shown_for_the_same_experiment_under_every_policy(comparison: Comparison) -> None:
    allocs = [comparison.summaries[p][0].allocation for p in POLICIES]
    assert all(a is not None for a in allocs)
    assert len({(a["parent"], tuple(a["labels"])) for a in allocs if a}) == 1
    for a in allocs:
        assert a and len(a["days"]) == len(a["weights"]) > 0
        assert all(sum(w) == pytest.approx(1.0) for w in a["weights"])


def test_table_fields_are_present_and_consistent(comparison: Comparison) -> None:
    rows = {r.policy: r for r in comparison.rows}
    assert list(rows) == POLICIES
    assert rows["uniform"].regret_pct_of_uniform == pytest.approx(100.0)
    for p, row in rows.items():
        runs = comparison.summaries[p]
        assert row.runs == RUNS
        assert row.regret_mean == pytest.approx(sum(s.regret_clicks for s in runs) / RUNS)
        assert row.regret_se >= 0
        assert row.regret_pct_of_uniform == pytest.approx(100 * row.regret_mean / rows["uniform"].regret_mean)
        assert 0 <= row.wasted_impressions <= row.test_impressions
        assert row.confident_experiments <= row.experiments
        assert row.detections >= RUNS  # at least the hero, every run
        assert row.delay_mean is not None and row.delay_mean >= 0
        assert row.test_spend > 0 and row.test_spend <= 500.0
        assert row.credit_spend <= 5.0
        for s in runs:
            assert len(s.daily_regret) == comparison.days
            assert s.regret_clicks == pytest.approx(sum(s.daily_regret))
            for imps, _ in s.confident:
                assert 0 < imps <= s.test_impressions
    table = table_rows(comparison)
    assert [r[0] for r in table] == POLICIES and all(len(r) == len(COLUMNS) for r in table)
    assert table[1][2] == "100.0%"
    md = markdown_table(comparison)
    assert md.count("\n") == len(POLICIES) + 1 and "% of uniform" in md


def test_decision_quality_columns_follow_from_the_runs(comparison: Comparison) -> None:
    for row in comparison.rows:
        runs = comparison.summaries[row.policy]
        ended = [e for s in runs for e, n in (s.endings or {}).items() for _ in range(n)]
        assert len(ended) == row.experiments
        assert row.confident_decisions == ended.count("confident")
        assert row.best_so_far_decisions == ended.count("best_so_far")
        assert row.abandoned == ended.count("abandoned")
        decided = row.confident_decisions + row.best_so_far_decisions
        if decided:
            assert row.confident_share == pytest.approx(row.confident_decisions / decided)
        if row.confident_decisions:
            spend = sum(s.test_spend for s in runs)
            assert row.spend_per_decided_winner == pytest.approx(spend / row.confident_decisions)
        simple = [x for s in runs for x in (s.simple_regret or [])]
        assert all(0.0 <= x < 1.0 for x in simple)
        if simple:
            assert row.simple_regret_pct == pytest.approx(100 * sum(simple) / len(simple))
        spend = sum(s.test_spend for s in runs)
        net = sum(s.clicks_recovered - s.regret_clicks for s in runs)
        assert row.net_clicks_per_spend == pytest.approx(net / spend)
        # The first days' regret is part of the regret, and the lowest % of uniform the policy could reach.
        assert all(0 <= s.first_day_regret <= s.regret_clicks for s in runs)
        assert any(s.first_day_regret > 0 for s in runs)
        uniform = sum(s.regret_clicks for s in comparison.summaries["uniform"]) / RUNS
        first = sum(s.first_day_regret for s in runs) / RUNS
        assert row.first_day_pct_of_uniform == pytest.approx(100 * first / uniform)
        assert row.first_day_pct_of_uniform <= row.regret_pct_of_uniform


def test_paired_differences_are_per_run(comparison: Comparison) -> None:
    mean, se = comparison.paired_difference("thompson", "uniform")
    t, u = comparison.summaries["thompson"], comparison.summaries["uniform"]
    diffs = [a.regret_clicks - b.regret_clicks for a, b in zip(t, u, strict=True)]
    assert mean == pytest.approx(sum(diffs) / len(diffs))
    assert se >= 0
    lines = comparison.paired_lines()
    assert len(lines) == 2 * (len(POLICIES) - 1) + 1 and lines[0].startswith("thompson − uniform: ")
    floor = comparison.rows[0].first_day_pct_of_uniform
    assert lines[-1].startswith("lost on the tests' first days") and f"thompson {floor:.1f} %" in lines[-1]
    assert set(comparison.to_dict()["paired"]) == {"uniform", "epsilon_greedy"}
    # The campaigns' clicks, paired the same way: what the account gets, main ad sets included.
    clicks, clicks_se = comparison.paired_difference("thompson", "uniform", "clicks")
    assert clicks == pytest.approx(sum(a.clicks - b.clicks for a, b in zip(t, u, strict=True)) / len(t))
    assert lines[1].startswith("thompson − uniform: ") and "campaign clicks per run" in lines[1]
    assert f"{clicks:+,.0f} ± {clicks_se:,.0f}" in lines[1]
    assert comparison.to_dict()["paired_clicks"]["uniform"] == {"mean": clicks, "se": clicks_se}
    assert all(run.clicks > 0 for run in t)  # the main ad sets deliver every day


def test_percent_of_uniform_is_absent_without_uniform(comparison: Comparison) -> None:
    row = summarize(comparison.summaries["thompson"])
    assert row.regret_pct_of_uniform is None
    assert (
        table_rows(Comparison("x", comparison.days, RUNS, 21, "tiered", ["thompson"], {"thompson": []}, [row]))[0][2]
        == "–"
    )


def test_report_is_self_contained(comparison: Comparison, tmp_path: Path) -> None:
    path = write_report(comparison, tmp_path / "report.html")
    html = path.read_text()
    for column in COLUMNS:
        assert column.replace("&", "&amp;") in html
    for p in POLICIES:
        assert p in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) >= 2 + len(POLICIES)  # regret, delays, one allocation per policy
    assert all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(?:href|src)="(?:https?:)?//', html)
    assert render_report(comparison).count("<img") == len(sources)


def test_parse_policies_names_the_problem() -> None:
    assert parse_policies(" thompson, uniform ") == ["thompson", "uniform"]
    with pytest.raises(ValueError, match="unknown policy 'bogus'"):
        parse_policies("thompson,bogus")
    with pytest.raises(ValueError, match="each policy once"):
        parse_policies("uniform,uniform")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_policies(" , ")


def test_compare_rejects_bad_arguments(cfg: Config, scenario: Scenario) -> None:
    with pytest.raises(ValueError, match="runs: expected >= 1, got 0"):
        compare_policies(cfg, scenario, ["uniform"], 0)
    with pytest.raises(ValueError, match="tiering"):
        compare_policies(cfg, scenario, ["uniform"], 1, tiering="bogus")


def test_cli_compare_writes_json_and_report_over_processes(scenario_path: Path, tmp_path: Path, capsys) -> None:
    out, report = tmp_path / "cmp.json", tmp_path / "cmp.html"
    argv = ["simulate", "--config", str(BUNDLED_CONFIG), "--scenario", str(scenario_path), "--days", "16"]
    argv += ["--compare", "uniform,thompson", "--runs", "2", "--json", str(out), "--report", str(report)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "% of uniform" in printed and "thompson" in printed
    data = json.loads(out.read_text())
    assert data["policies"] == ["uniform", "thompson"] and data["runs"] == 2 and data["seeds"] == [21, 22]
    assert [r["policy"] for r in data["table"]] == ["uniform", "thompson"]
    assert data["table"][0]["regret_pct_of_uniform"] == pytest.approx(100.0)
    assert [s["run"] for s in data["per_run"]["thompson"]] == [0, 1]
    assert report.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compare", "thompson,bogus"], "--compare: compare: unknown policy 'bogus'"),
        (["--runs", "3"], "--runs: runs: --runs needs --compare"),
        (["--compare", "thompson", "--policy", "uniform"], "give either --policy or --compare"),
    ],
)
def test_cli_compare_bad_input_exits_2_with_one_line(scenario_path: Path, capsys, extra, message) -> None:
    argv = ["simulate", "--config", str(BUNDLED_CONFIG), "--scenario", str(scenario_path), "-q", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_the_caption_shows_a_scenario_path_as_text(comparison: Comparison) -> None:
    """The caption names the scenario file: "[/y]" in its path was a rich MarkupError, "[red]" vanished."""
    import dataclasses

    from rich.console import Console

    from loop.compare_report import rich_table

    console = Console(width=300, record=True, color_system=None)
    console.print(rich_table(dataclasses.replace(comparison, scenario="/tmp/x[/y]/[red]z\x1b.toml")))
    assert "/tmp/x[/y]/[red]z\\u001b.toml" in console.export_text()


# -- draft selection strategies (issue 17) ---------------------------------------------

TRAIT_TINY = TINY_SCENARIO.replace("pro_lift = 0.10", "pro_lift = 0.10\ntrait_sigma = 0.15")


@pytest.fixture(scope="module")
def selection_comparison(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    path = tmp_path_factory.mktemp("selection") / "traits.toml"
    path.write_text(TRAIT_TINY)
    return compare_policies(
        cfg, load_scenario(path), ["thompson"], 2, days=20, workers=1, selections=["model", "first"]
    )


def test_selection_strategies_run_on_the_same_seeds(selection_comparison: Comparison) -> None:
    from loop.compare_report import SELECTION_COLUMNS, selection_rows

    c = selection_comparison
    assert c.policies == ["thompson/model", "thompson/first"] and c.selections == ["model", "first"]
    model, first = c.summaries["thompson/model"], c.summaries["thompson/first"]
    assert [s.seed for s in model] == [s.seed for s in first] == [21, 22]
    assert {s.selection for s in model} == {"model"} and {s.selection for s in first} == {"first"}

    # The fatigue before any test is the same dice: detection does not depend on the strategy.
    def roots(s):  # type: ignore[no-untyped-def]
        return {k: v for k, v in s.detections.items() if k.count("/") == 1}  # the scenario's own creatives

    assert [roots(s) for s in model] == [roots(s) for s in first]
    # Extra drafts are fast-tier credits: 24 instead of 6 per experiment, at 0.02 each.
    for m, f in zip(model, first, strict=True):
        if m.experiments == f.experiments == 1 and m.winners and f.winners:
            assert m.credit_spend - f.credit_spend == pytest.approx(18 * 0.02)
    rows = selection_rows(c)
    assert [r[0] for r in rows] == c.policies and all(len(r) == len(SELECTION_COLUMNS) for r in rows)
    for row, runs in zip(c.rows, (model, first), strict=True):
        scaled = sum(s.scaled_winners for s in runs)
        if scaled:
            assert row.cost_per_winning_asset == pytest.approx(
                sum(s.test_spend + s.credit_spend for s in runs) / scaled
            )
        for s in runs:
            assert s.traits_covered <= s.traits_scored and s.traits_reliable <= s.traits_scored
            assert all(x > 0 for x in s.winner_vs_root or [])
    data = c.to_dict()
    assert data["selections"] == ["model", "first"] and set(data["paired"]) == {"thompson/first"}
    assert set(data["paired_winner_ctr"]) <= {"thompson/first"}
    assert set(data["paired_regret_at_root"]) == {"thompson/first"}
    assert any("regret clicks per run at the root creatives' CTRs" in line for line in c.paired_lines())


def test_parse_selections_names_the_problem() -> None:
    from loop.compare import parse_selections

    assert parse_selections(" model , first ") == ["model", "first"]
    with pytest.raises(ValueError, match="unknown selection 'best'"):
        parse_selections("model,best")
    with pytest.raises(ValueError, match="each selection once"):
        parse_selections("first,first")


def test_cli_selection_writes_both_rows(scenario_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sel.json"
    argv = ["simulate", "--config", str(BUNDLED_CONFIG), "--scenario", str(scenario_path), "--days", "12"]
    argv += ["--selection", "model,first", "--runs", "1", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    # Without --compare, the config's policy (the default: top-two Thompson sampling) under each selection.
    assert "draft selection" in printed and "top_two_thompson/model" in printed and "top_two_thompson/first" in printed
    data = json.loads(out.read_text())
    assert data["policies"] == ["top_two_thompson/model", "top_two_thompson/first"]
    assert data["selections"] == ["model", "first"]


def test_cli_bad_selection_exits_2_with_one_line(scenario_path: Path, capsys) -> None:
    argv = ["simulate", "--config", str(BUNDLED_CONFIG), "--scenario", str(scenario_path), "-q"]
    assert main([*argv, "--selection", "model,best"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--selection: selection: unknown selection 'best'" in err and "\n" not in err


def test_regret_at_root_rescales_each_experiment_to_its_root_creatives_ctr(cfg: Config, tmp_path: Path) -> None:
    """Regret at a common scale: per experiment, the share of its best arm's clicks, times its root creative's CTR;
    and the part of the regret lost on each experiment's first day of delivery.

    Recomputed here from the simulation's own database, walking each experiment's lineage through the
    creatives' parents (the compare walks the platform's lineage), on a run long enough for a scaled
    winner to tire and be tested again (a parent that is not the root).
    """
    from sqlmodel import col, select

    from loop.compare import _small_generators, run_one
    from loop.simulate import run_simulation
    from storage.db import session as open_session
    from storage.models import Arm, Creative, DailyMetric, Experiment

    path = tmp_path / "traits.toml"
    path.write_text(TRAIT_TINY)
    scenario = load_scenario(path)
    summary = run_one(cfg, scenario, "thompson", 0, days=60, selection="model")
    sim = run_simulation(cfg, scenario, days=60, policy="thompson", out_dir=tmp_path / "sim",
                         database_url="sqlite://", generators=_small_generators(), selection="model")  # fmt: skip
    try:
        ads = sim.platform.ads
        expected, raw, deeper, first_days = 0.0, 0.0, 0, 0.0
        with open_session(sim.runtime.engine) as s:
            for exp in s.exec(select(Experiment)).all():
                root = s.get(Creative, exp.parent_creative_id)
                assert root is not None
                while root.parent_id is not None:  # a scaled winner's parent is the creative it replaced
                    root = s.get(Creative, root.parent_id)
                    assert root is not None
                deeper += root.id != exp.parent_creative_id
                arms = s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
                ctr = {a.creative_id: ads[a.platform_ad_id].base_ctr for a in arms if a.platform_ad_id in ads}
                if not ctr:
                    continue
                best = max(ctr.values())
                rows = s.exec(select(DailyMetric).where(col(DailyMetric.creative_id).in_(list(ctr)))).all()
                lost = sum(m.impressions * (best - ctr[m.creative_id]) for m in rows)
                start = min(m.day for m in rows if m.impressions > 0)
                first_days += sum(m.impressions * (best - ctr[m.creative_id]) for m in rows if m.day == start)
                raw += lost
                expected += lost / best * ads[root.platform_ad_id].base_ctr
    finally:
        sim.runtime.engine.dispose()
    assert deeper >= 1, "no experiment tested a scaled winner's successors"
    assert summary.regret_clicks == pytest.approx(raw)
    assert summary.regret_at_root == pytest.approx(expected) and 0 < expected < raw
    assert summary.first_day_regret == pytest.approx(first_days) and 0 < first_days < raw
