"""Shared fixtures: a migrated database on SQLite and (when selected) PostgreSQL.

PostgreSQL runs when ``CREATIVE_LOOP_TEST_PG`` holds a SQLAlchemy URL (``make
test`` sets it to the machine's test database) or ``--pg URL`` is given; each
test gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

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


def _pg_schema_url(base: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend (PostgreSQL skipped unless selected)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = pg_url(request.config)
    if not base:
        pytest.skip("PostgreSQL not selected (set CREATIVE_LOOP_TEST_PG or --pg)")
    yield from _pg_schema_url(base)


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


SMALL_SCENARIO = """
seed = 11
days = 45
[variants]
lift_mu = 0.0
lift_sigma = 0.3
pro_lift = 0.10

[[campaigns]]
id = "shop"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 60.0
test_spend_cap = 500.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.02
fatigue_onset_day = 12
fatigue_decay_per_day = 0.06
headline = "Fresh deals"

[[campaigns.creatives]]
id = "steady"
ctr = 0.012
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(SMALL_SCENARIO)
    return path


def make_runtime(
    engine,
    tmp_path: Path,
    scenario_path: Path,
    *,
    approval: str = "none",
    tiering: str = "tiered",
    state_path=None,
    **settings,
):  # type: ignore[no-untyped-def]
    """A Runtime over the simulated platform with the procedural generator."""
    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.images.procedural import ProceduralGenerator
    from connectors.retry import NO_WAIT
    from loop.config import load_config
    from loop.plans import campaign_plans
    from loop.tick import Runtime
    from storage.images import ImageStore

    cfg = load_config(Path(__file__).resolve().parents[1] / "config.example.toml")
    scenario = load_scenario(scenario_path)
    platform = SimulatedAdPlatform(scenario, state_path=state_path)
    return Runtime(
        engine=engine,
        platform=platform,
        generators={"procedural": ProceduralGenerator(draft_width=128, pro_width=256)},
        images=ImageStore(tmp_path / "images"),
        plans=campaign_plans(cfg, scenario, **settings),
        approval=approval,
        tiering=tiering,
        backfill_days=2,
        retry=NO_WAIT,
    )


def run_days(rt, days: int) -> None:  # type: ignore[no-untyped-def]
    from loop.tick import tick

    for _ in range(days):
        tick(rt, rt.platform.today())
        rt.platform.run_day()


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
