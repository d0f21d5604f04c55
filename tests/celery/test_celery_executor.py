"""The Celery executor against the machine's Redis, PostgreSQL and real worker processes.

The same scenario and seed run once inline (one process, ``run_one_tick``)
and once through workers (``CeleryExecutor``: one task per campaign and day
on ``ticks``, images on ``generation``); the end states must be equal:
same experiments, decisions, ledger entries, platform mutations and images.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from celery_helpers import Worker, scenario_text, snapshot, two_campaign_config, write_config

from loop.app import open_engine
from loop.config import load_config
from loop.tasks import KILL_AT_ENV, KILL_MARKER_ENV

# Celery's Redis result backend (third party) sometimes drops a socket without
# closing it when its connections are closed; only that warning is ignored.
SOCKET_WARNINGS = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"),
]
pytestmark = [*SOCKET_WARNINGS, pytest.mark.celery, pytest.mark.postgres]

CAMPAIGNS = 3
DAYS = 17  # the noisy-data fatigue defaults detect the day-4-6 onsets by day 13; scaled by day 16


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "scenario.toml"
    path.write_text(scenario_text(CAMPAIGNS))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenario, pg_base) -> dict:
    """The inline executor's end state on the scenario (computed once for the module)."""
    from urllib.parse import quote

    from sqlalchemy import text

    from storage.db import make_engine

    root = tmp_path_factory.mktemp("inline")
    config = write_config(
        root / "inline.toml", data_dir=root / "data", scenario=scenario, executor="inline",
        broker="redis://unused", backend="redis://unused", prefix="",
    )  # fmt: skip
    schema = f"c_{uuid.uuid4().hex[:12]}"
    admin = make_engine(pg_base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in pg_base else "?"
        return _run_inline(config, f"{pg_base}{sep}options={quote(f'-csearch_path={schema}')}", DAYS)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _config(tmp_path: Path, scenario: Path, redis_url: str, prefix: str, **celery: object) -> Path:
    return write_config(
        tmp_path / "celery.toml", data_dir=tmp_path / "celery", scenario=scenario, executor="celery",
        broker=redis_url, backend=redis_url, prefix=prefix, lock_retry_seconds=0.5, **celery,
    )  # fmt: skip


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
        executor.close()
        engine.dispose()


def _start(
    workers: list[Worker], tmp_path: Path, config: Path, database: str, queues: str, pool: str, **env: str
) -> Worker:
    """Start a worker (without waiting for it: workers boot side by side)."""
    w = Worker(config, database, queues, pool, tmp_path / f"worker-{len(workers)}.log", env=env or None)
    workers.append(w)
    return w


def _ready(workers: list[Worker]) -> None:
    for w in workers:
        w.wait_ready()


def _assert_same(inline: dict, queued: dict) -> None:
    for table in inline:
        assert queued[table] == inline[table], table
    states = {row[2] for row in inline["experiments"]}
    # The run must have gone the whole way, or the comparison proves little.
    assert "scaled" in states or "rendering" in states, states
    assert any(row[2] == "actual" for row in inline["ledger"])


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_celery_matches_inline(
    tmp_path, scenario, reference, redis_url, pg_schema, queue_prefix, workers, redis_cleanup, broker, request
):
    broker_url = redis_url if broker == "redis" else request.getfixturevalue("rabbitmq_url")
    celery_cfg = write_config(
        tmp_path / "celery.toml", data_dir=tmp_path / "celery", scenario=scenario, executor="celery",
        broker=broker_url, backend=redis_url, prefix=queue_prefix, lock_retry_seconds=0.5,
    )  # fmt: skip
    database = pg_schema()
    _start(workers, tmp_path, celery_cfg, database, "ticks", "prefork")
    _start(workers, tmp_path, celery_cfg, database, "generation", "solo")
    _ready(workers)
    queued = _run_celery(celery_cfg, database, DAYS)
    _assert_same(reference, queued)


def test_sigkill_of_a_pool_process_mid_task_is_redelivered(
    tmp_path, scenario, reference, redis_url, pg_schema, queue_prefix, workers, redis_cleanup
):
    """The process running a tick dies after recording a launch's intent: the task runs again, nothing doubles."""
    celery_cfg = _config(tmp_path, scenario, redis_url, queue_prefix)
    database = pg_schema()
    marker = tmp_path / "killed"
    kill = {KILL_AT_ENV: "intent:LaunchTestArm", KILL_MARKER_ENV: str(marker)}
    ticks = _start(workers, tmp_path, celery_cfg, database, "ticks", "prefork", **kill)
    _start(workers, tmp_path, celery_cfg, database, "generation", "solo")
    _ready(workers)
    queued = _run_celery(celery_cfg, database, DAYS)
    assert marker.exists(), "the fault was never injected"
    assert ticks.alive()  # only the pool process died; the worker put the task back (reject_on_worker_lost)
    assert "WorkerLostError" in ticks.log.read_text()
    _assert_same(reference, queued)


def test_sigkill_of_a_whole_worker_mid_task_is_redelivered_to_another(
    tmp_path, scenario, reference, redis_url, pg_schema, queue_prefix, workers, redis_cleanup
):
    """A solo worker dies after sending a budget change; its unacknowledged task reaches a new worker."""
    celery_cfg = _config(tmp_path, scenario, redis_url, queue_prefix, visibility_timeout=3.0)
    database = pg_schema()
    marker = tmp_path / "killed"
    kill = {KILL_AT_ENV: "sent:SetBudgets", KILL_MARKER_ENV: str(marker)}
    doomed = _start(workers, tmp_path, celery_cfg, database, "ticks", "solo", **kill)
    _start(workers, tmp_path, celery_cfg, database, "generation", "solo")
    replaced = threading.Event()

    def replace_when_dead() -> None:
        while doomed.alive():
            time.sleep(0.1)
        _start(workers, tmp_path, celery_cfg, database, "ticks", "prefork").wait_ready()
        replaced.set()

    watcher = threading.Thread(target=replace_when_dead, daemon=True)
    watcher.start()
    queued = _run_celery(celery_cfg, database, DAYS)
    assert marker.exists() and replaced.is_set()
    assert doomed.proc.returncode == -signal.SIGKILL
    _assert_same(reference, queued)


def test_a_refused_campaign_is_one_line_and_the_others_tick(
    tmp_path, redis_url, pg_schema, queue_prefix, workers, redis_cleanup
):
    """As inline: a campaign whose currency changed under its ledger is refused, the other campaigns' ticks run,
    and the scheduler raises the one line (exit 2 from `creative-loop tick`)."""
    from datetime import date

    from sqlmodel import Session, select

    from policies.errors import ConfigError
    from storage.ledger import Ledger
    from storage.models import Campaign, DailyMetric

    config = two_campaign_config(
        tmp_path, data_dir=tmp_path / "celery", broker=redis_url, prefix=queue_prefix, lock_retry_seconds=0.5
    )
    database = pg_schema()
    engine = open_engine(database)
    with Session(engine) as s:  # c0 once billed in euros: its ledger holds euro cents
        s.add(Campaign(id="c0", currency="EUR", test_spend_cap_minor=60_000, credit_cap_minor=500))
        s.flush()
        Ledger(s).reserve("c0", "credit", "k", 2, day=date(2025, 6, 1))
        s.commit()
    _start(workers, tmp_path, config, database, "ticks", "solo")
    _ready(workers)
    from loop.executors import CeleryExecutor

    executor = CeleryExecutor(load_config(config), engine=engine)
    try:
        for _ in range(2):  # the second round reads the first day's delivery
            with pytest.raises(ConfigError, match=r"campaigns\[c0\]\.currency: USD, but the ledger holds .* in EUR"):
                executor.tick(timeout=120)
        with Session(engine) as s:
            ingested = {m.creative_id for m in s.exec(select(DailyMetric)).all()}
    finally:
        executor.close()
        engine.dispose()
    assert any(c.startswith("c1") for c in ingested) and not any(c.startswith("c0") for c in ingested)
