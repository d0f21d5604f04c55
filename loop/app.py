"""Wiring: build the runtime (engine, platform, generators, image store, plans) from a config.

This is the only place that builds backends: it looks each up in its
registry (``connectors.ads.registry``, ``connectors.images.registry``) and
hands its factory a context made from the config (the backend's section,
its campaigns, its secrets, the engine).  Everything else receives them
injected and talks to the interfaces.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from connectors.ads.base import AdPlatform
from connectors.ads.registry import PLATFORMS, PlatformCampaign, PlatformContext, PlatformEntry
from connectors.ads.scenario import Scenario, load_scenario
from connectors.images.base import ImageGenerator
from connectors.images.registry import GENERATORS, GeneratorContext
from connectors.registry import EnvSecrets
from loop.config import Config
from loop.plans import CampaignPlan, campaign_plans
from loop.runtime import Runtime
from policies.errors import ConfigError
from storage.db import make_engine, migrate
from storage.images import ImageStore

log = logging.getLogger("creative_loop")


def open_engine(url: str, run_migrations: bool = True) -> Engine:
    engine = make_engine(url)
    if run_migrations:
        migrate(engine)
    return engine


def scenario_for(cfg: Config, path: str | Path | None = None) -> Scenario:
    chosen = path or cfg.model.simulated.scenario or None
    return load_scenario(chosen)


def platform_scenario(cfg: Config) -> Scenario | None:
    """The scenario ``loop.platform`` plays when it is scenario-driven (the simulator), else None."""
    return scenario_for(cfg) if PLATFORMS.get(cfg.loop.platform).scenario else None


def _asked_by(cfg: Config, name: str) -> str:
    """The config key that chose platform ``name`` (for error lines)."""
    if cfg.loop.platform == name:
        return "loop.platform"
    return next((f"campaigns[{i}].platform" for i, c in enumerate(cfg.model.campaigns) if c.platform == name), "loop.platform")  # fmt: skip


def platform_context(
    cfg: Config, entry: PlatformEntry, engine: Engine | None = None, scenario: Scenario | None = None
) -> PlatformContext:
    """What ``entry``'s factory gets: its section, its campaigns, its secrets, the engine."""
    settings = cfg.section(entry.section)
    campaigns = []
    for i, c in enumerate(cfg.model.campaigns):
        if cfg.platform_of(c.id) != entry.name:
            continue  # a campaign on another platform (routed there)
        s = cfg.campaign_settings(c.id)
        campaigns.append(
            PlatformCampaign(
                s.id, key=f"campaigns[{i}]", account_id=s.account_id, campaign_id=s.campaign_id,
                test_campaign_id=s.test_campaign_id, currency=s.currency,
            )
        )  # fmt: skip
    return PlatformContext(
        settings=settings, campaigns=tuple(campaigns), secret=EnvSecrets(settings, entry.section, str(cfg.path)),
        source=str(cfg.path), data_dir=cfg.data_dir, engine=engine, scenario=scenario,
    )  # fmt: skip


def build_platform(
    cfg: Config, name: str, engine: Engine | None = None, scenario: Scenario | None = None
) -> AdPlatform:
    """One registered platform for the campaigns configured on it (secrets from the environment)."""
    entry = PLATFORMS.get(name)
    missing = entry.missing()
    if missing:
        raise ConfigError(str(cfg.path), _asked_by(cfg, name), f"the {name} platform needs: {missing}")
    return entry.build(platform_context(cfg, entry, engine, scenario))


def make_platform(cfg: Config, scenario: Scenario | None = None, engine: Engine | None = None) -> AdPlatform:
    """The configured ad platform.

    ``engine`` is the loop's own engine: a platform that counts its API calls
    stores what a tick has not stored when it is closed.  The tick stores the
    counts itself through its session (one writer), and without an engine
    (``doctor``) nothing is written.  ``scenario`` replaces the one a
    scenario-driven platform (the simulator) would load.
    """
    if PLATFORMS.get(cfg.loop.platform).scenario:
        return build_platform(cfg, cfg.loop.platform, engine, scenario or scenario_for(cfg))
    names = cfg.platforms
    if len(names) == 1:
        return build_platform(cfg, names[0], engine)
    # Meta and Google Ads campaigns side by side: each campaign's calls go to its own platform.
    from connectors.ads.routing import RoutingAdPlatform

    built: dict[str, AdPlatform] = {}
    try:
        for name in names:
            built[name] = build_platform(cfg, name, engine)
    except BaseException:
        for platform in built.values():
            platform.close()
        raise
    return RoutingAdPlatform(built, {c.id: cfg.platform_of(c.id) for c in cfg.model.campaigns})


def backfill_days(cfg: Config) -> int:
    """Days of insights re-read every tick (``loop.backfill_days``; the old per-platform keys are folded in)."""
    return cfg.loop.backfill_days


def generators_in_use(cfg: Config) -> dict[str, str]:
    """Each generator a campaign asks for, with the first config key that asks for it."""
    wanted: dict[str, str] = {cfg.model.defaults.generator: "defaults.generator"}
    for i, c in enumerate(cfg.model.campaigns):
        wanted.setdefault(cfg.campaign_settings(c.id).generator, f"campaigns[{i}].generator")
    return wanted


def build_generator(cfg: Config, name: str, key: str = "") -> ImageGenerator:
    """One registered generator; a missing extra or API key is a ConfigError naming ``key``."""
    entry = GENERATORS.get(name)
    missing = entry.missing()
    if missing:
        raise ConfigError(str(cfg.path), key or "defaults.generator", f"the {name} backend needs: {missing}")
    settings = cfg.section(entry.section)
    ctx = GeneratorContext(
        settings=settings, secret=EnvSecrets(settings, entry.section, str(cfg.path)), source=str(cfg.path)
    )
    return entry.build(ctx)


def make_generators(cfg: Config) -> dict[str, ImageGenerator]:
    """The procedural generator always; other backends when a campaign asks for them.

    Nothing heavy happens here: the diffusers backend loads its models on
    first use (once per process), and a missing extra or API key is a
    ConfigError naming the key that asked for it.
    """
    wanted = {"procedural": "", **generators_in_use(cfg)}
    return {name: build_generator(cfg, name, key) for name, key in wanted.items()}


def meta_webhook(cfg: Config, engine: Engine | None = None) -> Any:
    """Meta's fatigue webhook (an ASGI app) for this config; secrets from the environment variables it names."""
    from connectors.meta.webhook import app_from_settings

    settings = cfg.section("meta")
    return app_from_settings(
        settings,  # type: ignore[arg-type]
        engine if engine is not None else make_engine(cfg.database_url),
        EnvSecrets(settings, "meta", str(cfg.path)),
    )


def build_runtime(
    cfg: Config,
    *,
    engine: Engine | None = None,
    platform: AdPlatform | None = None,
    plans: list[CampaignPlan] | None = None,
    generators: dict[str, ImageGenerator] | None = None,
    dry_run: bool = False,
    approval: str | None = None,
    tiering: str = "tiered",
) -> Runtime:
    engine = engine or open_engine(cfg.database_url)
    if platform is None:
        platform = make_platform(cfg, engine=engine)
    if plans is None:
        plans = campaign_plans(cfg, platform.scenario)
    return Runtime(
        engine=engine,
        platform=platform,
        generators=generators if generators is not None else make_generators(cfg),
        images=ImageStore(cfg.data_dir / "images"),
        plans=plans,
        approval=approval or cfg.loop.approval,
        tiering=tiering,
        backfill_days=backfill_days(cfg),
        dry_run=dry_run,
    )
