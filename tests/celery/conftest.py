"""Fixtures for the Celery tests: the machine's Redis, a PostgreSQL schema, worker processes.

They need Redis at 127.0.0.1:6379 (``make test`` starts it) and the
PostgreSQL test database (``CREATIVE_LOOP_TEST_PG`` or ``--pg``, else the
local default); each is checked first and the tests skip, saying which is
missing, when it cannot be reached.  Every test run gets its own queue
prefix, so tasks left behind by a killed run never reach this one.
"""

from __future__ import annotations

import gc
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from celery_helpers import Worker
from sqlalchemy import text

from storage.db import make_engine

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DB = int(os.environ.get("CREATIVE_LOOP_TEST_REDIS_DB", "9"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not _reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (`make test` starts it)")
    return f"redis://127.0.0.1:6379/{REDIS_DB}"


@pytest.fixture(scope="session")
def pg_base(request: pytest.FixtureRequest) -> str:
    base = request.config.getoption("--pg") or os.environ.get("CREATIVE_LOOP_TEST_PG") or DEFAULT_PG
    try:
        engine = make_engine(base)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip, saying why
        pytest.skip(f"PostgreSQL test database not reachable ({base}): {type(exc).__name__}")
    return base


@pytest.fixture
def pg_schema(pg_base: str) -> Iterator[Callable[[], str]]:
    """A factory of URLs whose search_path is a fresh schema; every schema is dropped afterwards."""
    admin = make_engine(pg_base)
    made: list[str] = []

    def make() -> str:
        schema = f"c_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        sep = "&" if "?" in pg_base else "?"
        return f"{pg_base}{sep}options={quote(f'-csearch_path={schema}')}"

    yield make
    with admin.begin() as conn:
        for schema in made:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def queue_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """Started workers are appended here; every one is killed (with its process group) at teardown."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()
    # Let a Redis socket that Celery's result backend dropped unclosed surface
    # here, inside the test (see SOCKET_WARNINGS), rather than at session end.
    gc.collect()


@pytest.fixture
def redis_cleanup(redis_url: str, queue_prefix: str) -> Iterator[None]:
    yield
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"*{queue_prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def rabbitmq_url(queue_prefix: str) -> Iterator[str]:
    """The machine's RabbitMQ; the test's durable queues are deleted afterwards."""
    if not _reachable("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
    url = "amqp://guest:guest@127.0.0.1:5672//"
    yield url
    from kombu import Connection

    with Connection(url) as conn:
        channel = conn.default_channel
        for name in ("ticks", "generation"):
            channel.queue_delete(queue=f"{queue_prefix}{name}")
