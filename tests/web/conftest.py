"""Fixtures for the dashboard: a database filled by the real loop on the simulator.

The loop runs as the daemon would (``build_runtime`` + ``tick``, the simulated
platform persisting its state in the data folder) with ``approval = "pro"``, so
after ~30 simulated days both example campaigns have a pro render waiting for
a person.  It is built once per session and copied for each test that writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from loop.app import build_runtime, open_engine
from loop.config import Config, load_config
from loop.tick import tick
from storage.images import ImageStore

DAYS = 32
BASE_URL = "http://127.0.0.1"


def write_config(folder: Path, approval: str = "pro") -> Path:
    path = folder / "creative-loop.toml"
    path.write_text(
        f"""
[loop]
database = "sqlite:///{folder / "loop.db"}"
data_dir = "{folder / "data"}"
approval = "{approval}"
interval_minutes = 60

[web]
access_token_env = "CL_TEST_WEB_TOKEN"
"""
    )
    return path


def fill(folder: Path, days: int = DAYS) -> Config:
    """Run the loop ``days`` simulated days over a fresh database in ``folder``."""
    cfg = load_config(write_config(folder))
    rt = build_runtime(cfg)
    for _ in range(days):
        tick(rt, rt.platform.today())  # type: ignore[attr-defined]
        rt.platform.run_day()  # type: ignore[attr-defined]
    rt.engine.dispose()
    return cfg


@pytest.fixture(scope="session")
def filled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("filled")
    fill(folder)
    return folder


@pytest.fixture
def filled(filled_template: Path, tmp_path: Path) -> Config:
    """A private copy of the filled database, data folder and config."""
    folder = tmp_path / "site"
    shutil.copytree(filled_template, folder)
    return load_config(write_config(folder))


@pytest.fixture
def engine_of(filled: Config) -> Iterator[Engine]:
    engine = open_engine(filled.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(filled: Config, engine_of: Engine) -> Iterator[TestClient]:
    from loop.web import create_app

    app = create_app(filled, engine=engine_of, images=ImageStore(filled.data_dir / "images"), default_actor="tester")
    with TestClient(app, base_url=BASE_URL) as c:
        yield c
