"""The ad platforms the loop can run on, by name: one line per backend.

``loop.platform`` (or a campaign's ``platform``) names one; its section of the
config file (``[simulated]``, ``[meta]``, ``[google_ads]``) is validated with
the entry's settings model, ``creative-loop doctor`` checks the secrets and
the extra it lists, and ``loop.app.make_platform`` builds it through
``factory(PlatformContext)``, importing its SDK only then.  Adding a platform::

    PLATFORMS.register(PlatformEntry(
        "tiktok", TikTokSettings, "connectors.tiktok.platform:TikTokAdPlatform.from_context",
        secrets=("access_token_env",), extra="tiktok", requires=("tiktok_business",),
    ))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.ads.base import AdPlatform
from connectors.ads.scenario import Scenario, SimulatedSettings
from connectors.google_ads.settings import GoogleAdsSettings
from connectors.meta.settings import MetaSettings
from connectors.registry import Entry, Registry, no_secrets


@dataclass(frozen=True)
class PlatformCampaign:
    """One of the loop's campaigns as its platform sees it."""

    id: str  # the loop's campaign id
    key: str = ""  # where the config file sets it ("campaigns[0]"), for ConfigError lines
    account_id: str = ""
    campaign_id: str = ""
    test_campaign_id: str = ""
    currency: str = "USD"


@dataclass(frozen=True)
class PlatformContext:
    """What the loop hands a platform's factory (``loop.app`` builds it from the config).

    ``secret("access_token_env")`` is the value of the environment variable
    that settings field names (a ConfigError naming the key when it is unset;
    ``""`` with ``required=False``), see :class:`connectors.registry.EnvSecrets`.
    """

    settings: Any  # the entry's settings model, validated from the platform's config section
    campaigns: tuple[PlatformCampaign, ...] = ()  # the configured campaigns that run on this platform
    secret: Callable[..., str] = no_secrets
    source: str = "config"  # the config file, for ConfigError lines
    data_dir: Path = Path("data")  # where a platform may keep state (the simulator's files)
    engine: Any = None  # the loop's own SQLAlchemy engine: API counts still pending at close() go there
    scenario: Scenario | None = None  # the scenario a scenario-driven platform plays


@dataclass(frozen=True)
class PlatformEntry(Entry):
    """A platform's registry line.

    ``scenario``: the platform plays a scenario file (the simulator): the
    campaigns, budgets and caps come from it, and it is the only platform of
    its deployment.  ``overspend``: the most the platform may spend over a
    daily budget on one day (Google Ads: twice); the loop reserves at least that.
    """

    scenario: bool = False
    overspend: float | None = None

    def build(self, ctx: PlatformContext) -> AdPlatform:
        return self._build(ctx, AdPlatform)


PLATFORMS: Registry[PlatformEntry] = Registry("platform")
PLATFORMS.register(
    PlatformEntry(
        "simulated", SimulatedSettings, "connectors.ads.sharded:simulated_platform", scenario=True,
        doc="a scenario file played day by day, with the truth kept for scoring",
    )
)  # fmt: skip
PLATFORMS.register(
    PlatformEntry(
        "meta", MetaSettings, "connectors.meta.platform:MetaAdPlatform.from_context",
        secrets=("access_token_env",), requires=("facebook_business",),
        doc="Meta (Facebook, Instagram) through the facebook-business SDK",
    )
)  # fmt: skip
PLATFORMS.register(
    PlatformEntry(
        "google_ads", GoogleAdsSettings, "connectors.google_ads.platform:GoogleAdsPlatform.from_context",
        secrets=("developer_token_env", "client_id_env", "client_secret_env", "refresh_token_env"),
        extra="google", requires=("google.ads.googleads",), overspend=2.0,
        doc="Google Ads Demand Gen image ads through the google-ads client",
    )
)  # fmt: skip

__all__ = ["PLATFORMS", "PlatformCampaign", "PlatformContext", "PlatformEntry"]
