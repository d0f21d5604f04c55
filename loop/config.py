"""The configuration file, parsed once into frozen, validated objects.

``load_config(path)`` reads ``./creative-loop.toml`` by default and falls back
to the bundled ``config.example.toml``.  Money is written in currency units in
the file and converted to integer minor units here, at the edge.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policies.errors import ConfigError
from storage.tomlfile import load_model, read_toml, translate

DEFAULT_CONFIG = Path("creative-loop.toml")
BUNDLED_CONFIG = Path(__file__).resolve().parent / "data" / "config.example.toml"


def to_minor(amount: float, exponent: int = 2) -> int:
    """Currency units to integer minor units, rounding half up (the edge of the system)."""
    return int((Decimal(str(amount)) * (10**exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_major(minor: int, exponent: int = 2) -> float:
    return round(minor / 10**exponent, exponent)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicySettings(_Frozen):
    """Per-campaign policy settings; ``[defaults]`` sets them for every campaign."""

    policy: str = "thompson"
    variants: int = Field(6, ge=2, le=50)
    prob_best_target: float = Field(0.95, gt=0.5, lt=1.0)
    min_impressions_per_arm: int = Field(2000, ge=0)
    burn_in_impressions: int = Field(1000, ge=0)
    arm_floor: float = Field(0.05, ge=0.0, lt=0.5)
    max_test_days: int = Field(21, ge=1)
    min_arm_daily_budget: float = Field(1.0, ge=0)
    commitment_days: int = Field(1, ge=1, le=30)
    overspend: float = Field(1.25, ge=1.0, le=3.0)
    reserve_pro_credit: bool = True
    generator: Literal["procedural", "diffusers", "gemini"] = "procedural"
    brand_terms: tuple[str, ...] = ()

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from policies.bandit import POLICY_NAMES

        if value not in POLICY_NAMES:
            raise ValueError(f"unknown policy {value!r} (allowed: {', '.join(POLICY_NAMES)})")
        return value


class CampaignSettings(PolicySettings):
    """One campaign: its caps (currency units in the file) and its policy overrides."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    test_spend_cap: float | None = Field(None, ge=0)
    credit_cap: float | None = Field(None, ge=0)
    test_daily_budget: float | None = Field(None, gt=0)
    fast_credit_cost: float | None = Field(None, ge=0)
    pro_credit_cost: float | None = Field(None, ge=0)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    # Platform ids (ignored by the simulated platform).
    account_id: str = ""
    campaign_id: str = ""
    test_campaign_id: str = ""

    @model_validator(mode="after")
    def _budget_within_cap(self) -> CampaignSettings:
        if (
            self.test_spend_cap is not None
            and self.test_daily_budget is not None
            and self.test_daily_budget * self.overspend > self.test_spend_cap
        ):
            raise ValueError(
                f"test_daily_budget {self.test_daily_budget} x overspend {self.overspend} "
                f"exceeds test_spend_cap {self.test_spend_cap}: not even one day fits"
            )
        return self


class LoopSettings(_Frozen):
    database: str = "sqlite:///data/creative-loop.db"
    data_dir: str = "data"
    platform: Literal["simulated", "meta"] = "simulated"
    approval: Literal["none", "pro", "all"] = "pro"
    interval_minutes: float | None = Field(60.0, gt=0)
    cron: str | None = None
    timezone: str = "UTC"
    log_format: Literal["text", "json"] = "text"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value


class SimulatedSettings(_Frozen):
    scenario: str = ""  # empty: the bundled example scenario
    start_date: str = "2026-01-05"


class MetaSettings(_Frozen):
    access_token_env: str = "META_ACCESS_TOKEN"
    app_secret_env: str = "META_APP_SECRET"
    app_id: str = ""
    api_version: str = Field("v26.0", pattern=r"^v[0-9]+\.[0-9]+$")
    graph_url: str = "https://graph.facebook.com"
    page_id: str = ""
    conversion_action: str = "offsite_conversion.fb_pixel_lead"
    backfill_days: int = Field(7, ge=1, le=90)
    async_insights_after_days: int = Field(14, ge=1, le=90)
    batch_size: int = Field(50, ge=1, le=50)
    min_daily_budget: float = Field(1.0, ge=0)
    request_timeout: float = Field(30.0, gt=0)
    usage_slow_at: float = Field(75.0, ge=0, lt=100)
    usage_pause_at: float = Field(90.0, gt=0, le=100)
    webhook_verify_token_env: str = "META_WEBHOOK_VERIFY_TOKEN"

    @model_validator(mode="after")
    def _usage_order(self) -> MetaSettings:
        if self.usage_slow_at >= self.usage_pause_at:
            raise ValueError(f"usage_slow_at {self.usage_slow_at} must be below usage_pause_at {self.usage_pause_at}")
        return self


class WebSettings(_Frozen):
    """``creative-loop serve``: where the dashboard listens and how it is protected."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    # Any bind other than loopback refuses to start unless this variable holds a token.
    access_token_env: str = Field("CREATIVE_LOOP_WEB_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigModel(_Frozen):
    loop: LoopSettings = LoopSettings()
    defaults: PolicySettings = PolicySettings()
    simulated: SimulatedSettings = SimulatedSettings()
    meta: MetaSettings = MetaSettings()
    web: WebSettings = WebSettings()
    campaigns: tuple[CampaignSettings, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> ConfigModel:
        ids = [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaign ids must be unique, got {ids}")
        return self


class Config:
    """The parsed configuration plus where it came from (paths resolve against cwd)."""

    def __init__(self, model: ConfigModel, path: Path) -> None:
        self.model = model
        self.path = path

    @property
    def loop(self) -> LoopSettings:
        return self.model.loop

    @property
    def data_dir(self) -> Path:
        return Path(self.model.loop.data_dir)

    @property
    def database_url(self) -> str:
        return os.environ.get("CREATIVE_LOOP_DATABASE", self.model.loop.database)

    def campaign_settings(self, campaign_id: str) -> CampaignSettings:
        """Settings of one campaign, ``[defaults]`` filled in for keys it does not set."""
        base = self.model.defaults.model_dump()
        for c in self.model.campaigns:
            if c.id == campaign_id:
                base.update(c.model_dump(exclude_unset=True))
                return CampaignSettings.model_validate(base)
        return CampaignSettings.model_validate({**base, "id": campaign_id})

    def secret(self, env_name: str, key: str) -> str:
        """Read a secret from the environment variable the config names."""
        value = os.environ.get(env_name, "")
        if not value:
            raise ConfigError(str(self.path), key, f"environment variable {env_name} is not set")
        return value


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, or ``./creative-loop.toml``, or the bundled example."""
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else BUNDLED_CONFIG
    path = Path(path)
    data = read_toml(path)
    model = load_model(path, ConfigModel, data)
    # Campaign entries inherit [defaults]: validate the merged form too, so a
    # bad combination (daily budget above the cap) names the campaign.
    for i, c in enumerate(model.campaigns):
        merged = {**model.defaults.model_dump(), **c.model_dump(exclude_unset=True)}
        try:
            CampaignSettings.model_validate(merged)
        except ValidationError as exc:
            err = translate(path, CampaignSettings, exc)
            key = f"campaigns[{i}]" + (f".{err.key}" if err.key else "")
            raise ConfigError(str(path), key, err.problem) from None
    return Config(model, path)
