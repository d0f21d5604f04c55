"""Shared fixtures: a migrated database on SQLite and (when selected) PostgreSQL.

PostgreSQL runs when ``CREATIVE_LOOP_TEST_PG`` holds a SQLAlchemy URL (``make
test`` sets it to the machine's test database) or ``--pg URL`` is given; each
test gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.db import make_engine, migrate


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--pg", default=None, help="PostgreSQL URL for the postgres-marked tests")


def pg_url(config: pytest.Config) -> str | None:
    return config.getoption("--pg") or os.environ.get("CREATIVE_LOOP_TEST_PG") or None


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A command that configures logging (``tick``, ``run``) does so for the process: undo it after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend (PostgreSQL skipped unless selected)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = pg_url(request.config)
    if not base:
        pytest.skip("PostgreSQL not selected (set CREATIVE_LOOP_TEST_PG or --pg)")
    from loop_helpers import pg_schema

    with pg_schema(base) as url:
        yield url


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.toml"
    from loop_helpers import SMALL_SCENARIO

    path.write_text(SMALL_SCENARIO)
    return path


@pytest.fixture
def sqlite_engine_factory(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Fresh migrated SQLite engines on demand (for hypothesis tests, one per example)."""
    engines = []
    template = tmp_path_factory.mktemp("tpl") / "template.db"
    tpl = make_engine(f"sqlite:///{template}")
    migrate(tpl)
    tpl.dispose()  # closing the last connection checkpoints the WAL into the file

    def make():  # type: ignore[no-untyped-def]
        import shutil

        target = tmp_path_factory.mktemp("db") / "t.db"
        shutil.copy(template, target)
        eng = make_engine(f"sqlite:///{target}")
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        eng.dispose()
