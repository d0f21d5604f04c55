"""Celery scale-out: ticks per second for many simulated campaigns, inline vs Celery workers.

    python bench/celery.py                       # 1,000 campaigns, 2 days, Celery with 1, 2 and 4 processes
    python bench/celery.py --campaigns 200 --days 3 --workers 1,2

Every configuration starts from day 0 on a fresh PostgreSQL schema and a
fresh per-campaign simulated platform, and runs the same days:

- inline: one process ticks every campaign, then every campaign's day passes;
- celery N: ``creative-loop worker --queues ticks --concurrency N`` (prefork),
  the scheduler sends one task per campaign and day and waits for them.

Campaigns are steady (their creatives do not wear out within the run), so a
tick is sync, ingest, reconcile and the fatigue test: the part that scales
with the number of accounts.  The per-task overhead is Celery's cost per
campaign tick with one process: (celery 1 − inline) / ticks.  Figures are
printed, never judged.  Needs Redis at 127.0.0.1:6379 and PostgreSQL
(``CREATIVE_LOOP_TEST_PG`` or the local test database).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the package it measures: keep bench/ off the path, the project on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from loop.app import build_runtime, open_engine  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.tick import tick  # noqa: E402
from storage.db import make_engine  # noqa: E402

PG = os.environ.get("CREATIVE_LOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = "redis://127.0.0.1:6379/10"


def scenario_text(campaigns: int) -> str:
    parts = ["seed = 5\ndays = 60\n"]
    for i in range(campaigns):
        parts.append(
            f'\n[[campaigns]]\nid = "b{i}"\ndaily_impressions = 20000\ncpm = 8.0\ntest_daily_budget = 40.0\n'
            f"test_spend_cap = 400.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.60\ncredit_cap = 5.0\n"
            f'[[campaigns.creatives]]\nid = "b{i}-a"\nctr = 0.02\n'
            f'[[campaigns.creatives]]\nid = "b{i}-b"\nctr = 0.012\n'
        )
    return "".join(parts)


def write_config(root: Path, scenario: Path, executor: str, prefix: str) -> Path:
    path = root / f"{executor}.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///unused.db"\ndata_dir = "{root / "data"}"\napproval = "none"\n'
        f'executor = "{executor}"\n[simulated]\nscenario = "{scenario}"\nlayout = "per-campaign"\n'
        f'[celery]\nbroker_url = "{REDIS}"\nresult_backend = "{REDIS}"\nqueue_prefix = "{prefix}"\n'
    )
    return path


class Schema:
    def __init__(self) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = make_engine(PG)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        sep = "&" if "?" in PG else "?"
        self.url = f"{PG}{sep}options={quote(f'-csearch_path={self.name}')}"

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def run_inline(root: Path, scenario: Path, days: int) -> float:
    schema = Schema()
    try:
        cfg = load_config(write_config(root, scenario, "inline", ""))
        engine = open_engine(schema.url)
        rt = build_runtime(cfg, engine=engine)
        start = time.perf_counter()
        for _ in range(days):
            tick(rt, rt.platform.today())
            rt.platform.run_day()
        elapsed = time.perf_counter() - start
        engine.dispose()
        return elapsed
    finally:
        schema.drop()


def run_celery(root: Path, scenario: Path, days: int, processes: int) -> float:
    from loop.executors import CeleryExecutor

    schema = Schema()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    config = write_config(root, scenario, "celery", prefix)
    cfg = load_config(config)
    engine = open_engine(schema.url)  # migrates before the workers connect
    log = (root / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "loop", "worker", "--config", str(config), "--queues", "ticks",
         "--concurrency", str(processes), "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, "CREATIVE_LOOP_DATABASE": schema.url}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    executor = CeleryExecutor(cfg, engine=engine)
    try:
        executor.wait([executor.app.AsyncResult(r.id) for r in _ping(executor)], timeout=120)  # workers up
        start = time.perf_counter()
        for _ in range(days):
            report = executor.tick(timeout=3600)
            if report.errors:
                raise SystemExit(f"tick errors: {report.errors[:3]}")
        return time.perf_counter() - start
    finally:
        executor.close()
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
        log.close()
        engine.dispose()
        schema.drop()


def _ping(executor):  # type: ignore[no-untyped-def]
    """A task for an unknown campaign: answers at once, proves a worker is consuming."""
    from loop.celery_app import TICK_TASK

    return [
        executor.sender.send_task(
            TICK_TASK, args=("-warm-up-", "2026-01-05", True), queue=executor.app.queue_name("ticks")
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",") if n]
    ticks = args.campaigns * args.days
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scenario = root / "scenario.toml"
        scenario.write_text(scenario_text(args.campaigns))
        rows = []
        (root / "inline").mkdir()
        inline = run_inline(root / "inline", scenario, args.days)
        rows.append(("inline", 1, inline))
        for n in counts:
            (root / f"celery{n}").mkdir()
            rows.append(("celery", n, run_celery(root / f"celery{n}", scenario, args.days, n)))
    print(f"\n{args.campaigns} campaigns x {args.days} days = {ticks} campaign ticks; "
          f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}")  # fmt: skip
    print("| executor | processes | wall | ticks/s | ms per tick |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, wall in rows:
        print(f"| {name} | {n} | {wall:.1f} s | {ticks / wall:.1f} | {1000 * wall / ticks:.1f} |")
    one = next(wall for name, n, wall in rows if name == "celery" and n == 1) if 1 in counts else None
    if one is not None:
        print(f"\nper-task overhead (celery 1 process - inline) / ticks: {1000 * (one - inline) / ticks:.1f} ms")


if __name__ == "__main__":
    main()
