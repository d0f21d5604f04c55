"""Who runs the ticks: this process (``inline``, the default) or Celery workers (``celery``).

With ``executor = "celery"`` the scheduler (``creative-loop run``, or
``creative-loop tick``, which also waits) only sends one
``tick_campaign(campaign, day, explore)`` task per campaign to the ``ticks``
queue; ``creative-loop worker`` processes run them (``loop.tasks``).

Backpressure: before sending, the scheduler reads the ``generation`` queue's
depth.  ``room = generation_queue_limit - depth`` generation jobs may be
added by new exploration.  Experiments already detected and waiting for room
are admitted first, oldest first, each counting the drafts its credits allow
(``min(drafts, credit left // cost)``; one the credits cannot pay for is let
through, since it can only be abandoned); a campaign not admitted gets
``explore=False`` and its experiments stay ``detected``.  Campaigns with no
waiting experiment may explore while room is left, so the queue can exceed
its limit by at most one round of fresh detections; once it is full, no
campaign explores.

A campaign is ticked by one worker at a time: the task takes the campaign's
lock of ``loop.locks`` without waiting, the one the CLI and the dashboard take, a
PostgreSQL advisory lock keyed by the schema and the campaign id (a file
lock beside the SQLite database, which only suits workers on one machine).
PostgreSQL releases the lock of a dead worker's connection, so a
redelivered task can take it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loop.cli_support import ConfigOpt, config_from, setup_logging
from policies.errors import ConfigError, CreativeLoopError
from storage.states import ExperimentState

if TYPE_CHECKING:  # the CLI imports this module to register `worker`: the database stack loads on use
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from loop.config import Config
    from loop.plans import CampaignPlan
    from loop.tick import TickReport

log = logging.getLogger("creative_loop.executors")


# -- backpressure -------------------------------------------------------------------------
def exploration_demand(session: Session, plan: CampaignPlan, tiering: str = "tiered") -> int:
    """Generation jobs the campaign's waiting (``detected``) experiments would queue, within its credits."""
    from sqlalchemy import func
    from sqlmodel import select

    from storage.ledger import Ledger
    from storage.models import Experiment

    waiting = session.exec(
        select(func.count())
        .select_from(Experiment)
        .where(Experiment.campaign_id == plan.id, Experiment.state == ExperimentState.DETECTED)
    ).one()
    if not waiting:
        return 0
    per_variant = plan.pro_credit_cost if tiering == "pro-only" else plan.fast_credit_cost
    needs_pro = plan.pro_credit_cost if tiering == "tiered" and plan.settings.reserve_pro_credit else 0
    try:
        ledger = Ledger(session)
        left = ledger.room(plan.id, "credit", ledger.current_day())
    except CreativeLoopError:  # never ticked: no campaign row yet
        left = plan.credit_cap
    demand = 0
    wanted = plan.drafts(tiering)
    for _ in range(int(waiting)):
        fit = wanted if per_variant == 0 else min(wanted, max(0, left - needs_pro) // per_variant)
        if fit < 2:
            break  # the credits cannot pay: the tick abandons, no job is queued
        demand += fit
        left -= needs_pro + fit * per_variant
    return demand


def admit(session: Session, plans: list[CampaignPlan], depth: int, limit: int) -> dict[str, bool]:
    """Which campaigns may start exploration this round (see the module docstring)."""
    from sqlalchemy import func
    from sqlmodel import select

    from storage.models import Experiment

    room = limit - depth
    demand = {p.id: exploration_demand(session, p) for p in plans}
    oldest = dict(
        session.exec(
            select(Experiment.campaign_id, func.min(Experiment.created_at))
            .where(Experiment.state == ExperimentState.DETECTED)
            .group_by(Experiment.campaign_id)
        ).all()
    )
    allowed: dict[str, bool] = {}
    for plan in sorted((p for p in plans if demand[p.id]), key=lambda p: (oldest.get(p.id), p.id)):
        allowed[plan.id] = demand[plan.id] <= room
        if allowed[plan.id]:
            room -= demand[plan.id]
    for plan in plans:
        allowed.setdefault(plan.id, room > 0)
    return allowed


# -- the Celery executor ------------------------------------------------------------------
@dataclass(frozen=True)
class TickOrder:
    campaign: str
    day: date
    explore: bool


class CeleryExecutor:
    """The scheduler's side of ``executor = "celery"``: send ticks, optionally wait for them."""

    def __init__(self, cfg: Config, app: Any = None, engine: Engine | None = None) -> None:
        from loop.app import make_platform, open_engine, platform_scenario
        from loop.plans import campaign_plans

        try:
            from loop.celery_app import create_app
        except ImportError:
            raise ConfigError(
                str(cfg.path), "loop.executor", "the celery executor needs: pip install 'creative-loop[celery]'"
            ) from None
        self.cfg = cfg
        self.app = app or create_app(cfg)  # reads results by polling (plain reads, no subscription)
        self.sender = create_app(cfg, results=False)  # sends without subscribing to each task's result
        self.poll_seconds = 0.05
        self._own_engine = engine is None
        self.engine = engine or open_engine(cfg.database_url)
        self.scenario = platform_scenario(cfg)
        self.plans = campaign_plans(cfg, self.scenario)
        self._make_platform = lambda: make_platform(cfg, self.scenario, engine=self.engine)

    def days(self) -> dict[str, date]:
        """The day each campaign's next tick is for: its platform's own day (the simulator), else today (UTC)."""
        platform = self._make_platform()
        try:
            today = datetime.now(UTC).date()
            return {p.id: platform.today(p.id) or today for p in self.plans}
        finally:
            platform.close()

    def orders(self) -> list[TickOrder]:
        """One order per campaign, with the backpressure verdict."""
        from sqlmodel import Session

        from loop.celery_app import queue_depth

        depth = queue_depth(self.app, "generation")
        with Session(self.engine) as session:
            allowed = admit(session, self.plans, depth, self.cfg.model.celery.generation_queue_limit)
        held = [c for c, ok in allowed.items() if not ok]
        if held:
            log.info("generation queue at %d: exploration held for %d campaign(s)", depth, len(held))
        days = self.days()
        return [TickOrder(p.id, days[p.id], allowed[p.id]) for p in self.plans]

    def schedule(self) -> list[Any]:
        """Send every campaign's tick to the ``ticks`` queue; returns the AsyncResults."""
        from loop.celery_app import TICK_TASK

        queue = self.app.queue_name("ticks")
        sent = [
            self.sender.send_task(TICK_TASK, args=(o.campaign, o.day.isoformat(), o.explore), queue=queue)
            for o in self.orders()
        ]
        return [self.app.AsyncResult(r.id) for r in sent]

    def wait(self, results: list[Any], timeout: float) -> list[dict[str, Any]]:
        """Each tick's final result, following the continuations of ticks that waited for images.

        Polls the result backend (plain reads) rather than subscribing to it:
        a scheduler waiting on thousands of ticks keeps no listener per task.

        ``detected``, ``transitions`` and ``errors`` gather the lines of every
        pass of a campaign's tick (before and after its images).
        """
        deadline = time.monotonic() + timeout
        finals = []
        for result in results:
            seen: dict[str, list[Any]] = {"detected": [], "transitions": [], "errors": []}
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CreativeLoopError(f"ticks not finished after {timeout:.0f} s", task=result.id)
                if not result.ready():
                    time.sleep(min(self.poll_seconds, left))
                    continue
                if result.failed():
                    raise CreativeLoopError(f"tick task failed: {result.result!r}", task=result.id)
                out = result.result
                for key, lines in seen.items():
                    lines.extend(out.get(key, ()) if isinstance(out, dict) else ())
                if not (isinstance(out, dict) and out.get("continuation")):
                    finals.append({**out, **seen} if isinstance(out, dict) else out)
                    break
                result = self.app.AsyncResult(out["continuation"])
        return finals

    def close(self) -> None:
        """Close the broker and result-backend connections (and the engine) this executor opened."""
        backend = self.app.backend
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None and hasattr(consumer, "stop"):
            consumer.stop()
        client = getattr(backend, "client", None)
        if client is not None and hasattr(client, "connection_pool"):
            client.connection_pool.disconnect()
        self.app.close()
        self.sender.close()
        if self._own_engine:
            self.engine.dispose()

    def tick(self, timeout: float | None = None) -> TickReport:
        """One round over every campaign, waited for: what ``creative-loop tick`` does."""
        from loop.tick import TickReport

        results = self.schedule()
        finals = self.wait(results, timeout or self.cfg.model.celery.tick_timeout)
        days = sorted({date.fromisoformat(f["day"]) for f in finals if "day" in f})
        report = TickReport(days[0] if days else datetime.now(UTC).date())
        for f in finals:
            report.detected.extend(f.get("detected", ()))
            report.transitions.extend(f.get("transitions", ()))
            report.errors.extend(f.get("errors", ()))
        refused = [f["refused"] for f in finals if f.get("refused")]
        if refused:  # as an inline tick: every other campaign ran, then the one line (exit 2)
            raise ConfigError(**refused[0])
        return report


# -- `creative-loop worker` ----------------------------------------------------------------
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")  # what `celery worker --loglevel` takes


def worker(
    config: ConfigOpt = None,
    queues: Annotated[str, typer.Option(help="Queues to consume: ticks, generation or both (comma-separated).")] = (
        "ticks,generation"
    ),
    concurrency: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: CPU count).")] = None,
    pool: Annotated[str, typer.Option(help="prefork | solo | threads")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker for executor = "celery": ticks, generation jobs, or both."""
    import os
    import socket

    cfg = config_from(config)
    setup_logging(cfg)
    try:
        from loop.celery_app import QUEUES, create_app
    except ImportError:
        raise ConfigError("--queues", "worker", "the worker needs: pip install 'creative-loop[celery]'") from None
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if not wanted or unknown:
        raise ConfigError("--queues", "queues", f"expected some of {', '.join(QUEUES)}, got {queues!r}")
    if pool not in ("prefork", "solo", "threads"):
        raise ConfigError("--pool", "pool", f"expected prefork, solo or threads, got {pool!r}")
    # Checked here: Celery parses it with the click it brings, whose errors are not typer's (a traceback before).
    if loglevel.upper() not in LOG_LEVELS:
        raise ConfigError("--loglevel", "loglevel", f"expected one of {', '.join(LOG_LEVELS)}, got {loglevel!r}")
    celery_app = create_app(cfg)
    argv = [
        "worker",
        f"--queues={','.join(celery_app.queue_name(q) for q in wanted)}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname={'+'.join(wanted)}-{os.getpid()}@{socket.gethostname()}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    celery_app.worker_main(argv)
