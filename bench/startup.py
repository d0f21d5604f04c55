"""Start-up and overhead, before and after, from one run (issue 14).

    python bench/startup.py [--base COMMIT] [--repeats 3] [--campaigns 20] [--quick]

Checks out ``--base`` (default: the commit issue 14's start-up work began
from) into a temporary ``git worktree`` and runs the same commands against
it and against this tree, interleaved, each in a fresh process
(``PYTHONPATH`` picks the tree):

- ``import loop.cli`` and ``creative-loop --help``;
- ``tick``'s imports (``loop.cli`` and ``loop.daemon``) and a whole
  ``creative-loop tick`` of the bundled example on a migrated database;
- the floor under the tick's imports: the libraries it needs (SQLAlchemy's
  ORM, SQLModel, pydantic, numpy, Pillow) imported alone;
- ``creative-loop simulate`` of the bundled example (and whether both trees
  wrote the same JSON);
- the tick's SQL: statements per campaign tick and tick time for
  ``--campaigns`` campaigns x 10 live ads with 30 days of history.

Wall and CPU seconds are the median of ``--repeats`` runs; peak RSS is the
child's ``ru_maxrss``.  Prints a table; never judges the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# main when issue 14's start-up work began (every CLI call imported the tick, scipy.stats, ...).
DEFAULT_BASE = "10f03ce7c372c3a2bd2747396050510f9a4d0a61"
LIBRARIES = "sqlalchemy.orm,sqlmodel,pydantic,numpy,PIL.Image"
HEAVY = ("matplotlib", "fastapi", "starlette", "jinja2", "scipy.stats", "torch", "sqlalchemy", "alembic", "numpy")

# Run in a child with PYTHONPATH=<tree>: the tick of many campaigns, counting statements.
TICK_CHILD = r"""
import json, sys, tempfile, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
from connectors.ads.scenario import Scenario
from loop.config import load_config
from loop.simulate import run_simulation

campaigns, ads, days = (int(a) for a in sys.argv[1:4])
scen = Scenario.model_validate({
    "seed": 3, "days": days,
    "campaigns": [{
        "id": f"c{c:03d}", "daily_impressions": 2000 * ads, "cpm": 8.0, "test_daily_budget": 20.0,
        "test_spend_cap": 300.0, "fast_credit_cost": 0.02, "pro_credit_cost": 0.6, "credit_cap": 50.0,
        "creatives": [{"id": f"c{c:03d}-a{a:02d}", "ctr": 0.01 + 0.0005 * a} for a in range(ads)],
    } for c in range(campaigns)],
})
count = [0]
event.listen(Engine, "before_cursor_execute", lambda *a: count.__setitem__(0, count[0] + 1))
marks = []
def on_day(i, n):
    marks.append((time.perf_counter(), time.process_time(), count[0]))
cfg = load_config(None)
with tempfile.TemporaryDirectory() as tmp:
    marks.append((time.perf_counter(), time.process_time(), 0))
    run_simulation(cfg, scen, out_dir=tmp, on_day=on_day)
