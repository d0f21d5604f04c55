"""Where draft selection's test regret comes from: per test, the arms, their gaps and the CTR level.

    python bench/insights_regret.py [--scenario bench/insights-scenario.toml] [--runs 16] [--start 0]

Runs the real loop on the simulated platform once per run and selection
strategy (``model``, ``first``; seeds ``scenario.seed + run``, the seeds of
``simulate --selection``), and reads each experiment's arms against the
simulator's truth: how many arms, how long the test ran, how far the arms
were from the best, how much of the test went to the best arm, the CTR level
the test ran at, and its regret in clicks (Σ impressions × (best − arm)).
Also the first test of each scenario creative, which both strategies run
from the same parent on the same day, paired.  One process; ~2 minutes per
run on a busy 2-core machine.  Prints figures; never judges them.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from connectors.ads.scenario import load_scenario  # noqa: E402
from connectors.images.procedural import ProceduralGenerator  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.simulate import run_simulation  # noqa: E402
from storage.db import session as open_session  # noqa: E402
from storage.models import Arm, Creative, DailyMetric, Experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("model", "first")


def tests_of_run(cfg: Any, scenario: Any, run: int, selection: str) -> list[dict[str, Any]]:
    """One row per experiment that launched arms."""
    seeded = scenario.model_copy(update={"seed": scenario.seed + run})
    generators = {"procedural": ProceduralGenerator(draft_width=64, pro_width=64)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="insights-regret-") as tmp:
        sim = run_simulation(cfg, seeded, days=seeded.days, out_dir=tmp, database_url="sqlite://",
                             generators=generators, selection=selection)  # fmt: skip
        ads = sim.platform.ads
        try:
            with open_session(sim.runtime.engine) as s:
                for exp in s.exec(select(Experiment).order_by(col(Experiment.created_at))).all():
                    arms = [a for a in s.exec(select(Arm).where(Arm.experiment_id == exp.id)).all()
                            if a.platform_ad_id in ads]  # fmt: skip
                    parent = s.get(Creative, exp.parent_creative_id)
                    if not arms or parent is None:
                        continue
                    ctr = {a.creative_id: ads[a.platform_ad_id].base_ctr for a in arms}
                    best = max(ctr.values())
                    imps = dict.fromkeys(ctr, 0)
                    days = set()
                    for m in s.exec(select(DailyMetric).where(col(DailyMetric.creative_id).in_(list(ctr)))).all():
                        imps[m.creative_id] += m.impressions
                        days.add(m.day)
                    total = sum(imps.values())
                    rows.append({
                        "run": run, "experiment": exp.id, "first_test": parent.parent_id is None,
                        "arms": len(arms), "days": len(days), "impressions": total, "best_ctr": best,
                        "regret": sum(imps[c] * (best - v) for c, v in ctr.items()),
                        "best_share": max(imps[c] for c, v in ctr.items() if v == best) / total if total else 0.0,
                        "sd_log_ctr": float(np.std(np.log(list(ctr.values())))),
                        "gap": float(np.mean([(best - v) / best for v in ctr.values()])),
                    })  # fmt: skip
        finally:
            sim.runtime.engine.dispose()
    return rows


def describe(rows: list[dict[str, Any]], runs: int) -> list[str]:
    later = [r for r in rows if not r["first_test"]]
    regret = sum(r["regret"] for r in rows)
    best_clicks = sum(r["impressions"] * r["best_ctr"] for r in rows)
    six = sum(r["arms"] == max(x["arms"] for x in rows) for r in rows)
    return [
        f"{len(rows)} tests ({six} with the most arms, {max(r['arms'] for r in rows)}), "
        f"{np.mean([r['days'] for r in rows]):.1f} days and {np.mean([r['impressions'] for r in rows]):,.0f} "
        f"impressions each, {sum(r['impressions'] for r in rows) / runs:,.0f} per run",
        f"best arm's true CTR {np.mean([r['best_ctr'] for r in rows]):.4f} on average "
        f"(tests of scaled winners' successors: {np.mean([r['best_ctr'] for r in later]):.4f})"
        if later
        else "",
        f"arms' spread: sd of log true CTR {np.mean([r['sd_log_ctr'] for r in rows]):.3f}, mean gap to the best "
        f"{np.mean([r['gap'] for r in rows]):.1%}; share of test impressions on the best arm "
        f"{np.mean([r['best_share'] for r in rows]):.1%}",
        f"regret {regret / runs:,.0f} clicks per run, {regret / best_clicks:.2%} of the best arms' clicks",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "bench" / "insights-scenario.toml")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    cfg = load_config(None)
    scenario = load_scenario(args.scenario)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in STRATEGIES}
    for run in range(args.start, args.start + args.runs):
        for selection in STRATEGIES:
            rows[selection] += tests_of_run(cfg, scenario, run, selection)
        print(f"run {run} done", file=sys.stderr, flush=True)
    print(f"{args.scenario.name}: {args.runs} run(s) from seed {scenario.seed + args.start}")
    for selection in STRATEGIES:
        print(f"selection {selection}:")
        for line in describe(rows[selection], args.runs):
            if line:
                print(f"  {line}")
    # The first test of each scenario creative: same parent, same day, both strategies.
    first = {(r["run"], r["experiment"]): r for r in rows["first"] if r["first_test"]}
    pairs = [(r, first[(r["run"], r["experiment"])]) for r in rows["model"]
             if r["first_test"] and (r["run"], r["experiment"]) in first]  # fmt: skip
    if len(pairs) > 1:
        d = np.array([m["regret"] - f["regret"] for m, f in pairs])
        print(
            f"first tests of the scenario's creatives ({len(pairs)} pairs, same parent): model − first "
            f"{d.mean():+,.1f} ± {d.std(ddof=1) / math.sqrt(d.size):,.1f} regret clicks per test"
        )


if __name__ == "__main__":
    main()
