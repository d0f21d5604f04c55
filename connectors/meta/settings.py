"""The ``[meta]`` section of the config file (pydantic only: importing it loads no SDK)."""

from __future__ import annotations

from pydantic import Field, model_validator

from connectors.settings import MAX_SECONDS, Money, Settings


class MetaSettings(Settings):
    """The Meta connector (``platform = "meta"``): ids and switches here, secrets in the environment."""

    access_token_env: str = "META_ACCESS_TOKEN"
    app_secret_env: str = "META_APP_SECRET"
    app_id: str = ""
    api_version: str = Field("v26.0", pattern=r"^v[0-9]+\.[0-9]+$")
    graph_url: str = "https://graph.facebook.com"
    page_id: str = ""
    conversion_action: str = "offsite_conversion.fb_pixel_lead"
    backfill_days: int | None = Field(None, ge=1, le=90)  # deprecated: [loop] backfill_days
    async_insights_after_days: int = Field(14, ge=1, le=90)
    batch_size: int = Field(50, ge=1, le=50)
    min_daily_budget: Money = 1.0
    request_timeout: float = Field(30.0, gt=0, le=MAX_SECONDS)
    usage_slow_at: float = Field(75.0, ge=0, lt=100)
    usage_pause_at: float = Field(90.0, gt=0, le=100)
    webhook_verify_token_env: str = "META_WEBHOOK_VERIFY_TOKEN"
    # Points of the Graph API not verified against a live account (README, "Meta"): one switch each.
    batch_one_adset_per_campaign: bool = True
    name_filter: bool = True
    name_lookup_max_pages: int = Field(20, ge=1, le=1000)
    settle_timeout: float = Field(30.0, ge=0, le=600)
    webhook_fields: list[str] = Field(default_factory=lambda: ["*fatigue*"], min_length=1)
    webhook_level_keys: list[str] = Field(
        default_factory=lambda: ["level", "fatigue_level", "creative_fatigue"], min_length=1
    )

    @model_validator(mode="after")
    def _usage_order(self) -> MetaSettings:
        if self.usage_slow_at >= self.usage_pause_at:
            raise ValueError(f"usage_slow_at {self.usage_slow_at} must be below usage_pause_at {self.usage_pause_at}")
        return self


__all__ = ["MetaSettings"]
