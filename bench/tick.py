"""Tick time for many campaigns with long histories, on SQLite and PostgreSQL.

    python bench/tick.py [--campaigns 100] [--ads 20] [--days 90] [--pg URL | --no-pg]

Builds a scenario of ``campaigns`` x ``ads`` live ads (none fatigue, so the
tick does its full read work: sync, ingest of the backfill window, reconcile,
fatigue test of every ad over its whole history), lets the simulated platform
deliver ``days`` days, loads that history with one catch-up tick, then times
steady-state ticks. Prints a table; never judges the numbers.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from connectors.ads.scenario import Scenario  # noqa: E402
from connectors.ads.simulated import SimulatedAdPlatform  # noqa: E402
from connectors.images.procedural import ProceduralGenerator  # noqa: E402
from connectors.retry import NO_WAIT  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.plans import campaign_plans  # noqa: E402
from loop.runtime import Runtime  # noqa: E402
from loop.tick import tick  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.images import ImageStore  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def scenario(campaigns: int, ads: int, days: int) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": 3,
            "days": days,
            "campaigns": [
                {
                    "id": f"c{c:04d}",
                    "daily_impressions": 2000 * ads,
                    "cpm": 8.0,
                    "test_daily_budget": 20.0,
                    "test_spend_cap": 300.0,
                    "fast_credit_cost": 0.02,
                    "pro_credit_cost": 0.6,
                    "credit_cap": 50.0,
                    "creatives": [{"id": f"c{c:04d}-a{a:02d}", "ctr": 0.01 + 0.0005 * a} for a in range(ads)],
                }
                for c in range(campaigns)
            ],
        }
    )


def bench(url: str, label: str, campaigns: int, ads: int, days: int, repeats: int) -> dict[str, float]:
    engine = make_engine(url)
    migrate(engine)
    scen = scenario(campaigns, ads, days)
    platform = SimulatedAdPlatform(scen)
    t0 = time.perf_counter()
    for _ in range(days):
        platform.run_day()
    deliver = time.perf_counter() - t0
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.example.toml")
    rt = Runtime(
        engine=engine,
        platform=platform,
        generators={"procedural": ProceduralGenerator()},
        images=ImageStore(Path(tempfile.mkdtemp()) / "images"),
        plans=campaign_plans(cfg, scen),
        backfill_days=days,
        retry=NO_WAIT,
    )
    t0 = time.perf_counter()
    tick(rt, platform.today())  # catch-up: loads the whole history
    catch_up = time.perf_counter() - t0
    rt.backfill_days = 7
    times = []
    for _ in range(repeats):
        platform.run_day()
        t0 = time.perf_counter()
        tick(rt, platform.today())
        times.append(time.perf_counter() - t0)
    engine.dispose()
    return {
        "label": label,
        "deliver": deliver,
        "catch_up": catch_up,
        "tick": min(times),
        "tick_mean": sum(times) / len(times),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--ads", type=int, default=20)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg", default=PG_DEFAULT)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    n_ads = args.campaigns * args.ads
    print(
        f"{args.campaigns} campaigns x {args.ads} live ads x {args.days} days of history = {n_ads * args.days:,} metric rows"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(
            bench(f"sqlite:///{tmp}/bench.db", "SQLite (WAL)", args.campaigns, args.ads, args.days, args.repeats)
        )
    if not args.no_pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.pg)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            rows.append(
                bench(
                    f"{args.pg}?options=-csearch_path%3D{schema}",
                    "PostgreSQL",
                    args.campaigns,
                    args.ads,
                    args.days,
                    args.repeats,
                )
            )
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    print()
    print("| store | catch-up tick (whole history) | steady tick (best) | steady tick (mean) | per ad | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['label']} | {r['catch_up']:.1f} s | {r['tick']:.2f} s | {r['tick_mean']:.2f} s "
            f"| {1000 * r['tick'] / n_ads:.2f} ms | {r['rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
