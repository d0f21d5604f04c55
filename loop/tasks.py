"""The Celery task bodies: one campaign's tick, and one image generation job.

Both run at least once (``loop.celery_app``); each is written so that a second
run has no second effect.

``tick_campaign(campaign, day, explore)``
    1. take the campaign's lock (``loop.locks.campaign_lock``, the one the
       CLI and the dashboard take too); if another worker or command holds
       it, retry later: a campaign is never changed by two writers at once;
    2. on a platform with its own clock (the simulator), load the campaign's
       state (under the lock, so it is the only writer) and skip if its day
       has already run: a redelivered task after a finished day does nothing;
    3. run :func:`loop.tick.tick` for this one campaign: every step is
       idempotent (mutation intents, ledger keys), so a task cut short by a
       dead worker is completed by its redelivery;
    4. if the tick queued generation jobs, send them to the ``generation``
       queue as a chord whose callback is this same tick again (the
       campaign's day ends once the images exist); otherwise end the
       campaign's day (``advance_day``: the simulator delivers it).

``generate(job)``
    Render one image with the configured backend and put it in the shared
    image store (content-addressed, so a repeated job writes the same file).
    Returns the image's hash and recipe; a refusal or a backend failure is
    returned, not raised, so that the waiting tick settles the credit as it
    would inline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from PIL import Image

from connectors.ads.base import AdPlatform
from connectors.images.base import Brief, ImageGenerator, Rendered
from connectors.images.registry import GENERATORS
from loop.config import Config
from loop.experiments import GenerationPending
from loop.locks import campaign_lock
from loop.runtime import Runtime
from loop.tick import TickReport, tick
from policies.errors import ConfigError, GenerationError
from storage.images import ImageStore

log = logging.getLogger("creative_loop.tasks")
# Fault injection for the Celery tests: SIGKILL the process running a tick at
# the named step point, once (the marker file records that it happened).
KILL_AT_ENV = "CREATIVE_LOOP_TASK_KILL_AT"
KILL_MARKER_ENV = "CREATIVE_LOOP_TASK_KILL_MARKER"


class WorkerResources:
    """What a worker process builds once: engine, image store, scenario and plans."""

    def __init__(self, cfg: Config) -> None:
        from loop.app import open_engine, platform_scenario
        from loop.plans import campaign_plans

        self.cfg = cfg
        # The scheduler migrates; workers only connect.
        self.engine = open_engine(cfg.database_url, run_migrations=False)
        self.images = ImageStore(cfg.data_dir / "images")
        self.scenario = platform_scenario(cfg)
        self.plans = {p.id: p for p in campaign_plans(cfg, self.scenario)}
        self._generators: dict[str, ImageGenerator] | None = None

    @property
    def generators(self) -> dict[str, ImageGenerator]:
        """The real backends, built on first use: only generation workers need them."""
        if self._generators is None:
            from loop.app import make_generators

            self._generators = make_generators(self.cfg)
        return self._generators

    def platform(self) -> AdPlatform:
        """A fresh platform object: on the simulated platform it reads the campaign's file anew."""
        from loop.app import make_platform

        return make_platform(self.cfg, self.scenario, engine=self.engine)


@dataclass
class QueuedRuntime(Runtime):
    """A runtime whose generators queue jobs: ``loop.experiments`` collects them in ``generation_jobs``."""

    generation_jobs: list[dict[str, Any]] | None = field(default_factory=list)


class QueuedGenerator(ImageGenerator):
    """An ``ImageGenerator`` that sends its work to the ``generation`` queue.

    A call looks for the job's result first (the job id is a hash of its
    inputs): done, it returns the image from the shared store; not done, it
    raises :class:`GenerationPending` with the job to queue.  Backends are
    deterministic per seed, so a job that runs twice produces the same file.
    """

    def __init__(self, app: Any, name: str, images: ImageStore, strengths: dict[str, float] | None = None) -> None:
        self.app = app
        self.name = name
        self.images = images
        self.strengths = dict(strengths or {})  # the backend's tier strengths (they drive the fidelity retries)

    def strength(self, tier: str) -> float | None:
        return self.strengths.get(tier)

    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        return self._result(
            {"op": "draft", "source": self.images.put(source), "brief": _brief_dict(brief), "seed": seed}
        )

    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        spec = {
            "image": self.images.put(draft.image),
            "tier": draft.tier,
            "seed": draft.seed,
            "recipe": draft.recipe,
            "prompt": draft.prompt,
            "model": draft.model,
            "generator": draft.generator,
        }
        return self._result(
            {"op": "pro", "source": self.images.put(source), "brief": _brief_dict(brief), "draft": spec}
        )

    def _result(self, job: dict[str, Any]) -> Rendered:
        job = {**job, "generator": self.name}
        digest = hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()[:32]
        job_id = f"{self.app.loop_config.model.celery.queue_prefix}gen-{digest}"
        result = self.app.AsyncResult(job_id)
        if result.state == "SUCCESS" and isinstance(result.result, dict):
            out = result.result
            if "error" in out:
                raise GenerationError(out["error"], refused=bool(out.get("refused")), job=job_id)
            if out["image"] in self.images:
                return _rendered(self.images, out)
        raise GenerationPending([{"id": job_id, "job": job}])


