"""What one writer per campaign costs: the locks every tick round and command take (issue 15).

    python bench/writers.py [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [-n 2000]

Prints, per backend, the time to take and let go of a campaign's lock
(``loop.locks.campaign_lock``: a file lock beside the SQLite database, an
advisory lock on its own PostgreSQL connection), a re-entered one, and the
simulated platform's check for another process's save (made before each of
its calls).  A tick round takes the round lock and one lock per campaign, so
its overhead is about (campaigns + 1) x the first figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.ads.scenario import load_scenario  # noqa: E402
from connectors.ads.simulated import SimulatedAdPlatform  # noqa: E402
from loop.locks import campaign_lock  # noqa: E402
from storage.db import make_engine  # noqa: E402


def per_call_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm up (the lock folder, the connection pool)
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def locks(url: str, n: int) -> tuple[float, float]:
    engine = make_engine(url)
    try:

        def take() -> None:
            with campaign_lock(engine, "shop"):
                pass

        fresh = per_call_us(take, n)
        with campaign_lock(engine, "shop"):
            again = per_call_us(take, n)
        return fresh, again
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="")
    ap.add_argument("-n", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("SQLite (file lock)", f"sqlite:///{Path(tmp) / 'db.sqlite'}")]
        if args.pg:
            from sqlalchemy import text

            schema = "bench_writers"
            admin = make_engine(args.pg)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            backends.append(("PostgreSQL (advisory lock)", f"{args.pg}?options=-csearch_path%3D{schema}"))
        print("| backend | take + let go a campaign lock | re-enter a held lock |")
        print("| --- | ---: | ---: |")
        for name, url in backends:
            fresh, again = locks(url, args.n)
            print(f"| {name} | {fresh:.0f} µs | {again:.1f} µs |")
        if args.pg:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        platform = SimulatedAdPlatform(load_scenario(), state_path=Path(tmp) / "state.json")
        for _ in range(60):
            platform.run_day()
        size = (Path(tmp) / "state.json").stat().st_size
        sync = per_call_us(platform._sync, args.n)
        started = time.perf_counter()
        platform._load()
        load_ms = (time.perf_counter() - started) * 1e3
        print(
            f"\nsimulated platform, 60 days of the bundled example ({size / 1e3:.0f} kB state): "
            f"check for another process's save {sync:.0f} µs per call; reading a changed state {load_ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
