"""The floor under ``simulate`` of the bundled example: the image work it does and the libraries it imports.

    python bench/simulate_floor.py [--config FILE] [--repeats 3] [--base-seconds S]

Runs the bundled example (the default config, or ``--config``) into a
temporary folder, then, from what the run stored, does its image work again
alone in this process, one piece at a time, in CPU seconds of the whole
process (the pro tier's finishing uses a second thread):

- every draft and pro render from its stored recipe over the parent's stored
  source image, and each one's PNG encoding for the store;
- the fidelity guard of every pro render against its draft;
- every source the simulator served: drawing its art, its PNG, and the loop's
  decoding and encoding of it for the store.

Then it imports the libraries a simulation cannot run without (SQLAlchemy's
ORM, SQLModel, pydantic, numpy, Pillow, scipy.special, scipy.ndimage, typer)
in a fresh process, ``--repeats`` times (median).

Then it does the same image work again on as many threads as the machine has
cores (each piece whole on one thread, as the loop's render threads do) and
times it: what the cores really give side by side, which is less than their
number when they share caches, memory bandwidth or a physical core.

The floor is that import time plus the image work's wall on every core, with
no loop, no SQL and no fatigue test at all: no ``simulate`` of this workload
on this machine can be faster.  The ideal floor spreads the image CPU
perfectly over every core instead (the cores' number, not what they give).
The run's own CPU (every thread) spread perfectly over the cores is the CPU
floor of this implementation.  With ``--base-seconds`` the table also shows
how much CPU a run could use at all and meet the 2x target, and how much of
it the image work leaves to the loop (SQL, fatigue tests, the ledger);
``--base-seconds`` is a baseline's wall, e.g. ``10f03ce``'s from
``bench/startup.py``, and its half the "2x faster" target.  Prints a table;
never judges.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from startup import IMPORTS_CHILD  # noqa: E402  (bench/startup.py: imports names in a child, timed inside it)
from startup import LIBRARIES as TICK_LIBRARIES  # noqa: E402

# The tick's libraries, and what a simulation adds: the posteriors', the fidelity guard's and the command line's.
LIBRARIES = TICK_LIBRARIES + ",scipy.special,scipy.ndimage,typer"


def cpu(spent: Counter[str], kind: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, adding the process's CPU seconds it took to ``spent[kind]``."""
    start = time.process_time()
    out = fn(*args)
    spent[kind] += time.process_time() - start
    return out


