"""The simulator's scenario file (the stable format of DESIGN.md).

Every number is finite and within what the simulator and storage can hold:
money below the 32-bit minor-unit columns, a day's delivery within what the
loop accepts from a platform, ids short enough for the ids built from them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from storage.tomlfile import load_model

BUNDLED_SCENARIO = Path(__file__).resolve().parents[2] / "loop" / "data" / "example-scenario.toml"
MAX_MONEY = 20_000_000.0  # currency units: 2^31 - 1 minor units, the ledger's column, rounded down
MAX_DAILY_IMPRESSIONS = 10**9
MAX_CAMPAIGN_ID = 64  # loop.config.MAX_CAMPAIGN_ID
MAX_CREATIVE_ID = 100  # an ad id (storage: platform_ad_id)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class VariantModel(_Frozen):
    lift_mu: float = Field(-0.05, ge=-5, le=5)
    lift_sigma: float = Field(0.25, ge=0, le=5)
    pro_lift: float = Field(0.10, gt=-1, le=10)


class CreativeSpec(_Frozen):
    id: str = Field(min_length=1, max_length=MAX_CREATIVE_ID, pattern=r"^[A-Za-z0-9_.-]+$")
    ctr: float = Field(gt=0, lt=1)
    fatigue_onset_day: int | None = Field(None, ge=0, le=100_000)
    fatigue_decay_per_day: float = Field(0.04, ge=0, lt=1)
    headline: str = Field("", max_length=500)


class CampaignSpec(_Frozen):
    id: str = Field(min_length=1, max_length=MAX_CAMPAIGN_ID, pattern=r"^[A-Za-z0-9_.-]+$")
    daily_impressions: int = Field(gt=0, le=MAX_DAILY_IMPRESSIONS)
    cpm: float = Field(gt=0, le=10_000)
    test_daily_budget: float = Field(gt=0, le=MAX_MONEY)
    test_spend_cap: float = Field(ge=0, le=MAX_MONEY)
    fast_credit_cost: float = Field(ge=0, le=MAX_MONEY)
    pro_credit_cost: float = Field(ge=0, le=MAX_MONEY)
    credit_cap: float = Field(ge=0, le=MAX_MONEY)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    creatives: tuple[CreativeSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_creatives(self) -> CampaignSpec:
        ids = [c.id for c in self.creatives]
        if len(set(ids)) != len(ids):
            raise ValueError(f"creative ids must be unique, got {ids}")
        return self

    @model_validator(mode="after")
    def _day_fits(self) -> CampaignSpec:
        # A day's spend is stored in minor units per row like every amount.
        daily = self.daily_impressions * self.cpm / 1000.0
        if daily > MAX_MONEY:
            raise ValueError(
                f"daily_impressions {self.daily_impressions} at cpm {self.cpm} spend {daily:.0f} a day, "
                f"above the most one day may hold ({MAX_MONEY:.0f})"
            )
        return self


class Scenario(_Frozen):
    seed: int = Field(0, ge=0)  # numpy seeds are non-negative
    days: int = Field(60, gt=0, le=3650)
    variants: VariantModel = VariantModel()
    campaigns: tuple[CampaignSpec, ...] = Field(min_length=1)
    _path: str = PrivateAttr(default="scenario")  # the file it came from, for error lines

    @property
    def path(self) -> str:
        return self._path

    @model_validator(mode="after")
    def _unique_campaigns(self) -> Scenario:
        ids = [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaign ids must be unique, got {ids}")
        return self

    def campaign(self, campaign_id: str) -> CampaignSpec:
        for c in self.campaigns:
            if c.id == campaign_id:
                return c
        raise KeyError(campaign_id)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load and validate a scenario; ``None`` means the bundled example."""
    source = path or BUNDLED_SCENARIO
    scenario = load_model(source, Scenario)
    scenario._path = str(source)
    return scenario
