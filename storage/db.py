"""Engine and session setup, and migrations to the newest schema.

SQLite (WAL, foreign keys on) is the embedded default; PostgreSQL is the
production store.  The schema is owned by Alembic (``storage/migrations``):
:func:`migrate` brings any database to the newest revision.  A database with
no tables yet is created at the newest revision at once and stamped with it
(Alembic's "building an up to date database from scratch"); a test keeps the
models and the migrations describing the same schema.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, create_engine

from policies.errors import ConfigError, DatabaseUnavailable

if TYPE_CHECKING:  # Alembic loads only when a schema is checked or migrated
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The name of the migration lock (storage.locks); campaign ids cannot contain "#".
MIGRATION_LOCK = "#migrate"


def _wal(cur) -> None:  # type: ignore[no-untyped-def]
    """Switch a SQLite file to WAL; retried, since switching a new file while another connection does
    the same can answer "database is locked" at once, without waiting out the busy timeout."""
    import sqlite3
    import time

    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


# Every engine this process made and still holds, with the process that made it: closed at exit
# (see make_engine).  Weak: an engine nobody holds any more goes as before.
_OPEN_ENGINES: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


@atexit.register
def _close_engines() -> None:
    """Close this process's engines at exit: connections end cleanly and SQLite folds its write-ahead log
    back into the database file, whether or not a last garbage collection runs (``loop.cli.entry`` skips
    it).  An engine inherited through ``fork`` is the parent's to close: its connections are left alone."""
    for engine, pid in list(_OPEN_ENGINES.items()):
        if pid == os.getpid():
            engine.dispose()


def make_engine(url: str, **kwargs: object) -> Engine:
    """Create an engine; SQLite files get WAL, a busy timeout and foreign keys.

    A SQLite folder that cannot be made and a missing PostgreSQL driver are a
    :class:`ConfigError` naming ``loop.database``.  The process closes the
    engine at exit if it still holds it.
    """
    engine = _make_engine(url, **kwargs)
    _OPEN_ENGINES[engine] = os.getpid()
    return engine


def _make_engine(url: str, **kwargs: object) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    "loop.database", "", f"cannot create the database's folder {folder}: {exc.strerror or exc}"
                ) from None
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            _wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, **kwargs)
    except ImportError as exc:
        raise ConfigError(
            "loop.database", "",
            f"the PostgreSQL driver is not installed ({exc.name or 'psycopg'} missing): "
            "pip install 'creative-loop[postgres]'",
        ) from None  # fmt: skip


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest schema (idempotent, safe to run from many processes at once).

    The upgrade runs under the database's migration lock: of two processes
    started together on a new database one migrates, the other waits and
    then finds the schema at its head.  A database that cannot be reached
    raises :class:`DatabaseUnavailable` with one line saying what to check.
    """
    from storage.locks import named_lock

    try:
        if _known_at_head(engine):
            return  # the usual case: no lock needed
        with named_lock(engine, MIGRATION_LOCK, what="the schema migration"):
            if _create_at_head(engine):
                return
            from alembic import command

            if current_revision(engine) != head_revision(engine):
                command.upgrade(alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        raise unavailable(engine.url, exc) from exc


def _create_at_head(engine: Engine) -> bool:
    """On a database without tables: create the newest schema, its first rows and the version stamp in one
    transaction, without Alembic (whose import and ten steps took longer than a short simulation's SQL).

    Returns False, doing nothing, when the database holds any table (Alembic's to upgrade) or the scripts'
    head is unclear.  The caller holds the migration lock.
    """
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert, inspect
    from sqlmodel import SQLModel

    import storage.models as models

    head = _scripts_head()
    if head is None:
        return False
    with engine.begin() as conn:
        if inspect(conn).get_table_names():
            return False
        SQLModel.metadata.create_all(conn)
        # Alembic's own version table, as `alembic stamp` makes it.
        version = Table(
            "alembic_version",
            MetaData(),
            Column("version_num", String(32), nullable=False),
            PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
        )
        version.create(conn)
        conn.execute(version.insert().values(version_num=head))
        # The rows the migrations insert (0003: the account's one cap row, so writers only ever update it).
        conn.execute(insert(models.AccountCap).values(id="account", currency="USD", updated_at=models.utcnow()))
    return True


def unavailable(url: URL | None, exc: BaseException) -> DatabaseUnavailable:
    """One line for a database that cannot be used: where it is (when known), what went wrong, what to check."""
    detail = str(getattr(exc, "orig", None) or exc).strip()
    lines = [part.strip() for part in detail.replace("\t", " ").splitlines() if part.strip()]
    reason = lines[0] if lines else type(exc).__name__
    reason = reason.removeprefix("connection failed: ")
    if "FATAL:" in reason:
        reason = reason.split("FATAL:", 1)[1].strip()
    elif " failed: " in reason:
        reason = reason.rsplit(" failed: ", 1)[1].strip()
    low = reason.lower()
    if url is None:
        where = "the database"
        hint = "free some disk space" if "full" in low else "check that the database is running and reachable"
    elif url.get_backend_name() == "sqlite":
        where = f"SQLite database {url.database}"
        if "full" in low or _disk_full(Path(url.database or ".").parent):
            hint = "its disk is full: free some space"
        elif "readonly" in low or "read-only" in low:
            hint = "check that the file and its folder are writable"
        else:
            hint = "check that the file's folder exists and is writable and the file is a SQLite database"
    else:
        where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}, database {url.database!r}"
        if "does not exist" in low and "database" in low:
            hint = f"create it with createdb {url.database}, or fix loop.database / CREATIVE_LOOP_DATABASE"
        elif "password" in low or "role" in low or "authentication" in low:
            hint = "check the user and password in loop.database / CREATIVE_LOOP_DATABASE"
        else:
            hint = "check that the server is running and reachable, and loop.database / CREATIVE_LOOP_DATABASE"
    return DatabaseUnavailable(
        f"cannot use {where}: {reason} ({hint})", database=str(url.database) if url is not None else None
    )


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used at all (down, unreachable, disk full)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(getattr(exc, "orig", None)).__name__
    return isinstance(exc, DBAPIError) and name in ("OperationalError", "InterfaceError")


def _disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has (next to) no room left: SQLite then says "disk I/O error"."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _known_at_head(engine: Engine) -> bool:
    """Whether the database is certainly at the newest revision, told without Alembic.

    Every command that opens the database checks its schema; importing Alembic and
    loading its scripts for that took longer than the rest of a small command
    (bench/startup.py).  True only when the version table holds exactly the one
    head that the scripts' ``revision``/``down_revision`` lines give; anything
    else (no table, several rows, an unreadable script) is left to Alembic.
    """
    from sqlalchemy import inspect, text

    head = _scripts_head()
    if head is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows == [head]


@functools.cache
def _scripts_head() -> str | None:
    """The one revision of ``migrations/versions`` that no other names as its ``down_revision`` (None: unsure)."""
    import ast

    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        downs = down if isinstance(down, tuple | list) else (down,)
        if not all(d is None or isinstance(d, str) for d in downs):
            return None
        parents.update(d for d in downs if d is not None)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
