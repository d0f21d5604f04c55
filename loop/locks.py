"""Who may write: one acting daemon per database, one writer per campaign, one tick round at a time.

Every lock is keyed by the database (``storage.locks``): a PostgreSQL
advisory lock, or a file lock beside the SQLite database file, never a
folder of the config, so two configs on one database share them.

- :func:`single_instance`: the daemon's lock.  The second daemon blocks
  until the first one exits (or dies: the operating system releases a dead
  process's file lock, and PostgreSQL a dead session's advisory lock), then
  takes over.
- :func:`campaign_lock`: held by everything that changes a campaign (a tick
  of it, ``approve``, ``reject``, ``fix``, the dashboard's actions, a Celery
  tick task); the holder re-reads what it changes once it has the lock.
- :func:`round_lock`: held by a whole inline tick round (``tick``, ``run``'s
  ticks): on the simulated platform a round is one simulated day, so two
  rounds must not both take the same day.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from storage.locks import named_lock

log = logging.getLogger("creative_loop.lock")
ADVISORY_KEY = 0x6372_6C70  # "crlp"
# The lock is per schema: two deployments (or two test runs) that share one
# PostgreSQL database in different schemas must not lock each other out.
_LOCK_SQL = "SELECT pg_try_advisory_lock(:k, hashtext(coalesce(current_schema(), '')))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(:k, hashtext(coalesce(current_schema(), '')))"
# Names of the locks that are not a campaign's (campaign ids cannot contain "#").
ROUND_LOCK = "#round"
DAEMON_LOCK = "#daemon"


@contextmanager
def campaign_lock(engine: Engine, campaign: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``campaign``'s lock; yields whether it is held (``wait=False`` tries once).

    On PostgreSQL the key is the one Celery workers used before (schema and
    campaign id), so a worker of an older release and a newer one still
    exclude each other.
    """
    with named_lock(engine, campaign, wait=wait, what=f"campaign {campaign}") as held:
        yield held


@contextmanager
def round_lock(engine: Engine) -> Iterator[None]:
    """Hold the tick-round lock (waits for a round in progress)."""
    with named_lock(engine, ROUND_LOCK, what="the tick round") as held:
        assert held
        yield


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
def single_instance(engine: Engine, poll: float = 1.0) -> Iterator[LockGuard]:
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
    # SQLite: a file lock derived from the database file's path (storage.locks).
    waited = False
    while True:
        with named_lock(engine, DAEMON_LOCK, wait=False) as held:
            if held:
                yield LockGuard()
                return
        if not waited:
            log.info("another daemon holds the database's lock (%s); waiting to take over", engine.url.database)
            waited = True
        time.sleep(poll)
