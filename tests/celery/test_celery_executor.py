"""The Celery executor against the machine's Redis, PostgreSQL and real worker processes.

The same scenario and seed run once inline (one process, ``run_one_tick``)
and once through workers (``CeleryExecutor``: one task per campaign and day
on ``ticks``, images on ``generation``); the end states must be equal:
same experiments, decisions, ledger entries, platform mutations and images.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from celery_helpers import Worker, scenario_text, snapshot, write_config

from loop.app import open_engine
from loop.config import load_config

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

CAMPAIGNS = 3
DAYS = 16


def _configs(tmp_path: Path, redis_url: str, prefix: str, **celery: object) -> tuple[Path, Path]:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(scenario_text(CAMPAIGNS))
    common = {"scenario": scenario, "broker": redis_url, "backend": redis_url, "prefix": prefix}
    inline = write_config(tmp_path / "inline.toml", data_dir=tmp_path / "inline", executor="inline", **common)
    queued = write_config(
        tmp_path / "celery.toml", data_dir=tmp_path / "celery", executor="celery", **common,
        lock_retry_seconds=0.5, **celery,
    )  # fmt: skip
    return inline, queued


def _run_inline(config: Path, database: str, days: int) -> dict:
    """The inline executor: one process ticks every campaign, then the day passes (as ``run_one_tick``)."""
    from loop.app import build_runtime
    from loop.tick import tick

    cfg = load_config(config)
    engine = open_engine(database)
    try:
        rt = build_runtime(cfg, engine=engine)
        for _ in range(days):
            report = tick(rt, rt.platform.today())
            assert not report.errors
            rt.platform.run_day()
        return snapshot(engine)
    finally:
        engine.dispose()


def _run_celery(config: Path, database: str, days: int) -> dict:
    from loop.executors import CeleryExecutor

    cfg = load_config(config)
    engine = open_engine(database)  # the scheduler migrates; workers only connect
    executor = CeleryExecutor(cfg, engine=engine)
    try:
        for _ in range(days):
            report = executor.tick(timeout=120)
            assert not report.errors
        return snapshot(engine)
    finally:
        executor.app.close()
        engine.dispose()


def _start(
    workers: list[Worker], tmp_path: Path, config: Path, database: str, queues: str, pool: str, **env: str
) -> Worker:
    w = Worker(config, database, queues, pool, tmp_path / f"worker-{len(workers)}.log", env=env or None)
    workers.append(w)
    w.wait_ready()
    return w


def _assert_same(inline: dict, queued: dict) -> None:
    for table in inline:
        assert queued[table] == inline[table], table
    states = {row[2] for row in inline["experiments"]}
    # The run must have gone the whole way, or the comparison proves little.
    assert "scaled" in states or "rendering" in states, states
    assert any(row[2] == "actual" for row in inline["ledger"])


def test_celery_matches_inline(tmp_path, redis_url, pg_schema, queue_prefix, workers, redis_cleanup):
    inline_cfg, celery_cfg = _configs(tmp_path, redis_url, queue_prefix)
    reference = _run_inline(inline_cfg, pg_schema(), DAYS)
    database = pg_schema()
    _start(workers, tmp_path, celery_cfg, database, "ticks", "prefork")
    _start(workers, tmp_path, celery_cfg, database, "generation", "solo")
    queued = _run_celery(celery_cfg, database, DAYS)
    _assert_same(reference, queued)