# Steady state: the second half of the days (a day = the tick plus the simulator's delivery).
half = marks[len(marks) // 2 :]
median = lambda xs: sorted(xs)[len(xs) // 2]
print(json.dumps({f: median([b[i] - a[i] for a, b in zip(half, half[1:])]) for i, f in enumerate(("wall", "cpu", "stmts"))}))
"""

IMPORTS_CHILD = r"""
import json, sys, importlib
for name in sys.argv[1].split(","):
    importlib.import_module(name)
heavy = sys.argv[2].split(",")
print(json.dumps({"modules": len(sys.modules), "heavy": [m for m in heavy if m in sys.modules]}))
"""


def run(tree: Path, args: list[str], cwd: Path | None = None) -> dict[str, object]:
    """Run ``python ARGS`` with ``tree`` first on the path; wall, CPU, peak RSS and stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: bytecode cached
    env["PYTHONPATH"] = str(tree)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=cwd or tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate()  # reaps the child: its rusage is in RUSAGE_CHILDREN below
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: python {' '.join(args)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall": wall, "stdout": out}


def measured(tree: Path, args: list[str], cwd: Path | None = None) -> dict[str, object]:
    """:func:`run` under a wrapper that reports the child's own CPU time and peak RSS."""
    wrapper = (
        "import os, resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True);"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': p.returncode, 'cpu': r.ru_utime + r.ru_stime, 'rss': r.ru_maxrss / 1024,"
        " 'out': p.stdout}))"
    )
    res = run(tree, ["-c", wrapper, sys.executable, *args], cwd)
    data = json.loads(str(res["stdout"]).strip().splitlines()[-1])
    if data["rc"] != 0:
        raise SystemExit(f"{tree}: python {' '.join(args)} exited {data['rc']}")
    return {"wall": res["wall"], "cpu": data["cpu"], "rss": data["rss"], "out": data["out"]}


def median_of(rows: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=DEFAULT_BASE, help="the commit to compare with (default: before issue 14)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--campaigns", type=int, default=20, help="campaigns of the tick's SQL measurement")
    ap.add_argument("--quick", action="store_true", help="skip simulate and the many-campaign tick")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    base = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    trees = {"before": base, "after": ROOT}
    rows: list[tuple[str, str, str]] = []
    try:
        for tree in trees.values():  # warm-up: bytecode written, as after an install
            run(tree, ["-c", "import loop.cli, loop.daemon, loop.simulate, loop.experiments, loop.web.app"])
        for name, what in (
            ("import loop.cli", "loop.cli"),
            ("tick's imports", "loop.cli,loop.daemon"),
            # The floor under the tick's imports: the libraries it cannot run without, imported alone.
            ("tick's libraries alone (" + LIBRARIES.replace(",", ", ") + ")", LIBRARIES),
        ):
            res = {k: [measured(t, ["-c", IMPORTS_CHILD, what, ",".join(HEAVY)]) for _ in range(args.repeats)]
                   for k, t in trees.items()}  # fmt: skip
            info = {k: json.loads(str(v[0]["out"])) for k, v in res.items()}
            rows.append((f"{name}: wall", *(f"{median_of(res[k], 'wall'):.2f} s" for k in trees)))
            rows.append((f"{name}: CPU", *(f"{median_of(res[k], 'cpu'):.2f} s" for k in trees)))
            rows.append((f"{name}: peak RSS", *(f"{median_of(res[k], 'rss'):.0f} MiB" for k in trees)))
            rows.append((f"{name}: modules", *(str(info[k]["modules"]) for k in trees)))
            rows.append((f"{name}: of {', '.join(HEAVY)}", *(", ".join(info[k]["heavy"]) or "none" for k in trees)))
        res = {k: [measured(t, ["-m", "loop", "--help"]) for _ in range(args.repeats)] for k, t in trees.items()}
        rows.append(("creative-loop --help: wall", *(f"{median_of(res[k], 'wall'):.2f} s" for k in trees)))
        rows.append(("creative-loop --help: peak RSS", *(f"{median_of(res[k], 'rss'):.0f} MiB" for k in trees)))
        # A whole `tick` of the bundled example: the first one migrates; the next ones are timed.
        ticks: dict[str, list[dict[str, object]]] = {}
        for k, t in trees.items():
            folder = work / f"tick-{k}"
            folder.mkdir()
            (folder / "creative-loop.toml").write_text(
                f'[loop]\ndatabase = "sqlite:///{folder / "db.sqlite"}"\ndata_dir = "{folder / "data"}"\n'
            )
            measured(t, ["-m", "loop", "tick"], cwd=folder)
            ticks[k] = []
        for _ in range(args.repeats):
            for k, t in trees.items():
                ticks[k].append(measured(t, ["-m", "loop", "tick"], cwd=work / f"tick-{k}"))
        rows.append(("creative-loop tick (migrated): wall", *(f"{median_of(ticks[k], 'wall'):.2f} s" for k in trees)))
        rows.append(("creative-loop tick: peak RSS", *(f"{median_of(ticks[k], 'rss'):.0f} MiB" for k in trees)))
        if not args.quick:
            sims: dict[str, list[dict[str, object]]] = {k: [] for k in trees}
            for i in range(args.repeats):
                for k, t in trees.items():
                    out = work / f"sim-{k}-{i}"
                    cmd = ["-m", "loop", "simulate", "--quiet", "--json", str(out / "result.json"), "--out", str(out)]
                    sims[k].append(measured(t, cmd, cwd=work))
            same = all(
                (work / f"sim-before-{i}" / "result.json").read_bytes()
                == (work / f"sim-after-{i}" / "result.json").read_bytes()
                for i in range(args.repeats)
            )
            rows.append(("simulate (bundled example): wall", *(f"{median_of(sims[k], 'wall'):.2f} s" for k in trees)))
            rows.append(("simulate: CPU", *(f"{median_of(sims[k], 'cpu'):.2f} s" for k in trees)))
            rows.append(("simulate: peak RSS", *(f"{median_of(sims[k], 'rss'):.0f} MiB" for k in trees)))
            rows.append(("simulate: same --json result", "", "yes" if same else "NO"))
            n = args.campaigns
            ticks_of = {k: [] for k in trees}
            for _ in range(args.repeats):
                for k, t in trees.items():
                    out = str(run(t, ["-c", TICK_CHILD, str(n), "10", "30"])["stdout"]).strip().splitlines()[-1]
                    ticks_of[k].append(json.loads(out))
            rows.append((f"tick of {n} campaigns x 10 ads: SQL statements",
                         *(f"{median_of(ticks_of[k], 'stmts'):.0f}" for k in trees)))  # fmt: skip
            rows.append((f"tick of {n} campaigns x 10 ads: per campaign",
                         *(f"{median_of(ticks_of[k], 'stmts') / n:.1f}" for k in trees)))  # fmt: skip
            rows.append((f"tick of {n} campaigns + the day's delivery: wall",
                         *(f"{median_of(ticks_of[k], 'wall'):.2f} s" for k in trees)))  # fmt: skip
            rows.append((f"tick of {n} campaigns + the day's delivery: CPU",
                         *(f"{median_of(ticks_of[k], 'cpu'):.2f} s" for k in trees)))  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"before: {args.base[:10]}   after: this tree ({head.stdout.strip()}, with its uncommitted changes)")
    print(f"median of {args.repeats} run(s) each, interleaved; {os.cpu_count()} CPU(s)")
    print()
    print("| measurement | before | after |")
    print("| --- | ---: | ---: |")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
