"""The simulator's scenario file (the stable format of DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage.tomlfile import load_model

BUNDLED_SCENARIO = Path(__file__).resolve().parents[2] / "loop" / "data" / "example-scenario.toml"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class VariantModel(_Frozen):
    lift_mu: float = -0.05
    lift_sigma: float = Field(0.25, ge=0)
    pro_lift: float = Field(0.10, gt=-1)


class CreativeSpec(_Frozen):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    ctr: float = Field(gt=0, lt=1)
    fatigue_onset_day: int | None = Field(None, ge=0)
    fatigue_decay_per_day: float = Field(0.04, ge=0, lt=1)
    headline: str = ""


class CampaignSpec(_Frozen):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    daily_impressions: int = Field(gt=0)
    cpm: float = Field(gt=0)
    test_daily_budget: float = Field(gt=0)
    test_spend_cap: float = Field(ge=0)
    fast_credit_cost: float = Field(ge=0)
    pro_credit_cost: float = Field(ge=0)
    credit_cap: float = Field(ge=0)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    creatives: tuple[CreativeSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_creatives(self) -> CampaignSpec:
        ids = [c.id for c in self.creatives]
        if len(set(ids)) != len(ids):
            raise ValueError(f"creative ids must be unique, got {ids}")
        return self


class Scenario(_Frozen):
    seed: int = 0
    days: int = Field(60, gt=0, le=3650)
    variants: VariantModel = VariantModel()
    campaigns: tuple[CampaignSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_campaigns(self) -> Scenario:
        ids = [c.id for c in self.campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaign ids must be unique, got {ids}")
        # A creative id is the simulated platform's ad id, and ad ids are account-wide (as on Meta):
        # the same id in two campaigns would be one ad, and one campaign would silently get no delivery.
        seen: dict[str, str] = {}
        for i, camp in enumerate(self.campaigns):
            for j, cre in enumerate(camp.creatives):
                if cre.id in seen:
                    raise ValueError(
                        f"campaigns[{i}].creatives[{j}].id: creative id {cre.id!r} is also used in campaign "
                        f"{seen[cre.id]!r}; creative ids are the simulated platform's ad ids and must be unique "
                        "across campaigns"
                    )
                seen[cre.id] = camp.id
        return self

    def campaign(self, campaign_id: str) -> CampaignSpec:
        for c in self.campaigns:
            if c.id == campaign_id:
                return c
        raise KeyError(campaign_id)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load and validate a scenario; ``None`` means the bundled example."""
    return load_model(path or BUNDLED_SCENARIO, Scenario)
