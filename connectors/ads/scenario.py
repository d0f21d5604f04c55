"""The simulator's scenario file (the stable format of DESIGN.md).

Every number is finite and within what the simulator and storage can hold:
money below the 32-bit minor-unit columns, a day's delivery within what the
loop accepts from a platform, ids short enough for the ids built from them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from connectors.ads.currencies import minor_digits
from connectors.settings import Settings
from storage.tomlfile import load_model

BUNDLED_SCENARIO = Path(__file__).resolve().parents[2] / "loop" / "data" / "example-scenario.toml"
MAX_MONEY = 20_000_000.0  # currency units: 2^31 - 1 minor units, the ledger's column, rounded down
MAX_DAILY_IMPRESSIONS = 10**9
MAX_CAMPAIGN_ID = 64  # loop.config.MAX_CAMPAIGN_ID
MAX_CREATIVE_ID = 100  # an ad id (storage: platform_ad_id)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class VariantModel(_Frozen):
    """How a variant's true CTR relates to its parent's (DESIGN.md).

    ``ctr = parent_base_ctr · exp(lift_mu + Σ its trait effects − Σ its parent's + N(0, lift_sigma))``:
    each trait level a variant carries (``connectors.images.traits``, sent
    with the launch as ``lineage["traits"]``) adds its effect on log CTR, and
    a parent that is itself a scaled variant takes its own traits' effects
    back (a creative's traits are what it is: a successor of a warm-graded
    winner gains nothing more from a warm grade).  An effect is
    ``trait_effects[family][level]`` when given, otherwise a draw from
    N(0, ``trait_sigma``) per level, the same for every variant of the
    scenario (an account's taste), from a stream of its own.  With
    ``trait_sigma = 0`` and no explicit effects a variant's CTR is exactly
    what it was before traits existed.
    """

    lift_mu: float = Field(-0.05, ge=-5, le=5)
    lift_sigma: float = Field(0.25, ge=0, le=5)  # the idiosyncratic part: what no trait explains
    pro_lift: float = Field(0.10, gt=-1, le=10)
    trait_sigma: float = Field(0.0, ge=0, le=2)
    trait_effects: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _finite_effects(self) -> VariantModel:
        for family, levels in self.trait_effects.items():
            for level, effect in levels.items():
                if not (-3.0 <= effect <= 3.0):
                    raise ValueError(f"trait_effects.{family}.{level}: expected a log effect in [-3, 3], got {effect}")
        return self


class CreativeSpec(_Frozen):
    id: str = Field(min_length=1, max_length=MAX_CREATIVE_ID, pattern=r"^[A-Za-z0-9_.-]+$")
    ctr: float = Field(gt=0, lt=1)
    fatigue_onset_day: int | None = Field(None, ge=0, le=100_000)
    fatigue_decay_per_day: float = Field(0.04, ge=0, lt=1)
    # Wear-out: fatigue that follows how often the audience has seen the ad.
    # Past this cumulative frequency (impressions since the ad's first day /
    # the campaign's audience_size) the CTR decays by wearout_decay per unit
    # of frequency, on top of any onset-day decay.
    wearout_frequency: float | None = Field(None, gt=0, le=1e6)
    wearout_decay: float = Field(0.10, ge=0, lt=1)
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
    audience_size: int | None = Field(None, gt=0)  # people the main ad set reaches (for wear-out)
    creatives: tuple[CreativeSpec, ...] = Field(min_length=1)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        minor_digits(value)  # ValueError for a code that is not ISO 4217
        return value

    @model_validator(mode="after")
    def _unique_creatives(self) -> CampaignSpec:
        ids = [c.id for c in self.creatives]
        if len(set(ids)) != len(ids):
            raise ValueError(f"creative ids must be unique, got {ids}")
        wearing = [c.id for c in self.creatives if c.wearout_frequency is not None]
        if wearing and self.audience_size is None:
            raise ValueError(f"audience_size is needed for wearout_frequency (creatives {wearing})")
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


WEEKDAY_FACTORS = (1.02, 1.03, 1.03, 1.01, 0.98, 0.95, 0.96)


class RealismModel(_Frozen):
    """``[realism]``: the day-to-day noise of a real ad account (DESIGN.md).

    A key left out takes the value below (realistic); 0 (or seven 1.0
    weekday factors) turns that effect off.  Without the table the simulator
    behaves as before: binomial clicks from a CTR that only fatigue moves.
    """

    ctr_overdispersion: float = Field(0.08, ge=0, le=1)  # sd of a day's log-CTR noise (per ad and day)
    weekday_factors: tuple[float, float, float, float, float, float, float] = WEEKDAY_FACTORS  # Monday first
    impression_noise: float = Field(0.15, ge=0, le=1)  # sd of a day's log impressions (main ad set)
    novelty_days: int = Field(2, ge=0, le=60)  # a new ad's first delivery days ...
    novelty_lift: float = Field(0.15, ge=0, le=5)  # ... run this much above its CTR
    min_daily_budget: float = Field(1.0, ge=0)  # the platform's minimum daily budget of an ad set
    underdelivery_below: float = Field(5.0, ge=1)  # budgets under this many minimums under-deliver ...
    underdelivery_at_minimum: float = Field(0.6, gt=0, le=1)  # ... spending this share of budget at the minimum

    @model_validator(mode="after")
    def _positive_factors(self) -> RealismModel:
        if any(not (0 < f < 10) for f in self.weekday_factors):
            raise ValueError(f"weekday_factors must be 7 numbers in (0, 10), got {list(self.weekday_factors)}")
        return self

    def delivered_share(self, budget_minor: int, digits: int = 2) -> float:
        """Share of a daily budget an ad set spends (before pacing noise): 1 well above the minimum.
        ``digits``: decimals of the campaign currency's minor unit."""
        lo = self.min_daily_budget * 10.0**digits
        if lo <= 0 or budget_minor <= 0:
            return 1.0
        hi = self.underdelivery_below * lo
        if budget_minor >= hi or hi <= lo:
            return 1.0
        frac = max(0.0, (budget_minor - lo) / (hi - lo))
        return self.underdelivery_at_minimum + (1.0 - self.underdelivery_at_minimum) * frac


class Scenario(_Frozen):
    seed: int = Field(0, ge=0)  # numpy seeds are non-negative
    days: int = Field(60, gt=0, le=3650)
    variants: VariantModel = VariantModel()
    realism: RealismModel | None = None
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
    source = path or BUNDLED_SCENARIO
    scenario = load_model(source, Scenario)
    scenario._path = str(source)
    return scenario


class SimulatedSettings(Settings):
    """The ``[simulated]`` section: the simulated platform (``loop.platform = "simulated"``)."""

    scenario: str = ""  # empty: the bundled example scenario
    start_date: str = "2026-01-05"
    # scenario: one state file for the whole scenario; per-campaign: one per campaign (needed by Celery workers).
    layout: Literal["scenario", "per-campaign"] = "scenario"

    @field_validator("start_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
        if not date(2000, 1, 1) <= day <= date(2100, 1, 1):
            raise ValueError(f"expected a date between 2000 and 2100, got {value!r}")
        return value
