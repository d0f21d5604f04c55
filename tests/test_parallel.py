"""loop.parallel.ordered: results in order, exceptions in place, early stops cancel; drafts render side by side."""

from __future__ import annotations

import threading
import time

import pytest

from connectors.images.procedural import ProceduralGenerator
from loop.parallel import ordered


class Boom(Exception):
    pass


def slow_square(x: int) -> int:
    time.sleep(0.001 * (5 - x % 5))  # later items often finish first
    if x == 7:
        raise Boom(f"item {x}")
    return x * x


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_back_in_order_with_caught_errors_in_place(workers: int) -> None:
    out = list(ordered(slow_square, range(12), workers, catch=(Boom,)))
    assert [o if not isinstance(o, Boom) else "boom" for o in out] == [
        *(x * x for x in range(7)),
        "boom",
        *(x * x for x in range(8, 12)),
    ]


@pytest.mark.parametrize("workers", [1, 3])
def test_an_uncaught_error_surfaces_at_its_item(workers: int) -> None:
    got = []
    with pytest.raises(Boom, match="item 7"):
        for value in ordered(slow_square, range(12), workers):
            got.append(value)
    assert got == [x * x for x in range(7)]


def test_one_worker_runs_on_the_callers_thread() -> None:
    threads = list(ordered(lambda _: threading.get_ident(), range(3), 1))
    assert threads == [threading.get_ident()] * 3


def test_stopping_early_starts_no_more_work() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            started.append(x)
        time.sleep(0.005)
        return x

    results = ordered(work, range(100), 2)
    assert next(results) == 0
    results.close()
    count = len(started)
    time.sleep(0.05)
    assert len(started) == count  # nothing was started after close()
    assert count <= 1 + 2 * 2  # at most the look-ahead window was ever asked for


def test_the_procedural_generator_renders_the_same_pixels_from_threads() -> None:
    from PIL import Image

    from connectors.images.base import Brief

    gen = ProceduralGenerator()
    source = Image.new("RGB", (300, 200), (40, 90, 160))
    brief = Brief(headline="Spring sale")
    seeds = list(range(8))
    alone = [gen.draft(source, brief, s).image.tobytes() for s in seeds]
    side_by_side = [r.image.tobytes() for r in ordered(lambda s: gen.draft(source, brief, s), seeds, 4)]  # type: ignore[union-attr]
    assert side_by_side == alone


def test_drafts_rendered_side_by_side_store_what_one_at_a_time_stores(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The bundled example through the loop: same variants, images, credits and result with 1 or 4 threads."""
    from sqlmodel import select

    from connectors.ads.scenario import load_scenario
    from loop.config import load_config
    from loop.simulate import run_simulation
    from storage.db import make_engine
    from storage.db import session as open_session
    from storage.models import Creative, LedgerEntry

    def run(workers: int) -> tuple[object, list[tuple[object, ...]], list[tuple[object, ...]]]:
        monkeypatch.setattr(ProceduralGenerator, "concurrency", workers)
        out = tmp_path / f"w{workers}"
        result = run_simulation(load_config(None), load_scenario(None), days=30, out_dir=out)
        with open_session(make_engine(f"sqlite:///{out / 'simulate.db'}")) as s:
            variants = sorted((c.id, c.image_hash, c.seed, c.status) for c in s.exec(select(Creative)).all())
            ledger = sorted((e.key, e.kind, e.amount_minor) for e in s.exec(select(LedgerEntry)).all())
        return result.result, variants, ledger

    one, four = run(1), run(4)
    assert sum(1 for v in one[1] if v[0].count(":v")) >= 20  # drafts were made
    assert four == one