def library_imports(repeats: int) -> float:
    """Median wall of importing :data:`LIBRARIES` in a fresh process (the import alone, timed inside it)."""
    cmd = [sys.executable, "-c", IMPORTS_CHILD, LIBRARIES, ""]
    runs = [json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout) for _ in range(repeats)]
    return statistics.median(r["seconds"] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None, help="config TOML (default: the bundled defaults)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base-seconds", type=float, default=None, help="a baseline's simulate wall, for the 2x target")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image
    from sqlmodel import Session, select

    from connectors.ads.scenario import load_scenario
    from connectors.images import procedural
    from loop.config import load_config
    from loop.simulate import run_simulation
    from policies import fidelity
    from storage.images import ImageStore
    from storage.models import Creative

    cfg = load_config(args.config) if args.config else load_config(None)
    with tempfile.TemporaryDirectory() as tmp:
        start, start_cpu = time.perf_counter(), time.process_time()
        run = run_simulation(cfg, load_scenario(None), out_dir=tmp)
        run_wall, run_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        store = ImageStore(Path(tmp) / "images")
        with Session(run.runtime.engine) as session:
            creatives = {c.id: c for c in session.exec(select(Creative)).all()}
        spent: Counter[str] = Counter()
        made: Counter[str] = Counter()

        def root(c: Creative) -> Creative:  # the live ad a variant descends from (its source image)
            while c.parent_id is not None and c.parent_id in creatives:
                c = creatives[c.parent_id]
            return c

        def fetch(ad_id: str, headline: str) -> None:  # the simulator's source_creative, then the loop's _source
            buf = io.BytesIO()
            procedural.source_image(ad_id, headline).save(buf, format="PNG", compress_level=1)
            image = Image.open(io.BytesIO(buf.getvalue()))
            image.load()
            ImageStore.encode(image)

        def piece(c: Creative, source: Image.Image, draft: np.ndarray | None, timed: Counter[str]) -> None:
            """One draft or pro render as the loop does it: render, PNG, and a pro render's fidelity guard."""
            finish = c.tier == "pro"
            kind = "pro renders" if finish else "drafts"
            width = c.width or (procedural.PRO_WIDTH if finish else procedural.DRAFT_WIDTH)
            image = cpu(timed, f"{kind}: render", procedural.render, source, dict(c.recipe), c.headline or "",
                        width, finish)  # fmt: skip
            cpu(timed, f"{kind}: PNG for the store", ImageStore.encode, image)
            if draft is not None:
                cpu(timed, "pro renders: fidelity guard", fidelity.compare, draft, np.asarray(image))

        sources: dict[str, Image.Image] = {}
        lives = [c for c in creatives.values() if c.parent_id is None and c.image_hash]
        for live in lives:
            made["sources"] += 1
            kind = "sources: the simulator's art, its PNG, decoded and encoded for the store"
            cpu(spent, kind, fetch, live.platform_ad_id or "", live.headline or "")
            sources[live.id] = store.open(live.image_hash or "")
        pieces = []
        for c in sorted(creatives.values(), key=lambda c: c.id):
            if c.tier not in ("fast", "pro") or c.generator != "procedural":
                continue
            made["pro renders" if c.tier == "pro" else "drafts"] += 1
            draft = None
            if c.tier == "pro" and c.parent_id in creatives:
                draft = np.asarray(store.open(creatives[c.parent_id].image_hash or "").convert("RGB"))
            pieces.append((c, sources[root(c).id], draft))
        for c, source, draft in pieces:
            piece(c, source, draft, spent)
        cores = os.cpu_count() or 1
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=cores) as pool:
            done = [pool.submit(fetch, live.platform_ad_id or "", live.headline or "") for live in lives]
            # Side by side the process's CPU clock counts every thread: each piece gets a counter to throw away.
            done += [pool.submit(piece, c, source, draft, Counter()) for c, source, draft in pieces]
            for job in done:
                job.result()
        side_by_side = time.perf_counter() - start
    imports = library_imports(args.repeats)
    image_cpu = sum(spent.values())
    floor = imports + side_by_side

    rows = [
        ("the run: drafts, pro renders, sources", f"{made['drafts']}, {made['pro renders']}, {made['sources']}"),
        ("the run in process (no CLI, no interpreter start): wall / CPU of all threads",
         f"{run_wall:.2f} s / {run_cpu:.2f} s"),
    ]  # fmt: skip
    rows += [(f"image CPU, {k}", f"{v:.2f} s") for k, v in sorted(spent.items())]
    rows += [
        ("image CPU in all", f"{image_cpu:.2f} s"),
        (f"the image work again on {cores} threads: wall", f"{side_by_side:.2f} s"),
        (f"what {cores} core(s) give side by side: image CPU / that wall", f"{image_cpu / side_by_side:.2f}x"),
        (f"the libraries' imports alone ({LIBRARIES.replace(',', ', ')}): wall", f"{imports:.2f} s"),
        (f"ideal floor: imports + image CPU / {cores} core(s)", f"{imports + image_cpu / cores:.2f} s"),
        (f"floor: imports + the image work's wall on {cores} threads", f"{floor:.2f} s"),
        ("the loop's CPU: the run's less its image CPU", f"{run_cpu - image_cpu:.2f} s"),
        (f"CPU floor of this run: imports + the run's CPU / {cores} core(s)", f"{imports + run_cpu / cores:.2f} s"),
    ]
    if args.base_seconds:
        target = args.base_seconds / 2
        budget = (target - imports) * cores
        rows += [
            (f"2x target against a {args.base_seconds:.2f} s baseline", f"{target:.2f} s"),
            (f"CPU a run may use and meet it: (target - imports) x {cores} core(s)", f"{budget:.2f} s"),
            ("... of which left for the loop beside this run's image CPU", f"{budget - image_cpu:.2f} s"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measurement':<{width}} | value |\n| {'-' * width} | ---: |")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")


if __name__ == "__main__":
    main()
