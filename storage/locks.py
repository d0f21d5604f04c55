"""Named locks keyed by the database, shared by every process that writes to it.

Whoever changes a campaign (the daemon's tick, ``tick``, ``approve``,
``reject``, ``fix``, the dashboard, a Celery worker) and whoever migrates the
schema takes a lock whose identity is the *database*, not a folder of the
config: two configs with different ``data_dir`` on one database share their
locks.

- PostgreSQL: a session-level advisory lock on a connection of its own,
  keyed by ``hashtextextended(<schema> || '/' || name, 0)`` (the schema keeps
  two deployments in one database apart).  PostgreSQL releases the lock of a
  dead process's session.
- SQLite file: ``flock`` on ``<database file, resolved>.locks/<name>.lock``;
  the operating system releases a dead process's lock.  Two threads of one
  process exclude each other too (each open has its own lock).
- SQLite in memory: a lock of this process (nothing else can reach the database).

A thread that already holds a name takes it again for free (re-entrant), so a
Celery task that holds its campaign's lock can call the tick, which takes it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage.safenames import safe_component

log = logging.getLogger("creative_loop.lock")

# The schema is NULL when the search path names a schema that does not exist yet.
_KEY = "hashtextextended(coalesce(current_schema(), '') || '/' || :name, 0)"
_TRY_SQL = text(f"SELECT pg_try_advisory_lock({_KEY})")
_UNLOCK_SQL = text(f"SELECT pg_advisory_unlock({_KEY})")
# After this long a waiter says once what it waits for.
SAY_AFTER_S = 2.0

_held = threading.local()
_memory_locks: weakref.WeakKeyDictionary[Engine, dict[str, threading.Lock]] = weakref.WeakKeyDictionary()
_memory_guard = threading.Lock()


def lock_scope(engine: Engine) -> str:
    """What identifies the database for locking: the resolved SQLite file, or the PostgreSQL URL's target."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or url.database.startswith("file::memory:"):
            return f"memory:{id(engine)}"
        return f"sqlite:{Path(url.database).resolve()}"
    return f"{url.get_backend_name()}://{url.host}:{url.port}/{url.database}?{url.query}"


def lock_dir(engine: Engine) -> Path | None:
    """Where a SQLite file database keeps its lock files (None for PostgreSQL and memory)."""
    scope = lock_scope(engine)
    if not scope.startswith("sqlite:"):
        return None
    db = Path(scope.removeprefix("sqlite:"))
    return db.with_name(db.name + ".locks")


def _held_names() -> dict[str, int]:
    names = getattr(_held, "names", None)
    if names is None:
        names = _held.names = {}
    return names


@contextmanager
def named_lock(engine: Engine, name: str, *, wait: bool = True, poll: float = 0.05, what: str = "") -> Iterator[bool]:
    """Hold the database's lock ``name``; yields whether it is held.

    ``wait=False`` tries once (yields False when another holder has it);
    otherwise it waits as long as it takes, saying so in the log after
    :data:`SAY_AFTER_S` (``what`` names the lock there).
    """
    key = f"{lock_scope(engine)}#{name}"
    held = _held_names()
    if held.get(key):
        held[key] += 1
        try:
            yield True
        finally:
            held[key] -= 1
        return
    acquire = _pg_lock if engine.dialect.name == "postgresql" else _sqlite_lock
    with acquire(engine, name, wait, poll, what or name) as got:
        if got:
            held[key] = 1
        try:
            yield got
        finally:
            held.pop(key, None)


def _waiting(started: float, said: bool, what: str) -> bool:
    if not said and time.monotonic() - started >= SAY_AFTER_S:
        log.info("waiting for the lock of %s (another process holds it)", what)
        return True
    return said


@contextmanager
def _pg_lock(engine: Engine, name: str, wait: bool, poll: float, what: str) -> Iterator[bool]:
    conn = engine.connect()
    got = False
    try:
        started, said = time.monotonic(), False
        while True:
            got = bool(conn.execute(_TRY_SQL, {"name": name}).scalar())
            conn.commit()  # a session-level lock outlives the transaction; leave none open
            if got or not wait:
                break
            said = _waiting(started, said, what)
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        yield got
    finally:
        try:
            if got:
                conn.execute(_UNLOCK_SQL, {"name": name})
                conn.commit()
            conn.close()
        except Exception:
            # The session may be gone (an outage ended it, and the lock with it).  Never hand a
            # connection that may still hold the lock back to the pool.
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()


@contextmanager
def _sqlite_lock(engine: Engine, name: str, wait: bool, poll: float, what: str) -> Iterator[bool]:
    folder = lock_dir(engine)
    if folder is None:
        with _memory_lock(engine, name, wait) as got:
            yield got
        return
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{safe_component(name)}.lock").open("a+") as fh:
        started, said = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if not wait:
                    got = False
                    break
            said = _waiting(started, said, what)
            time.sleep(poll)
            poll = min(poll * 1.5, 0.5)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _memory_lock(engine: Engine, name: str, wait: bool) -> Iterator[bool]:
    with _memory_guard:
        lock = _memory_locks.setdefault(engine, {}).setdefault(name, threading.Lock())
    got = lock.acquire(blocking=wait)
    try:
        yield got
    finally:
        if got:
            lock.release()


__all__ = ["named_lock", "lock_scope", "lock_dir"]
