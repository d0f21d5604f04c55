"""Start-up and overhead, before and after, from one run (issue 14).

    python bench/startup.py [--base COMMIT] [--repeats 3] [--campaigns 20] [--quick] [--same-work CONFIG]

Checks out ``--base`` (default: the commit issue 14's start-up work began
from) into a temporary ``git worktree`` and runs the same commands against
it and against this tree, interleaved, each in a fresh process
(``PYTHONPATH`` picks the tree):

- ``import loop.cli`` and ``creative-loop --help``;
- ``tick``'s imports: ``loop.cli`` and ``loop.daemon``, and every module a
  whole ``creative-loop tick`` of the bundled example loads (recorded from one
  tick on a migrated database, then imported alone); a whole tick;
- the floor under the tick's imports: the libraries it needs (SQLAlchemy's
  ORM, SQLModel, pydantic, numpy, Pillow) imported alone;
- ``creative-loop simulate`` of the bundled example (and whether both trees
  wrote the same JSON); with ``--same-work`` also this tree's under that config
  (the base's defaults: the same work) and whether it gives every figure of
  the base's result;
- the tick's SQL: statements per campaign tick and tick time for
  ``--campaigns`` campaigns x 10 live ads with 30 days of history.

Wall and CPU seconds are the median of ``--repeats`` runs, of the measured
process from start to exit (interpreter start-up included; until 2026-12 the
wall also held the start-up of the wrapper that measures it, 0.1-0.2 s) and,
for imports, of the imports alone timed inside it ("in process"); peak RSS
is the child's ``ru_maxrss``.  Prints a table; never judges the numbers.
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
import json, sys, importlib, time
names = open(sys.argv[1][1:]).read().split() if sys.argv[1].startswith("@") else sys.argv[1].split(",")
t0, c0 = time.perf_counter(), time.process_time()
for name in names:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:  # an alias or a platform-only module that sys.modules held
            pass
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
heavy = sys.argv[2].split(",")
print(json.dumps({"modules": len(sys.modules), "heavy": [m for m in heavy if m in sys.modules],
                  "seconds": seconds, "cpu_seconds": cpu}))
"""

