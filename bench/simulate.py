"""Simulated days per second for the bundled example scenario, and tiered vs pro-only.

    python bench/simulate.py [--scenario PATH] [--repeats 3]

Runs the real loop (SQLite in a temporary folder, procedural generator) over
the scenario, side by side for both tierings, and prints speed and outcome.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.ads.scenario import load_scenario  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.simulate import run_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.example.toml")
    scenario = load_scenario(args.scenario)
    print(f"scenario: {args.scenario or 'bundled example'}, {scenario.days} days, {len(scenario.campaigns)} campaigns")
    print()
    print(
        "| tiering | days/s (best of runs) | wall per run | winners scaled | test spend | credit spend | regret clicks | clicks recovered | cost per winning asset |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for tiering in ("tiered", "pro-only"):
        best = float("inf")
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run = run_simulation(cfg, scenario, tiering=tiering, out_dir=tmp)
                best = min(best, time.perf_counter() - t0)
        camps = run.result["campaigns"]
        winners = sum(1 for c in camps for e in c["experiments"] if e["state"] == "scaled")
        test = sum(c["test_spend"] for c in camps)
        credit = sum(c["credit_spend"] for c in camps)
        regret = sum(c["regret_clicks"] for c in camps)
        recovered = sum(c["clicks_recovered"] for c in camps)
        cpwa = (test + credit) / winners if winners else float("nan")
        print(
            f"| {tiering} | {scenario.days / best:.1f} | {best:.2f} s | {winners} | {test:.2f} | {credit:.2f} "
            f"| {regret:.0f} | {recovered:.0f} | {cpwa:.2f} |"
        )


if __name__ == "__main__":
    main()