def _brief_dict(brief: Brief) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(brief).items()}


def _brief(data: dict[str, Any]) -> Brief:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return Brief(**fields)


def _rendered(images: ImageStore, out: dict[str, Any]) -> Rendered:
    return Rendered(
        image=images.open(out["image"]),
        tier=out["tier"],
        seed=int(out["seed"]),
        recipe=dict(out["recipe"]),
        prompt=out["prompt"],
        model=out["model"],
        generator=out["generator"],
    )


def make_queued_generators(app: Any, cfg: Config, images: ImageStore) -> dict[str, ImageGenerator]:
    """One queueing stand-in per registered generator, with the tier strengths its settings give."""
    return {
        e.name: QueuedGenerator(app, e.name, images, strengths=cfg.section(e.section).tier_strengths())  # type: ignore[attr-defined]
        for e in GENERATORS
    }


def _kill_once(step: str) -> None:
    """Fault injection (tests): SIGKILL this process at the configured step, once."""
    import signal

    if step != os.environ.get(KILL_AT_ENV):
        return
    marker = os.environ.get(KILL_MARKER_ENV, "")
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    log.warning("fault injection: SIGKILL at %s", step)
    os.kill(os.getpid(), signal.SIGKILL)


def tick_campaign(task: Any, campaign: str, day: str, explore: bool = True) -> dict[str, Any]:
    """One campaign's tick for ``day`` (ISO date); see the module docstring for the steps."""
    from celery import chord

    from loop.app import backfill_days

    app = task.app
    cfg = app.loop_config
    res = app.resources
    plan = res.plans.get(campaign)
    if plan is None:
        return {"campaign": campaign, "day": day, "status": "unknown campaign"}
    today = date.fromisoformat(day)
    # 1. one worker per campaign
    with campaign_lock(res.engine, campaign, wait=False) as held:
        if not held:
            raise task.retry(countdown=cfg.model.celery.lock_retry_seconds)
        # 2. the campaign's own state, read under the lock
        platform = res.platform()
        at = platform.today(campaign)  # a platform with its own clock (the simulator); None: the calendar
        if at is not None and at != today:
            platform.close()
            status = "already ticked" if at > today else f"behind: at {at.isoformat()}"
            return {"campaign": campaign, "day": day, "status": status}
        # 3. the tick
        rt = QueuedRuntime(
            engine=res.engine,
            platform=platform,
            generators=make_queued_generators(app, cfg, res.images),
            images=res.images,
            plans=[plan],
            approval=cfg.loop.approval,
            backfill_days=backfill_days(cfg),
            hold_exploration=not explore,
        )
        rt.on_step = _kill_once
        refused: ConfigError | None = None
        try:
            report = tick(rt, today)
        except ConfigError as exc:
            # A setting its stored money refuses (loop.tick.check_currency): the round is recorded as
            # failed; the scheduler raises the line, as an inline tick does, and the day still ends.
            refused, report = exc, TickReport(today, errors=[f"{campaign}: {exc}"])
        finally:
            platform.close()  # the tick stored its API counts; this closes connections
        out: dict[str, Any] = {
            "campaign": campaign,
            "day": day,
            "detected": report.detected,
            "transitions": report.transitions,
            "errors": report.errors,
        }
        if refused is not None:
            out["refused"] = {"file": refused.file, "key": refused.key, "problem": refused.problem}
        # 4. wait for queued images, or end the day
        if rt.generation_jobs:
            jobs = {j["id"]: j["job"] for j in rt.generation_jobs}
            header = [app.generate_signature(job).set(task_id=job_id) for job_id, job in jobs.items()]
            again = app.tick_signature(campaign, day, explore).set(task_id=str(uuid.uuid4()))
            chord(header, app=app)(again)
            return {**out, "status": "waiting for generation", "jobs": len(jobs), "continuation": again.id}
        platform.advance_day(campaign)  # the simulated campaign's day ends here; a real platform's own
        return {**out, "status": "ticked"}


def generate(task: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Render one job and store its image; see the module docstring."""
    res = task.app.resources
    gen = res.generators.get(job["generator"])
    if gen is None:
        return {"error": f"generator {job['generator']!r} is not available on this worker", "refused": False}
    source = res.images.open(job["source"])
    brief = _brief(job["brief"])
    try:
        if job["op"] == "draft":
            r = gen.draft(source, brief, int(job["seed"]))
        else:
            r = gen.render_pro(source, _rendered(res.images, job["draft"]), brief)
    except GenerationError as exc:
        return {"error": str(exc), "refused": exc.refused}
    return {
        "image": res.images.put(r.image),
        "tier": r.tier,
        "seed": r.seed,
        "recipe": r.recipe,
        "prompt": r.prompt,
        "model": r.model,
        "generator": r.generator,
    }
