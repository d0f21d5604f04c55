"""The Celery application of ``executor = "celery"``, configured from ``[celery]``.

Two queues (each name prefixed with ``celery.queue_prefix``):

- ``ticks``: one task per campaign and day (:func:`loop.tasks.tick_campaign`);
- ``generation``: image jobs (:func:`loop.tasks.generate`), consumed by
  ``creative-loop worker --queues generation`` on the machines with a GPU.

Delivery is at least once.  ``acks_late`` acknowledges a message only when
its task has returned and ``reject_on_worker_lost`` puts it back on the queue
when the process running it dies (a worker killed outright leaves the message
unacknowledged: RabbitMQ redelivers it when the connection drops, Redis after
``visibility_timeout``).  The task bodies are idempotent (the mutation intents
and ledger keys of the foundation, a per-campaign lock, the simulated day
check), so a second delivery has no second effect.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu import Queue

from loop.config import Config

TICK_TASK = "creative_loop.tick_campaign"
GENERATE_TASK = "creative_loop.generate"
QUEUES = ("ticks", "generation")


class CreativeLoopCelery(Celery):
    """A Celery app that carries the parsed config and per-process resources."""

    loop_config: Config
    _resources: Any = None
    _resources_pid: int | None = None

    def queue_name(self, logical: str) -> str:
        """The broker's name of one of :data:`QUEUES`."""
        if logical not in QUEUES:
            raise ValueError(f"queue: expected one of {QUEUES}, got {logical!r}")
        return self.loop_config.model.celery.queue_prefix + logical

    def tick_signature(self, campaign: str, day: str, explore: bool = True) -> Any:
        """One campaign's tick for ``day`` on the ``ticks`` queue (immutable: as a chord's callback it keeps its args)."""
        return self.signature(TICK_TASK, args=(campaign, day, explore), queue=self.queue_name("ticks"), immutable=True)

    def generate_signature(self, job: dict[str, Any]) -> Any:
        """One image job on the ``generation`` queue."""
        return self.signature(GENERATE_TASK, args=(job,), queue=self.queue_name("generation"))

    @property
    def resources(self) -> Any:
        """Engine, image store, plans, generators: built once per process (never across a fork)."""
        if self._resources is None or self._resources_pid != os.getpid():
            from loop.tasks import WorkerResources

            self._resources = WorkerResources(self.loop_config)
            self._resources_pid = os.getpid()
        return self._resources


def create_app(cfg: Config, *, results: bool = True) -> CreativeLoopCelery:
    """A configured app with both tasks registered; nothing connects until it is used.

    ``results=False`` gives an app that only sends: with a Redis result
    backend, sending a task from an app with results subscribes to the
    task's result, which a scheduler that polls does not want.
    """
    from loop import tasks

    c = cfg.model.celery
    backend = c.result_backend if results else "disabled"
    app = CreativeLoopCelery("creative_loop", broker=c.broker_url, backend=backend, set_as_current=False)
    app.loop_config = cfg
    ticks, generation = app.queue_name("ticks"), app.queue_name("generation")
    # A worker whose process vanished leaves its messages unacknowledged; Redis
    # hands them out again after visibility_timeout, checked this often.
    restore_every = max(1.0, min(10.0, c.visibility_timeout / 4))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a task waits in the queue, not behind a busy process
        task_queues=[Queue(ticks), Queue(generation)],
        task_default_queue=ticks,
        task_routes={TICK_TASK: {"queue": ticks}, GENERATE_TASK: {"queue": generation}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_track_started=True,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": c.visibility_timeout,
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.task(
        name=TICK_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,  # a campaign locked by another worker is retried until it is free
    )(tasks.tick_campaign)
    app.task(name=GENERATE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)(tasks.generate)
    return app


def queue_depth(app: CreativeLoopCelery, logical: str) -> int:
    """Messages waiting in a queue (not those a worker holds), on Redis or RabbitMQ."""
    with app.pool.acquire(block=True) as conn:  # the app's pool: app.close() closes it
        # Declaring is idempotent and matches the worker's declaration (durable, kept),
        # so it also answers before any worker has declared the queue.
        declared = conn.default_channel.queue_declare(queue=app.queue_name(logical), durable=True, auto_delete=False)
        return int(declared.message_count)
