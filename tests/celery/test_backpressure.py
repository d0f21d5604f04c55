"""Backpressure: new exploration waits while the generation queue is full (real Redis, no workers)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from celery_helpers import two_campaign_config
from sqlmodel import Session, select

from loop.app import build_runtime, open_engine
from loop.celery_app import GENERATE_TASK, create_app, queue_depth
from loop.config import load_config
from loop.executors import CeleryExecutor, admit, exploration_demand
from loop.tasks import QueuedRuntime, make_queued_generators
from loop.tick import tick
from storage.models import Experiment, LedgerEntry

# Celery's Redis result backend (third party) sometimes drops a socket without
# closing it when its connections are closed; only that warning is ignored.
SOCKET_WARNINGS = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]
pytestmark = [*SOCKET_WARNINGS, pytest.mark.celery]


@pytest.fixture
def setup(tmp_path: Path, redis_url: str, queue_prefix: str, redis_cleanup):  # type: ignore[no-untyped-def]
    config = two_campaign_config(
        tmp_path, data_dir=tmp_path / "data", broker=redis_url, prefix=queue_prefix, generation_queue_limit=6
    )
    cfg = load_config(config)
    engine = open_engine(f"sqlite:///{tmp_path / 'test.db'}")
    app = create_app(cfg)
    yield cfg, engine, app
    app.close()
    engine.dispose()


def _queued_runtime(cfg, engine, app, hold: bool) -> QueuedRuntime:  # type: ignore[no-untyped-def]
    base = build_runtime(cfg, engine=engine)
    return QueuedRuntime(
        engine=engine, platform=base.platform, generators=make_queued_generators(app, cfg, base.images),
        images=base.images, plans=base.plans, approval="none", hold_exploration=hold,
    )  # fmt: skip


def _days_until_detected(cfg, engine, app) -> QueuedRuntime:  # type: ignore[no-untyped-def]
    for _ in range(15):
        rt = _queued_runtime(cfg, engine, app, hold=True)
        tick(rt, rt.platform.today())
        rt.platform.run_day()
        with Session(engine) as s:
            if len(s.exec(select(Experiment)).all()) == 2:
                return rt
    raise AssertionError("no fatigue detected in 15 days")


def test_held_experiments_stay_detected_and_reserve_nothing(setup):
    cfg, engine, app = setup
    rt = _days_until_detected(cfg, engine, app)
    assert rt.generation_jobs == []
    with Session(engine) as s:
        assert {e.state for e in s.exec(select(Experiment)).all()} == {"detected"}
        assert s.exec(select(LedgerEntry).where(LedgerEntry.account == "credit")).all() == []
    # Room again: the next tick reserves the credits and queues the drafts (4 variants each).
    rt = _queued_runtime(cfg, engine, app, hold=False)
    tick(rt, rt.platform.today())
    assert sorted(j["campaign"] for j in rt.generation_jobs) == ["c0"] * 4 + ["c1"] * 4
    with Session(engine) as s:
        assert {e.state for e in s.exec(select(Experiment)).all()} == {"exploring"}
        assert len(s.exec(select(LedgerEntry).where(LedgerEntry.account == "credit")).all()) == 2 * (1 + 4)


def test_admission_never_exceeds_the_room_left(setup):
    cfg, engine, app = setup
    rt = _days_until_detected(cfg, engine, app)
    with Session(engine) as s:
        demand = {p.id: exploration_demand(s, p) for p in rt.plans}
        assert demand == {"c0": 4, "c1": 4}  # 4 variants each, well within the credits
        assert admit(s, rt.plans, depth=6, limit=6) == {"c0": False, "c1": False}  # the queue is full
        assert admit(s, rt.plans, depth=0, limit=6) == {"c0": True, "c1": False}  # room for one: the oldest
        assert admit(s, rt.plans, depth=0, limit=8) == {"c0": True, "c1": True}


def test_scheduler_reads_the_generation_queue_and_holds_exploration(setup):
    cfg, engine, app = setup
    executor = CeleryExecutor(cfg, app=app, engine=engine)
    try:
        assert queue_depth(app, "generation") == 0
        assert {o.explore for o in executor.orders()} == {True}
        for i in range(6):  # jobs nobody consumes: the GPU workers are busy
            executor.sender.send_task(GENERATE_TASK, args=({"n": i},), queue=app.queue_name("generation"))
        assert queue_depth(app, "generation") == 6
        orders = executor.orders()
        assert {o.explore for o in orders} == {False}
        assert {o.day for o in orders} == {date(2026, 1, 5)}
    finally:
        executor.sender.close()
