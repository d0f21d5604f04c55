"""Wiring: build the runtime (engine, platform, generators, image store, plans) from a config.

This is the only place that chooses concrete backends; everything else
receives them injected.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine

from connectors.ads.base import AdPlatform
from connectors.ads.scenario import Scenario, load_scenario
from connectors.ads.sharded import ShardedSimulatedAdPlatform
from connectors.ads.simulated import SimulatedAdPlatform
from connectors.images.base import ImageGenerator
from connectors.images.procedural import ProceduralGenerator
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


def make_platform(cfg: Config, scenario: Scenario | None = None, engine: Engine | None = None) -> AdPlatform:
    """The configured ad platform.

    ``engine`` is the loop's own engine: a platform that counts its API calls
    stores what a tick has not stored when it is closed.  The tick stores the
    counts itself through its session (one writer), and without an engine
    (``doctor``) nothing is written.
    """
    if cfg.loop.platform == "simulated":
        scenario = scenario or scenario_for(cfg)
        if cfg.model.simulated.layout == "per-campaign":
            return ShardedSimulatedAdPlatform(
                scenario,
                start=date.fromisoformat(cfg.model.simulated.start_date),
                state_dir=cfg.data_dir / "simulated-platform",
            )
        return SimulatedAdPlatform(
            scenario,
            start=date.fromisoformat(cfg.model.simulated.start_date),
            state_path=cfg.data_dir / "simulated-platform.json",
        )
    names = cfg.platforms
    if len(names) == 1:
        return _real_platform(cfg, names[0], engine)
    # Meta and Google Ads campaigns side by side: each campaign's calls go to its own platform.
    from connectors.ads.routing import RoutingAdPlatform

    built: dict[str, AdPlatform] = {}
    try:
        for name in names:
            built[name] = _real_platform(cfg, name, engine)
    except BaseException:
        for platform in built.values():
            platform.close()
        raise
    return RoutingAdPlatform(built, {c.id: cfg.platform_of(c.id) for c in cfg.model.campaigns})


def _real_platform(cfg: Config, name: str, engine: Engine | None = None) -> AdPlatform:
    """One real platform for the campaigns configured on it (secrets from the environment)."""
    import importlib.util

    if name == "meta":
        try:
            from connectors.meta import MetaAdPlatform  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(str(cfg.path), "loop.platform", "the Meta connector is not installed") from None
        return MetaAdPlatform.from_config(cfg, counter_engine=engine)  # type: ignore[no-any-return]
    if name == "google_ads":
        try:
            installed = importlib.util.find_spec("google.ads.googleads") is not None
        except ImportError:  # no "google" namespace at all
            installed = False
        if not installed:
            raise ConfigError(
                str(cfg.path), "loop.platform", "the google_ads platform needs: pip install 'creative-loop[google]'"
            )
        from connectors.google_ads import GoogleAdsPlatform

        return GoogleAdsPlatform.from_config(cfg, counter_engine=engine)
    raise ConfigError(str(cfg.path), "loop.platform", f"unknown platform {name!r}")


def backfill_days(cfg: Config) -> int:
    """Days re-read every tick: the longest window of the platforms in use."""
    windows = {"meta": cfg.model.meta.backfill_days, "google_ads": cfg.model.google_ads.backfill_days}
    return max(windows.get(name, cfg.model.meta.backfill_days) for name in cfg.platforms)


def make_generators(cfg: Config) -> dict[str, ImageGenerator]:
    """The procedural generator always; other backends when a campaign asks for them.

    Nothing heavy happens here: the diffusers backend loads its models on
    first use (once per process), and a missing extra or API key is a
    ConfigError naming the key that asked for it.
    """
    generators: dict[str, ImageGenerator] = {"procedural": ProceduralGenerator()}
    wanted: dict[str, str] = {cfg.model.defaults.generator: "defaults.generator"}
    for i, c in enumerate(cfg.model.campaigns):
        wanted.setdefault(cfg.campaign_settings(c.id).generator, f"campaigns[{i}].generator")
    if "diffusers" in wanted:
        import importlib.util

        from connectors.images.diffusers import DiffusersGenerator

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("diffusers") is None:
            raise ConfigError(
                str(cfg.path),
                wanted["diffusers"],
                "the diffusers backend needs: pip install 'creative-loop[diffusion]'",
            )
        d = cfg.model.diffusers
        specs = d.tier_specs()
        generators["diffusers"] = DiffusersGenerator(
            fast=specs["fast"], pro=specs["pro"], inpaint_spec=specs["inpaint"], device=d.device, dtype=d.dtype,  # type: ignore[arg-type]
        )  # fmt: skip
    if "gemini" in wanted:
        import importlib.util

        try:
            has_genai = importlib.util.find_spec("google.genai") is not None
        except ModuleNotFoundError:  # no "google" namespace at all
            has_genai = False
        if not has_genai:
            raise ConfigError(
                str(cfg.path), wanted["gemini"], "the gemini backend needs: pip install 'creative-loop[gemini]'"
            )
        from connectors.images.gemini import GeminiGenerator

        g = cfg.model.gemini
        generators["gemini"] = GeminiGenerator(
            api_key=cfg.secret(g.api_key_env, "gemini.api_key_env"), fast_model=g.fast_model, pro_model=g.pro_model,
            base_url=g.base_url or None, timeout_s=g.timeout_s,
        )  # fmt: skip
    return generators


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
    scenario = None
    engine = engine or open_engine(cfg.database_url)
    if platform is None:
        if cfg.loop.platform == "simulated":
            scenario = scenario_for(cfg)
        platform = make_platform(cfg, scenario, engine=engine)
    if plans is None:
        if isinstance(platform, SimulatedAdPlatform | ShardedSimulatedAdPlatform):
            scenario = platform.scenario
        plans = campaign_plans(cfg, scenario)
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
