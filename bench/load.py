"""Load: one tick over many campaigns with long histories, and a 24-hour daemon soak.

    python bench/load.py tick [--sizes 50,100,500] [--backends sqlite,postgres] [--ads 20] [--days 180]
    python bench/load.py soak [--ticks 1440] [--backend sqlite]

``tick``: for each size, a fresh database holds N campaigns x ``--ads`` live
ads x ``--days`` days of daily metrics (bulk-inserted), the simulated platform
delivers the next day, and one tick (sync, ingest, reconcile, fatigue test on
every ad, advance) runs over all of it.  Each size runs in its own process so
that its peak RSS is its own.  Prints wall time, peak RSS and time per ad, so
linear growth shows as a flat time per ad.

``soak``: the daemon's 24 hours at a 1-minute interval, on a virtual clock:
the scheduler's 1440 firings are issued back to back, each one exactly what
the daemon's job does (``loop.daemon.run_one_tick``: build the runtime, tick,
deliver a simulated day, dispose).  Prints ticks done, whether any two ticks
overlapped (from the database's tick records) and RSS at the start and end.

PostgreSQL: set CREATIVE_LOOP_TEST_PG (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test);
each run uses a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = os.environ.get("CREATIVE_LOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scenario_text(campaigns: int, ads: int) -> str:
    parts = ["seed = 5\ndays = 400\n"]
    for c in range(campaigns):
        parts.append(
            f'[[campaigns]]\nid = "c{c}"\ndaily_impressions = {ads * 2000}\ncpm = 8.0\ntest_daily_budget = 20.0\n'
            "test_spend_cap = 300.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.60\ncredit_cap = 50.0\n"
        )
        parts += [
            f'[[campaigns.creatives]]\nid = "c{c}a{a}"\nctr = {0.01 + 0.0005 * (a % 7):.4f}\n' for a in range(ads)
        ]
    return "".join(parts)


class Schema:
    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder, self.schema = backend, folder, f"bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.folder / 'load.db'}"
        from sqlalchemy import text

        from storage.db import make_engine

        admin = make_engine(PG)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        return f"{PG}{'&' if '?' in PG else '?'}options={quote(f'-csearch_path={self.schema}')}"

    def __exit__(self, *exc: object) -> None:
        if self.backend != "sqlite":
            from sqlalchemy import text

            from storage.db import make_engine

            admin = make_engine(PG)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()


def one_tick(backend: str, campaigns: int, ads: int, days: int) -> dict[str, float]:
    """Runs in its own process: fill the history, then time one tick."""
    from sqlalchemy import insert

    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.images.procedural import ProceduralGenerator
    from loop.config import load_config
    from loop.plans import campaign_plans
    from loop.runtime import Runtime
    from loop.tick import live_creative_id, tick
    from storage.db import make_engine, migrate
    from storage.images import ImageStore
    from storage.models import Campaign, Creative, DailyMetric

    folder = Path(tempfile.mkdtemp(prefix="cl-load-"))
    (folder / "s.toml").write_text(scenario_text(campaigns, ads))
    (folder / "policy.toml").touch()
    scenario = load_scenario(folder / "s.toml")
    with Schema(backend, folder) as url:
        engine = make_engine(url)
        migrate(engine)
        platform = SimulatedAdPlatform(scenario)
        platform.day = days  # the platform's calendar: `days` days have passed
        start = platform.today() - timedelta(days=days)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(Campaign), [{"id": c.id, "currency": "USD"} for c in scenario.campaigns])
            conn.execute(
                insert(Creative),
                [
                    {"id": live_creative_id(c.id, a.id), "campaign_id": c.id, "role": "live", "label": a.id,
                     "platform_ad_id": a.id, "status": "active", "recipe": {}}
                    for c in scenario.campaigns for a in c.creatives
                ],
            )  # fmt: skip
            batch = []
            for c in scenario.campaigns:
                for a in c.creatives:
                    cid = live_creative_id(c.id, a.id)
                    for d in range(days):
                        imps = 2000 + (d * 37 + len(a.id)) % 400
                        batch.append(
                            {"creative_id": cid, "day": start + timedelta(days=d), "impressions": imps,
                             "clicks": int(imps * a.ctr), "spend_minor": imps * 8 // 10}
                        )  # fmt: skip
                    if len(batch) > 50_000:
                        conn.execute(insert(DailyMetric), batch)
                        batch = []
            if batch:
                conn.execute(insert(DailyMetric), batch)
        fill_s = time.perf_counter() - t0
        platform.run_day()  # the day before the tick is reported
        rt = Runtime(
            engine=engine, platform=platform, generators={"procedural": ProceduralGenerator(128, 256)},
            images=ImageStore(folder / "images"), plans=campaign_plans(load_config(folder / "policy.toml"), scenario),
            approval="none", backfill_days=7,
        )  # fmt: skip
        rss_before = rss_mb()
        t0 = time.perf_counter()
        report = tick(rt, platform.today())
        tick_s = time.perf_counter() - t0
        engine.dispose()
    return {
        "backend": backend, "campaigns": campaigns, "ads": campaigns * ads, "metric_rows": campaigns * ads * days,
        "fill_s": round(fill_s, 1), "tick_s": round(tick_s, 2), "ms_per_ad": round(1000 * tick_s / (campaigns * ads), 3),
        "rss_before_tick_mb": round(rss_before, 1), "peak_rss_mb": round(peak_mb(), 1),
        "experiments_opened": len(report.detected), "errors": len(report.errors),
    }  # fmt: skip


def soak(backend: str, ticks: int) -> dict[str, object]:
    from sqlmodel import select

    from loop.config import load_config
    from loop.daemon import run_one_tick
    from storage.db import make_engine
    from storage.db import session as open_session
    from storage.models import TickRun

    folder = Path(tempfile.mkdtemp(prefix="cl-soak-"))
    (folder / "s.toml").write_text(scenario_text(2, 3).replace("days = 400", "days = 3650"))
    with Schema(backend, folder) as url:
        cfg_path = folder / "creative-loop.toml"
        cfg_path.write_text(
            f'[loop]\ndatabase = "{url}"\ndata_dir = "{folder / "data"}"\napproval = "none"\ninterval_minutes = 1\n'
            f'[simulated]\nscenario = "{folder / "s.toml"}"\n'
        )
        cfg = load_config(cfg_path)
        run_one_tick(cfg)  # warm-up: imports, migrations
        start_rss, t0, samples = rss_mb(), time.perf_counter(), []
        for i in range(ticks):
            run_one_tick(load_config(cfg_path))  # what the scheduled job does, per firing
            if (i + 1) % max(1, ticks // 8) == 0:
                samples.append(round(rss_mb(), 1))
        wall = time.perf_counter() - t0
        end_rss = rss_mb()
        engine = make_engine(url)
        with open_session(engine) as s:
            runs = sorted(s.exec(select(TickRun)).all(), key=lambda r: r.started_at)
        engine.dispose()
    overlaps = sum(
        1 for a, b in zip(runs, runs[1:], strict=False) if a.finished_at is None or b.started_at < a.finished_at
    )
    return {
        "backend": backend, "virtual_hours": round(ticks / 60, 1), "ticks_done": len(runs) - 1,
        "overlapping": overlaps, "start_rss_mb": round(start_rss, 1), "end_rss_mb": round(end_rss, 1),
        "rss_samples_mb": samples, "wall_s": round(wall, 1), "ms_per_tick": round(1000 * wall / ticks, 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tick")
    t.add_argument("--sizes", default="50,100,500")
    t.add_argument("--backends", default="sqlite,postgres")
    t.add_argument("--ads", type=int, default=20)
    t.add_argument("--days", type=int, default=180)
    t.add_argument("--one", help=argparse.SUPPRESS)
    s = sub.add_parser("soak")
    s.add_argument("--ticks", type=int, default=1440)
    s.add_argument("--backend", default="sqlite")
    args = ap.parse_args()

    if args.cmd == "soak":
        print("soak: 24 h at a 1-minute interval on a virtual clock (firings back to back, each a full daemon job)")
        print(json.dumps(soak(args.backend, args.ticks)))
        return
    if args.one:
        backend, n = args.one.split(":")
        print(json.dumps(one_tick(backend, int(n), args.ads, args.days)))
        return
    print(f"tick: N campaigns x {args.ads} live ads x {args.days} days of history; one tick over all of it")
    print(
        f"{'backend':9} {'campaigns':>9} {'ads':>6} {'rows':>9} {'fill s':>7} {'tick s':>7} {'ms/ad':>7} {'peak RSS MB':>11}"
    )
    for backend in args.backends.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            out = subprocess.run(
                [sys.executable, __file__, "tick", "--one", f"{backend}:{n}", "--ads", str(args.ads), "--days", str(args.days)],
                capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            if out.returncode != 0:
                print(
                    f"{backend:9} {n:>9} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else '?'}"
                )
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r['backend']:9} {r['campaigns']:>9} {r['ads']:>6} {r['metric_rows']:>9} {r['fill_s']:>7} "
                f"{r['tick_s']:>7} {r['ms_per_ad']:>7} {r['peak_rss_mb']:>11}",
                flush=True,
            )


if __name__ == "__main__":
    main()
