"""One acting daemon per database: a PostgreSQL advisory lock, or a file lock for SQLite.

The second daemon blocks in :func:`single_instance` until the first one exits
(or dies: the operating system releases a dead process's file lock, and
PostgreSQL a dead session's advisory lock), then takes over.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("creative_loop.lock")
ADVISORY_KEY = 0x6372_6C70  # "crlp"
# The lock is per schema: two deployments (or two test runs) that share one
# PostgreSQL database in different schemas must not lock each other out.
_LOCK_SQL = "SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"


class LockGuard:
    """Whether this process still holds the daemon lock.

    A PostgreSQL advisory lock lives as long as the session that took it: a
    database outage ends the session, and with it the lock, while the daemon
    keeps running.  :meth:`held` checks the session and, if it is gone, takes
    the lock again on a new one (False if the database is still away or
    another daemon has taken over meanwhile).  A file lock cannot be lost.
    """

    def __init__(self, engine: Engine | None = None, conn: Connection | None = None) -> None:
        self.engine, self.conn = engine, conn

    def held(self) -> bool:
        if self.engine is None or self.conn is None:
            return True
        try:
            self.conn.execute(text("SELECT 1"))
            self.conn.commit()
            return True
        except Exception:
            log.warning("the database session holding the daemon lock is gone; taking the lock again")
        with contextlib.suppress(Exception):
            self.conn.close()
        try:
            self.conn = self.engine.connect()
            got = bool(self.conn.execute(text(_LOCK_SQL), {"k": ADVISORY_KEY}).scalar())
            self.conn.commit()
        except Exception as exc:
            log.warning("cannot take the daemon lock again yet: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return False
        if not got:
            log.warning("another daemon took the database lock over; this one stands by")
        return got


@contextmanager
def single_instance(engine: Engine, lock_dir: Path, poll: float = 1.0) -> Iterator[LockGuard]:
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        waited = False
        while not conn.execute(text(_LOCK_SQL), {"k": ADVISORY_KEY}).scalar():
            if not waited:
                log.info("another daemon holds the database lock; waiting to take over")
                waited = True
            conn.rollback()
            time.sleep(poll)
        conn.commit()  # the lock belongs to the session; no transaction stays open
        guard = LockGuard(engine, conn)
        try:
            yield guard
        finally:
            # After an outage the session (and its lock) may be gone already.
            with contextlib.suppress(Exception):
                guard.conn.execute(text(_UNLOCK_SQL), {"k": ADVISORY_KEY})  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                guard.conn.close()  # type: ignore[union-attr]
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
            yield LockGuard()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
