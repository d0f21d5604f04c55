"""``tick`` and ``run``: one pass, or passes on a schedule with APScheduler.

The schedule's job store lives in the same database as everything else, so
``run`` after a restart picks up the same job.  SIGTERM/SIGINT stop the
scheduler gracefully: a tick in progress finishes first.

A tick round holds the round lock and, campaign by campaign, the campaign's
lock (``loop.locks``), so ``tick``, ``approve``, ``reject`` and the rest may
run beside the daemon.  ``run`` started while the database is away waits
for it, backing off, and so does a running daemon whose database goes away.
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

from loop.app import build_runtime, make_generators, make_platform, open_engine
from loop.config import Config, load_config
from loop.locks import LockGuard, round_lock, single_instance
from loop.plans import campaign_plans
from loop.tick import TickReport, close_unfinished, tick
from policies.errors import ConfigError, DatabaseUnavailable
from storage.db import is_outage, unavailable

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
    # The platform, the plans and the generators first: a bad config, scenario or missing secret
    # fails before the database is touched.
    platform = make_platform(cfg)
    plans = campaign_plans(cfg, platform.scenario)
    generators = make_generators(cfg)
    rt = build_runtime(
        cfg, engine=process_engine(cfg.database_url), platform=platform, plans=plans, generators=generators,
        dry_run=dry_run,
    )  # fmt: skip
    rt.on_step = kill_hook(os.environ.get(KILL_AT_ENV, ""))
    # One round at a time, whoever runs it: on the simulated platform a round is a day, read under the lock.
    try:
        with round_lock(rt.engine):
            if not dry_run and (closed := close_unfinished(rt.engine)):
                log.warning("closed %d unfinished tick record(s) as failed (a tick process died)", closed)
            # A platform with its own clock (the simulator) says which day it is; the others follow the calendar.
            own_day = platform.today()
            today = own_day if own_day is not None else datetime.now(UTC).date()
            # The day's delivery is saved before the tick is recorded as done.
            end_of_day = platform.advance_day if own_day is not None and not dry_run else None
            report = tick(rt, today, end_of_day=end_of_day, one_record_per_day=True)
    finally:
        platform.close()  # the tick stored its API counts; this closes connections
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
    except ConfigError as exc:
        # A setting the stored state refuses (e.g. a campaign's currency under its ledger): one line, each tick,
        # until it is fixed; the campaigns it does not concern ran.
        log.error("tick: %s", exc)
    except Exception as exc:
        if is_outage(exc):
            why = exc if isinstance(exc, DatabaseUnavailable) else unavailable(_url(config_path), exc)
            log.error("tick failed: %s; the next one resumes from the stored state", why)
            return
        log.exception("tick failed; the next one resumes from the stored state")


def _url(config_path: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(load_config(config_path).database_url)


def _scheduler_class() -> Any:
    from apscheduler.schedulers.base import STATE_STOPPED
    from apscheduler.schedulers.blocking import BlockingScheduler

    class Scheduler(BlockingScheduler):
        """A scheduler that a signal stops from its own loop.

        Shut down from a signal handler (or another thread), APScheduler's
        loop may hand a due job to the stopped executor, which logs "cannot
        schedule new futures after shutdown".  Here the handler only asks
        (:meth:`request_stop`); the loop's own thread shuts down between two
        rounds of submitting, waiting for the tick in progress.
        """

        stop_requested = False

        def request_stop(self) -> None:
            self.stop_requested = True  # a plain assignment: safe inside a signal handler
            # Wake the loop (it may sleep until the next tick, an hour away) from a thread of its own.
            threading.Thread(target=self._wake, name="stop", daemon=True).start()

        def _wake(self) -> None:
            with contextlib.suppress(Exception):  # not started yet: start() wakes itself
                self.wakeup()

        def _process_jobs(self) -> Any:
            if self.stop_requested:
                if self.state != STATE_STOPPED:
                    self.shutdown(wait=True)
                return None
            return super()._process_jobs()

    return Scheduler


def _open_with_backoff(cfg: Config, stopping: threading.Event) -> Engine | None:
    """The database, migrated; while it is away, try again with backoff (None if stopped meanwhile)."""
    backoff = 1.0
    while not stopping.is_set():
        try:
            return open_engine(cfg.database_url)
        except DatabaseUnavailable as exc:
            log.error("%s; trying again in %.0f s", exc, backoff)
        stopping.wait(backoff)
        backoff = min(backoff * 2, 60.0)
    return None


def make_trigger(cfg: Config) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if cfg.loop.cron:
        return CronTrigger.from_crontab(cfg.loop.cron, timezone=cfg.loop.timezone)
    return IntervalTrigger(seconds=(cfg.loop.interval_minutes or 60.0) * 60.0, timezone=cfg.loop.timezone)


def run_daemon(cfg: Config) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    current: dict[str, Any] = {}
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        if not current.get("acting"):
            # Waiting for the database or for another daemon: nothing to finish.
            log.info("signal %s: stopping", signal.Signals(signum).name)
            raise SystemExit(0)
        log.info("signal %s: finishing the current tick, then stopping", signal.Signals(signum).name)
        if "scheduler" in current:
            current["scheduler"].request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    engine = _open_with_backoff(cfg, stopping)
    if engine is None:
        return
    with single_instance(engine) as guard:
        _LOCK["guard"] = guard
        current["acting"] = True
        Scheduler = _scheduler_class()
        backoff = 1.0
        while not stopping.is_set():
            scheduler = Scheduler(
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
            if stopping.is_set():
                break  # the signal came before the scheduler existed
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