# Run in a tick's folder: one whole `creative-loop tick`, then the modules it loaded, in load order.
TICK_MODULES_CHILD = r"""
import sys
from loop.cli import main
rc = main(["tick"])
names = [m for m in list(sys.modules) if not m.startswith("__main__")]
open(sys.argv[1], "w").write("\n".join(names))
sys.exit(rc)
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
        "import os, resource, subprocess, sys, json, time;"
        "t = time.perf_counter();"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True);"
        "t = time.perf_counter() - t;"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': p.returncode, 'wall': t, 'cpu': r.ru_utime + r.ru_stime,"
        " 'rss': r.ru_maxrss / 1024, 'out': p.stdout}))"
    )
    res = run(tree, ["-c", wrapper, sys.executable, *args], cwd)
    data = json.loads(str(res["stdout"]).strip().splitlines()[-1])
    if data["rc"] != 0:
        raise SystemExit(f"{tree}: python {' '.join(args)} exited {data['rc']}")
    # wall: the measured process's own, start to exit (the wrapper's start-up is not in it)
    return {"wall": data["wall"], "cpu": data["cpu"], "rss": data["rss"], "out": data["out"]}


def _figures(doc: object) -> object:
    """A ``simulate --json`` result without its words: refusal reasons and currency names (added since 10f03ce)."""
    if isinstance(doc, dict):
        return {k: _figures(v) for k, v in doc.items() if k not in ("reason", "currency")}
    if isinstance(doc, list):
        return [_figures(v) for v in doc]
    return doc


def median_of(rows: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=DEFAULT_BASE, help="the commit to compare with (default: before issue 14)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--campaigns", type=int, default=20, help="campaigns of the tick's SQL measurement")
    ap.add_argument("--quick", action="store_true", help="skip simulate and the many-campaign tick")
    ap.add_argument(
        "--same-work", type=Path, default=None,
        help="also run this tree's simulate under this config (e.g. bench/configs/defaults-10f03ce.toml: the base's "
        "defaults, so both trees do the same work) and check it gives every figure of the base's result",
    )  # fmt: skip
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    base = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    trees = {"before": base, "after": ROOT}
    rows: list[tuple[str, str, str]] = []
    try:
        for tree in trees.values():  # warm-up: bytecode written, as after an install
            run(tree, ["-c", "import loop.cli, loop.daemon, loop.simulate, loop.experiments, loop.web.app"])
        # The modules a whole `creative-loop tick` of the bundled example loads (a migrated
        # database; the first tick migrates), per tree: "a tick's imports" below imports them alone.
        tick_modules: dict[str, str] = {}
        for k, t in trees.items():
            folder = work / f"tick-{k}"
            folder.mkdir()
            (folder / "creative-loop.toml").write_text(
                f'[loop]\ndatabase = "sqlite:///{folder / "db.sqlite"}"\ndata_dir = "{folder / "data"}"\n'
            )
            measured(t, ["-m", "loop", "tick"], cwd=folder)
            run(t, ["-c", TICK_MODULES_CHILD, str(folder / "modules.txt")], cwd=folder)
            tick_modules[k] = "@" + str(folder / "modules.txt")
        for name, what in (
            ("import loop.cli", {k: "loop.cli" for k in trees}),
            ("tick's imports (loop.cli, loop.daemon)", {k: "loop.cli,loop.daemon" for k in trees}),
            ("a tick's imports (every module a whole tick loads)", tick_modules),
            # The floor under the tick's imports: the libraries it cannot run without, imported alone.
            ("tick's libraries alone (" + LIBRARIES.replace(",", ", ") + ")", {k: LIBRARIES for k in trees}),
        ):
            res = {k: [] for k in trees}
            for _ in range(args.repeats):
                for k, t in trees.items():
                    res[k].append(measured(t, ["-c", IMPORTS_CHILD, what[k], ",".join(HEAVY)]))
                    res[k][-1].update(json.loads(str(res[k][-1]["out"])))
            info = {k: v[0] for k, v in res.items()}
            rows.append((f"{name}: wall", *(f"{median_of(res[k], 'wall'):.2f} s" for k in trees)))
            rows.append((f"{name}: CPU", *(f"{median_of(res[k], 'cpu'):.2f} s" for k in trees)))
            # The imports themselves, timed in the process (no interpreter start-up, no wrapper)
            rows.append((f"{name}: in process, wall / CPU",
                         *(f"{median_of(res[k], 'seconds'):.2f} s / {median_of(res[k], 'cpu_seconds'):.2f} s"
                           for k in trees)))  # fmt: skip
            rows.append((f"{name}: peak RSS", *(f"{median_of(res[k], 'rss'):.0f} MiB" for k in trees)))
            rows.append((f"{name}: modules", *(str(info[k]["modules"]) for k in trees)))
            rows.append((f"{name}: of {', '.join(HEAVY)}", *(", ".join(info[k]["heavy"]) or "none" for k in trees)))
        res = {k: [measured(t, ["-m", "loop", "--help"]) for _ in range(args.repeats)] for k, t in trees.items()}
        rows.append(("creative-loop --help: wall", *(f"{median_of(res[k], 'wall'):.2f} s" for k in trees)))
        rows.append(("creative-loop --help: peak RSS", *(f"{median_of(res[k], 'rss'):.0f} MiB" for k in trees)))
        # A whole `tick` of the bundled example (migrated above): timed.
        ticks: dict[str, list[dict[str, object]]] = {k: [] for k in trees}
        for _ in range(args.repeats):
            for k, t in trees.items():
                ticks[k].append(measured(t, ["-m", "loop", "tick"], cwd=work / f"tick-{k}"))
        rows.append(("creative-loop tick (migrated): wall", *(f"{median_of(ticks[k], 'wall'):.2f} s" for k in trees)))
        rows.append(("creative-loop tick: peak RSS", *(f"{median_of(ticks[k], 'rss'):.0f} MiB" for k in trees)))
        if not args.quick:
            sims: dict[str, list[dict[str, object]]] = {k: [] for k in trees}
            # With --same-work, this tree also runs under that config (the base's defaults), interleaved.
            runs = {**trees, "same": ROOT} if args.same_work else trees
            sims["same"] = []
            for i in range(args.repeats):
                for k, t in runs.items():
                    out = work / f"sim-{k}-{i}"
                    cmd = ["-m", "loop", "simulate", "--quiet", "--json", str(out / "result.json"), "--out", str(out)]
                    if k == "same":
                        cmd += ["--config", str(args.same_work.resolve())]
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
            if args.same_work:
                name = f"simulate, this tree under {args.same_work.name}"
                rows.append((f"{name}: wall / CPU", "",
                             f"{median_of(sims['same'], 'wall'):.2f} s / {median_of(sims['same'], 'cpu'):.2f} s"))  # fmt: skip
                rows.append((f"{name}: peak RSS", "", f"{median_of(sims['same'], 'rss'):.0f} MiB"))
                figures_same = all(
                    _figures(json.loads((work / f"sim-before-{i}" / "result.json").read_text()))
                    == _figures(json.loads((work / f"sim-same-{i}" / "result.json").read_text()))
                    for i in range(args.repeats)
                )
                rows.append((f"{name}: every figure of the base's result", "", "yes" if figures_same else "NO"))
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
