"""One acting daemon per database: a PostgreSQL advisory lock, or a file lock for SQLite.

The second daemon blocks in :func:`single_instance` until the first one exits
(or dies: the operating system releases a dead process's file lock, and
PostgreSQL a dead session's advisory lock), then takes over.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

log = logging.getLogger("creative_loop.lock")
ADVISORY_KEY = 0x6372_6C70  # "crlp"


@contextmanager
def single_instance(engine: Engine, lock_dir: Path, poll: float = 1.0) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            waited = False
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar():
                if not waited:
                    log.info("another daemon holds the database lock; waiting to take over")
                    waited = True
                conn.rollback()
                time.sleep(poll)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / "daemon.lock").open("a+") as fh:
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("another daemon holds %s; waiting to take over", lock_dir / "daemon.lock")
                    waited = True
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
