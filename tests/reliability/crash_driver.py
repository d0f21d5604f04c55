"""Run a simulated campaign in tick processes that are SIGKILLed over and over (the crash harness).

    python tests/reliability/crash_driver.py --db URL --dir DIR --scenario S --days N \
        [--seed K --density P --timer-every M] --out RESULT.json

Starting Python and importing the loop takes a second or more, so this
process imports everything once and then *forks* a fresh tick process for
each segment of the run (a zygote).  Each child builds its own engine,
platform (from the platform's JSON state) and runtime, exactly as a
restarted daemon would, ticks day after day, and is killed with SIGKILL:

* at a seeded step point: ``(day, i)`` = the i-th step point (``sync``,
  ``intent:LaunchTestArm``, ``generated``...) the child reaches in that
  day's tick.  Every day's tick starts again at ``sync`` after a restart, so
  targets ``(d, 1), (d, 2), ...`` are each reached once, in order, and every
  kill is at a different point of the run;
* or, every ``--timer-every``-th segment, by this parent after a seeded
  random delay, wherever the child happens to be (inside a commit, a file
  write, the platform's delivery...).

The parent never opens a database connection itself (beyond the migration,
disposed before the first fork), so nothing is shared with the children.
Without ``--density`` the run is uninterrupted (the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import loop.experiments  # noqa: E402,F401  (imported once here, not lazily in every child)
import policies.bandit  # noqa: E402,F401
import policies.fatigue  # noqa: E402,F401
from connectors.ads.faults import FaultPlan  # noqa: E402
from connectors.ads.scenario import load_scenario  # noqa: E402
from connectors.ads.simulated import SimulatedAdPlatform  # noqa: E402
from connectors.images.procedural import ProceduralGenerator  # noqa: E402
from connectors.retry import NO_WAIT  # noqa: E402
from loop.config import load_config  # noqa: E402
from loop.plans import campaign_plans  # noqa: E402
from loop.runtime import Runtime  # noqa: E402
from loop.tick import close_unfinished, tick  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.images import ImageStore  # noqa: E402

DONE, KILLED_AT_STEP = 0, 86


def child(
    args: argparse.Namespace, targets: frozenset[tuple[int, int]], log_fd: int, db: str = "", folder: str = ""
) -> None:
    """One tick process: resume from what is stored, tick until done or killed."""
    db, folder = db or args.db, folder or args.dir
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "policy.toml").touch()
    cfg = load_config(Path(folder) / "policy.toml")  # an empty file: the default policy settings
    scenario = load_scenario(args.scenario)
    engine = make_engine(db)
    faults = FaultPlan(rate=args.fault_rate, slow_seconds=0.002, retry_after=0.001)  # every kind of fault
    platform = SimulatedAdPlatform(scenario, state_path=Path(folder) / "platform.json", faults=faults)
    rt = Runtime(
        engine=engine,
        platform=platform,
        generators={"procedural": ProceduralGenerator(draft_width=128, pro_width=256)},
        images=ImageStore(Path(folder) / "images"),
        plans=campaign_plans(cfg, scenario),
        approval="none",
        backfill_days=2,
        retry=NO_WAIT,
    )
    seen = {"day": -1, "i": 0}

    def hook(step: str) -> None:
        if seen["day"] != platform.day:
            seen["day"], seen["i"] = platform.day, 0
        seen["i"] += 1
        if (platform.day, seen["i"]) in targets:
            os.write(log_fd, f"{platform.day} {seen['i']} {step}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)

    rt.on_step = hook
    close_unfinished(engine)  # as a restarted daemon's round does: the killed tick's record is closed
    while platform.day < args.days:
        # A round as `tick` and `run` run it: the day's delivery is saved before the tick is recorded
        # done. Errors (injected faults) are in the report; the next day retries.
        tick(rt, platform.today(), end_of_day=platform.run_day, one_record_per_day=True)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--days", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--density", type=float, default=0.0, help="share of (day, i) step points killed at")
    ap.add_argument("--max-steps", type=int, default=40, help="step points per day considered")
    ap.add_argument("--timer-every", type=int, default=0, help="every n-th segment: kill after a random delay")
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--ref-db", default="", help="also run the uninterrupted reference here, first, in this process")
    ap.add_argument("--ref-dir", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    started = time.monotonic()
    for db in (args.ref_db, args.db):
        if db:
            engine = make_engine(db)
            migrate(engine)
            engine.dispose()
    if args.ref_db:
        # Uninterrupted, and it warms this process's caches for every child forked below.
        child(args, frozenset(), -1, args.ref_db, args.ref_dir)
    reference_s = time.monotonic() - started

    rng = np.random.default_rng(args.seed)
    grid = rng.random((args.days, args.max_steps)) < args.density
    pending = sorted((int(d), int(i) + 1) for d, i in zip(*np.nonzero(grid), strict=True))
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    log_path = Path(args.dir) / "kills.log"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    segments = timer_kills = 0
    started = time.monotonic()
    while True:
        segments += 1
        timer = bool(args.timer_every) and segments % args.timer_every == 0
        logged = log_path.stat().st_size
        pid = os.fork()
        if pid == 0:  # the tick process
            code = 1
            try:
                child(args, frozenset(pending), log_fd)
                code = DONE
            except BaseException as exc:  # a real failure: report it, the parent stops
                os.write(2, f"child failed: {type(exc).__name__}: {exc}\n".encode())
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        if timer:  # unless it reaches its next step target first
            time.sleep(float(rng.uniform(0.002, 0.1)))
            os.kill(pid, signal.SIGKILL)  # a process that already ended is a zombie until waited for
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            if log_path.stat().st_size > logged:
                # drop every target up to and including the one hit (the child logged it)
                last = log_path.read_text().splitlines()[-1].split()
                hit = (int(last[0]), int(last[1]))
                pending = [t for t in pending if t > hit]
            else:
                timer_kills += 1
            continue
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == DONE:
            break
        raise SystemExit(f"tick process ended with status {status}")
    os.close(log_fd)
    kills = [line.split(" ", 2) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    Path(args.out).write_text(
        json.dumps(
            {
                "segments": segments,
                "step_kills": len(kills),
                "distinct_step_kills": len({(d, i) for d, i, _ in kills}),
                "kill_steps": sorted({s for _, _, s in kills}),
                "timer_kills": timer_kills,
                "reference_seconds": round(reference_s, 1),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
