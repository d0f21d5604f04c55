"""Race ``approve``, ``reject`` and ``tick`` against a running daemon, in real processes (the race harness).

    python tests/reliability/race_driver.py --config CFG [--config CFG2 ...] --seed K --prep-days N --out RESULT.json

For each config (one database and data folder each) with its own seed:

1. tick ``--prep-days`` days in this process (``run_one_tick``, what ``tick``
   does), so that experiments wait for a person's approval;
2. fork ``creative-loop run`` (a daemon ticking every fraction of a second);
3. fork, at seeded moments while it runs, ``approve`` of each waiting
   experiment, a seeded share of ``reject`` after it (often while the
   experiment is testing and the daemon is changing its budgets), later
   ``approve`` calls for the pro stage, and extra ``tick`` commands; each is
   the real CLI entry point (``loop.cli.main``) in a process of its own;
4. let the daemon tick a little longer, then SIGTERM it.

Starting Python and importing the loop costs seconds on a busy machine, so
this process imports once and forks every command (a zygote, as
``crash_driver.py`` does); it holds no database connection when it forks.
The result (each command, its exit code and output) goes to ``--out``; the
test then checks that the platform, the database and the audit agree.
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
from sqlmodel import select  # noqa: E402

import loop.daemon  # noqa: E402
import loop.experiments  # noqa: E402,F401  (imported once here, not in every child)
from loop.cli import main  # noqa: E402
from loop.config import load_config  # noqa: E402
from storage.db import session as open_session  # noqa: E402
from storage.models import Experiment  # noqa: E402


def fork_cli(argv: list[str], log: Path) -> int:
    """Run ``creative-loop ARGV`` in a child process, its output in ``log``; returns the pid."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def prepare(config: str, days: int) -> list[str]:
    """Tick ``days`` days here; returns the experiments waiting for approval (then lets go of the database)."""
    cfg = load_config(config)
    for _ in range(days):
        report = loop.daemon.run_one_tick(cfg)
        assert not report.errors, report.errors
    engine = loop.daemon.process_engine(cfg.database_url)
    with open_session(engine) as s:
        waiting = sorted(e.id for e in s.exec(select(Experiment)).all() if e.state == "awaiting_approval")
    for cached in loop.daemon._ENGINES.values():
        cached.dispose()
    loop.daemon._ENGINES.clear()  # the children open their own
    return waiting


def wait_for_text(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {text!r} in {path}")
        time.sleep(0.05)


def race(config: str, seed: int, prep_days: int, span: float) -> dict:
    folder = Path(config).parent
    waiting = prepare(config, prep_days)
    rng = np.random.default_rng(seed)
    plan: list[tuple[float, list[str]]] = []
    for exp_id in waiting:
        approve_at = float(rng.uniform(0.0, span * 0.3))
        plan.append((approve_at, ["approve", exp_id, "--config", config, "--note", f"seed {seed}"]))
        if rng.random() < 0.6:
            plan.append((approve_at + float(rng.uniform(0.0, span * 0.6)), ["reject", exp_id, "--config", config]))
        plan.append((float(rng.uniform(span * 0.5, span)), ["approve", exp_id, "--config", config]))  # the pro stage
    plan += [(float(rng.uniform(0.0, span)), ["tick", "--config", config]) for _ in range(3)]
    plan.sort(key=lambda p: p[0])

    daemon_log = folder / "daemon.log"
    daemon = fork_cli(["run", "--config", config], daemon_log)
    wait_for_text(daemon_log, "daemon started", 60)
    started = time.monotonic()
    running: dict[int, dict] = {}
    for i, (at, argv) in enumerate(plan):
        time.sleep(max(0.0, started + at - time.monotonic()))
        log = folder / f"command-{i}.log"
        running[fork_cli(argv, log)] = {
            "argv": argv[:2] if argv[0] != "tick" else argv[:1],
            "at": round(at, 3),
            "log": str(log),
        }
    commands = []
    for pid, info in running.items():
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        commands.append({**info, "code": code, "output": Path(info["log"]).read_text(errors="replace")})
    time.sleep(0.5)  # a few more of the daemon's ticks after the last command
    os.kill(daemon, signal.SIGTERM)
    _, status = os.waitpid(daemon, 0)
    return {
        "config": config,
        "seed": seed,
        "waiting": waiting,
        "commands": sorted(commands, key=lambda c: c["at"]),
        "daemon_code": os.waitstatus_to_exitcode(status),
        "daemon_log": daemon_log.read_text(errors="replace"),
        "seconds": round(time.monotonic() - started, 1),
    }


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", required=True, help="one per run (its own database and folder)")
    ap.add_argument("--seed", type=int, default=0, help="run i uses seed + i")
    ap.add_argument("--prep-days", type=int, default=12)
    ap.add_argument("--span", type=float, default=3.0, help="seconds over which the commands start")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = [race(c, args.seed + i, args.prep_days, args.span) for i, c in enumerate(args.config)]
    Path(args.out).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main_()
