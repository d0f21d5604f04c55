"""Fixtures for the dashboard: a database filled by the real loop on the simulator.

The loop runs as the daemon would (``build_runtime`` + ``tick``, the simulated
platform persisting its state in the data folder) with ``approval = "pro"``, until both example campaigns have a pro render
waiting for a person.  It is built once per session and copied for each test that writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.testclient import TestClient

from loop.app import build_runtime, open_engine
from loop.config import Config, load_config
from loop.tick import tick
from storage.db import session as open_session
from storage.images import ImageStore
from storage.models import Experiment

MAX_DAYS = 70  # the example scenario's fatigue is detected and decided well before this
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


def waiting_for_pro(engine: Engine) -> dict[str, str]:
    """Campaign → id of its experiment whose pro render waits for a person."""
    with open_session(engine) as s:
        rows = s.exec(
            select(Experiment).where(Experiment.state == "awaiting_approval", Experiment.waiting_for == "pro")
        ).all()
        return {e.campaign_id: e.id for e in rows}


def fill(folder: Path, max_days: int = MAX_DAYS) -> Config:
    """Run the loop day by day over a fresh database in ``folder`` until both
    example campaigns have a pro render waiting for approval (the days this
    takes depend on the policies' tuning, so the tests never hard-code them)."""
    cfg = load_config(write_config(folder))
    rt = build_runtime(cfg)
    for _ in range(max_days):
        tick(rt, rt.platform.today())  # type: ignore[attr-defined]
        rt.platform.run_day()  # type: ignore[attr-defined]
        if len(waiting_for_pro(rt.engine)) == 2:
            break
    else:
        raise AssertionError(f"no pro render waiting in both campaigns after {max_days} days")
    rt.engine.dispose()
    return cfg


@pytest.fixture(scope="session")
def filled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("filled")
    fill(folder)
    return folder


@pytest.fixture(scope="session")
def waiting_ids(filled_template: Path) -> dict[str, str]:
    engine = open_engine(load_config(filled_template / "creative-loop.toml").database_url)
    try:
        return waiting_for_pro(engine)
    finally:
        engine.dispose()


@pytest.fixture
def lead(waiting_ids: dict[str, str]) -> str:
    """The lead-gen experiment whose pro render waits."""
    return waiting_ids["lead-gen"]


@pytest.fixture
def retarget(waiting_ids: dict[str, str]) -> str:
    """The retarget experiment whose pro render waits."""
    return waiting_ids["retarget"]


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
