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

The floor is that import time plus the image CPU spread perfectly over every
core, with no loop, no SQL and no fatigue test at all: no ``simulate`` of
this workload on this machine can be faster.  With ``--base-seconds`` (a
baseline's wall, e.g. ``10f03ce``'s from ``bench/startup.py``) it also prints
the "2x faster" target beside the floor.  Prints a table; never judges.
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
        start = time.perf_counter()
        run = run_simulation(cfg, load_scenario(None), out_dir=tmp)
        run_wall = time.perf_counter() - start
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

        sources: dict[str, Image.Image] = {}
        for live in (c for c in creatives.values() if c.parent_id is None and c.image_hash):
            made["sources"] += 1
            kind = "sources: the simulator's art, its PNG, decoded and encoded for the store"
            cpu(spent, kind, fetch, live.platform_ad_id or "", live.headline or "")
            sources[live.id] = store.open(live.image_hash or "")
        for c in sorted(creatives.values(), key=lambda c: c.id):
            if c.tier not in ("fast", "pro") or c.generator != "procedural":
                continue
            source = sources[root(c).id]
            finish = c.tier == "pro"
            kind = "pro renders" if finish else "drafts"
            made[kind] += 1
            width = c.width or (procedural.PRO_WIDTH if finish else procedural.DRAFT_WIDTH)
            image = cpu(spent, f"{kind}: render", procedural.render, source, dict(c.recipe), c.headline or "",
                        width, finish)  # fmt: skip
            cpu(spent, f"{kind}: PNG for the store", ImageStore.encode, image)
            if finish and c.parent_id in creatives:
                draft = np.asarray(store.open(creatives[c.parent_id].image_hash or "").convert("RGB"))
                cpu(spent, "pro renders: fidelity guard", fidelity.compare, draft, np.asarray(image))
    imports = library_imports(args.repeats)
    cores = os.cpu_count() or 1
    image_cpu = sum(spent.values())
    floor = imports + image_cpu / cores

    rows = [
        ("the run: drafts, pro renders, sources", f"{made['drafts']}, {made['pro renders']}, {made['sources']}"),
        ("the run in process (no CLI, no interpreter start): wall", f"{run_wall:.2f} s"),
    ]
    rows += [(f"image CPU, {k}", f"{v:.2f} s") for k, v in sorted(spent.items())]
    rows += [
        ("image CPU in all", f"{image_cpu:.2f} s"),
        (f"the libraries' imports alone ({LIBRARIES.replace(',', ', ')}): wall", f"{imports:.2f} s"),
        (f"floor: imports + image CPU / {cores} core(s)", f"{floor:.2f} s"),
    ]
    if args.base_seconds:
        rows.append((f"2x target against a {args.base_seconds:.2f} s baseline", f"{args.base_seconds / 2:.2f} s"))
    width = max(len(k) for k, _ in rows)
    print(f"| {'measurement':<{width}} | value |\n| {'-' * width} | ---: |")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")


if __name__ == "__main__":
    main()
