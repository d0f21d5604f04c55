"""Helpers for tests of the loop on the simulated platform (imported by name: unique module name)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text

from storage.db import make_engine

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


def make_runtime(
    engine,
    tmp_path: Path,
    scenario_path: Path,
    *,
    approval: str = "none",
    tiering: str = "tiered",
    state_path=None,
    config_path: Path | None = None,
    **settings,
):  # type: ignore[no-untyped-def]
    """A Runtime over the simulated platform with the procedural generator (config: the example's by default)."""
    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.images.procedural import ProceduralGenerator
    from connectors.retry import NO_WAIT
    from loop.config import load_config
    from loop.plans import campaign_plans
    from loop.runtime import Runtime
    from storage.images import ImageStore

    cfg = load_config(config_path or Path(__file__).resolve().parents[1] / "config.example.toml")
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


def plan_for(campaign_id: str, **settings):  # type: ignore[no-untyped-def]
    """A campaign plan with the example config's defaults (caps and costs in minor units)."""
    from loop.config import CampaignSettings
    from loop.plans import CampaignPlan

    return CampaignPlan(
        id=campaign_id, currency="USD", test_spend_cap=10_000, credit_cap=1_000, test_daily_budget=2_000,
        fast_credit_cost=2, pro_credit_cost=60, settings=CampaignSettings(id=campaign_id, **settings),
    )  # fmt: skip


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    """A fresh schema on ``base`` (a URL), dropped afterwards; yields a URL that uses it."""
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
