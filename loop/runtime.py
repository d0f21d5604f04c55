"""What a tick runs with: the injected collaborators and the one way to change the outside world.

:class:`Runtime` is built by ``loop.app`` (``build_runtime``) and handed to
:func:`loop.tick.tick` and to the experiment state machine
(``loop.experiments``); neither of those imports the other's module for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from connectors.ads.base import AdPlatform, Mutation
from connectors.images.base import ImageGenerator
from connectors.retry import RetrySettings, call_with_retry
from loop import events
from loop.plans import CampaignPlan
from policies.errors import ConfigError, ConnectorError
from storage.images import ImageStore
from storage.models import PlatformMutation, utcnow
from storage.states import MutationStatus


@dataclass
class Runtime:
    """Everything a tick needs, injected (``loop.app`` wires the defaults)."""

    engine: Engine
    platform: AdPlatform
    generators: dict[str, ImageGenerator]
    images: ImageStore
    plans: list[CampaignPlan]
    approval: str = "pro"
    tiering: str = "tiered"
    backfill_days: int = 7
    dry_run: bool = False
    retry: RetrySettings = field(default_factory=RetrySettings)
    sleep: Callable[[float], None] | None = None
    on_step: Callable[[str], None] | None = None
    plan_lines: list[str] = field(default_factory=list)
    # Generation elsewhere (``loop.tasks.QueuedRuntime``): the jobs its generators queued, collected by
    # ``loop.experiments.advance``; None when generation is inline.
    generation_jobs: list[dict[str, Any]] | None = None
    # The scheduler's backpressure: experiments stay ``detected`` instead of reserving credits and queueing drafts.
    hold_exploration: bool = False

    # -- unit of work ---------------------------------------------------------
    def commit(self, session: Session) -> None:
        if self.dry_run:
            session.flush()
        else:
            session.commit()

    def step(self, name: str) -> None:
        """A point between two steps; tests hook here to crash the tick."""
        if self.on_step is not None:
            self.on_step(name)

    # -- the outside world ----------------------------------------------------
    def call(self, fn: Callable[[], Any], what: str = "") -> Any:
        kwargs: dict[str, Any] = {"settings": self.retry, "what": what}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        return call_with_retry(fn, **kwargs)

    def perform(self, session: Session, mutation: Mutation, experiment_id: str | None = None) -> dict[str, Any]:
        """Apply a platform mutation exactly once: intent, send, result."""
        rec = session.exec(select(PlatformMutation).where(PlatformMutation.key == mutation.key)).first()
        if rec is not None and rec.status == MutationStatus.DONE:
            return dict(rec.result)
        if self.dry_run:
            # Every mutation in full (images by hash): what would be sent, to check before going live.
            detail = {k: v for k, v in mutation.payload().items() if k not in ("key", "campaign")}
            self.plan_lines.append(f"{mutation.kind} {mutation.key} {json.dumps(detail, sort_keys=True, default=str)}")
            return {"adset_id": f"dry-run:{mutation.key}", "ad_id": f"dry-run:{mutation.key}"}
        if rec is None:
            rec = PlatformMutation(
                key=mutation.key,
                campaign_id=mutation.campaign,
                experiment_id=experiment_id,
                kind=mutation.kind,
                payload=mutation.payload(),
            )
            session.add(rec)
            session.commit()  # the intent is durable before anything is sent
            self.step(f"intent:{mutation.kind}")
            # Nothing was ever sent for this key: the platform need not look for its objects.
            self.platform.remember(mutation.key, {}, fresh=True)
        else:
            # An intent without a result: a crash after sending, perhaps. Look first,
            # starting from the objects the record already names.
            self.platform.remember(mutation.key, dict(rec.objects or {}), fresh=False)
            found = self.call(lambda: self.platform.find(mutation), f"find {mutation.kind} {mutation.key}")
            if found is not None:
                rec.objects = self.platform.objects(mutation.key)
                return self._done(session, rec, found)

        def send() -> dict[str, Any]:
            # Counted (and committed) before it goes out: a send cut short by a kill still counts.
            rec.attempts += 1
            rec.updated_at = utcnow()
            session.commit()
            return self.platform.apply(mutation)

        try:
            result = self.call(send, f"{mutation.kind} {mutation.key}")
        except ConnectorError as exc:
            rec.objects = self.platform.objects(mutation.key)  # what exists so far: the retry adopts it by id
            rec.error = str(exc)
            rec.status = MutationStatus.INTENT if exc.temporary else MutationStatus.FAILED
            rec.updated_at = utcnow()
            events.record(
                session, events.MUTATION_FAILED, mutation.campaign, experiment_id,
                key=mutation.key, kind=mutation.kind, error=str(exc),
            )  # fmt: skip
            session.commit()
            raise
        self.step(f"sent:{mutation.kind}")
        rec.objects = self.platform.objects(mutation.key)
        return self._done(session, rec, result)

    def _done(self, session: Session, rec: PlatformMutation, result: dict[str, Any]) -> dict[str, Any]:
        rec.status = MutationStatus.DONE
        rec.result = dict(result)
        rec.error = ""
        rec.updated_at = utcnow()
        session.commit()
        return dict(result)

    def generator(self, plan: CampaignPlan) -> ImageGenerator:
        try:
            return self.generators[plan.settings.generator]
        except KeyError:
            raise ConfigError(
                "config", f"campaigns[{plan.id}].generator", f"generator {plan.settings.generator!r} is not available"
            ) from None
