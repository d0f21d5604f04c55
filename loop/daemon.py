"""``tick`` and ``run``: one pass, or passes on a schedule with APScheduler.

The schedule's job store lives in the same database as everything else, so
``run`` after a restart picks up the same job.  SIGTERM/SIGINT stop the
scheduler gracefully: a tick in progress finishes first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from connectors.ads.sharded import ShardedSimulatedAdPlatform
from connectors.ads.simulated import SimulatedAdPlatform
from loop.app import build_runtime, make_platform, open_engine, scenario_for
from loop.config import Config, load_config
from loop.locks import LockGuard, single_instance
from loop.tick import TickReport, tick

log = logging.getLogger("creative_loop.daemon")
JOB_ID = "creative-loop-tick"
# Fault injection for crash tests: SIGKILL this process when the tick reaches
# the named step point ("sync", "sent:LaunchTestArm", ...; "name#2" = 2nd time).
KILL_AT_ENV = "CREATIVE_LOOP_KILL_AT"
# The running daemon's lock, checked before each scheduled tick (the scheduler calls the job by name).
_LOCK: dict[str, LockGuard] = {}
_ENGINES: dict[str, Engine] = {}


def kill_hook(spec: str) -> Callable[[str], None] | None:
    if not spec:
        return None
    name, _, nth = spec.partition("#")
    seen = {"n": 0}

    def hook(step: str) -> None:
        if step == name:
            seen["n"] += 1
            if seen["n"] >= int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def process_engine(url: str) -> Engine:
    """One engine (and one migration check) per database for this process.

    A daemon ticks for months: an engine per tick kept its dialect's caches
    alive and grew the process by ~0.3 MB a tick (bench/load.py soak).
    """
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = open_engine(url)
    return engine


def run_one_tick(cfg: Config, dry_run: bool = False) -> TickReport:
    """One tick as of today. On the simulated platform a tick is one simulated day.

    With ``executor = "celery"`` the campaigns' ticks run on the workers and
    this waits for them (a dry run stays in this process: it changes nothing).
    """
    if cfg.loop.executor == "celery" and not dry_run:
        from loop.executors import CeleryExecutor

        executor = CeleryExecutor(cfg)
        try:
            return executor.tick()
        finally:
            executor.close()
    # The platform first: a bad config or a missing secret fails before the database is touched.
    platform = make_platform(cfg, scenario_for(cfg) if cfg.loop.platform == "simulated" else None)
    rt = build_runtime(cfg, engine=process_engine(cfg.database_url), platform=platform, dry_run=dry_run)
    rt.on_step = kill_hook(os.environ.get(KILL_AT_ENV, ""))
    platform = rt.platform
    simulated = isinstance(platform, SimulatedAdPlatform | ShardedSimulatedAdPlatform)
    today = platform.today() if simulated else datetime.now(UTC).date()
    try:
        report = tick(rt, today)
    finally:
        platform.close()  # the tick stored its API counts; this closes connections
    if simulated and not dry_run:
        platform.run_day()
    log.info(
        "tick %s: %d detected, %d transitions, %d errors",
        today, len(report.detected), len(report.transitions), len(report.errors),
    )  # fmt: skip
    return report


def scheduled_tick(config_path: str) -> None:
    """The scheduler's job (referenced by name so the job store can persist it).

    With ``executor = "celery"`` it only sends each campaign's tick to the workers.
    """
    guard = _LOCK.get("guard")
    if guard is not None and not guard.held():
        return  # the database is away, or another daemon took over: do nothing this time
    try:
        cfg = load_config(config_path)
        if cfg.loop.executor == "celery":
            from loop.executors import CeleryExecutor

            executor = CeleryExecutor(cfg)
            try:
                executor.schedule()
            finally:
                executor.close()
            return
        run_one_tick(cfg)
    except Exception:
        log.exception("tick failed; the next one resumes from the stored state")


def make_trigger(cfg: Config) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if cfg.loop.cron:
        return CronTrigger.from_crontab(cfg.loop.cron, timezone=cfg.loop.timezone)
    return IntervalTrigger(seconds=(cfg.loop.interval_minutes or 60.0) * 60.0, timezone=cfg.loop.timezone)


def run_daemon(cfg: Config) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    engine = open_engine(cfg.database_url)
    with single_instance(engine, cfg.data_dir) as guard:
        _LOCK["guard"] = guard
        current: dict[str, Any] = {}
        stopping = threading.Event()

        def stop(signum: int, _frame: object) -> None:
            log.info("signal %s: finishing the current tick, then stopping", signal.Signals(signum).name)
            stopping.set()
            if "scheduler" in current:
                with contextlib.suppress(Exception):
                    current["scheduler"].shutdown(wait=True)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        backoff = 1.0
        while not stopping.is_set():
            scheduler = BlockingScheduler(
                jobstores={"default": SQLAlchemyJobStore(engine=engine)},
                job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 3600},
                timezone=cfg.loop.timezone,
            )
            scheduler.add_job(
                "loop.daemon:scheduled_tick",
                make_trigger(cfg),
                args=[str(cfg.path.resolve())],
                id=JOB_ID,
                replace_existing=True,
                next_run_time=datetime.now(UTC),
            )
            current["scheduler"] = scheduler
            log.info("daemon started (%s)", cfg.loop.cron or f"every {cfg.loop.interval_minutes} min")
            started = time.monotonic()
            try:
                scheduler.start()
                break  # shut down by a signal
            except Exception as exc:
                # The job store lives in the database: an outage stops the scheduler. Back off, start again.
                if stopping.is_set():
                    break
                if time.monotonic() - started > 300:
                    backoff = 1.0
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.error("scheduler stopped (%s); starting again in %.0f s", reason, backoff)
                with contextlib.suppress(Exception):
                    scheduler.shutdown(wait=False)
                stopping.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        log.info("daemon stopped")


__all__ = ["run_one_tick", "run_daemon", "scheduled_tick", "date"]
