"""SQLModel tables.

Money columns end in ``_minor`` and hold integer minor units.  Every table a
tick writes has a natural unique key, so that repeating a step after a crash
finds the row it wrote instead of adding a second one.  States and statuses
are plain strings here; their values are the ``StrEnum``s of ``storage.states``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.states import ArmStatus, CreativeStatus, MutationStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Campaign(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=100)
    currency: str = Field(default="USD", max_length=3)
    test_spend_cap_minor: int = 0
    credit_cap_minor: int = 0
    # month | week | lifetime: the period both caps hold for (policies.budget.CAP_PERIODS).
    # A row made without a plan keeps the old meaning (over the campaign's life).
    # Server defaults as the migrations that added these columns to filled tables set them (test_schema).
    cap_period: str = Field(default="lifetime", max_length=10, sa_column_kwargs={"server_default": "lifetime"})
    # Set when the platform refused our credentials: the campaign's actions stop
    # until an operator fixes the token (no retry storm).
    halted_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Creative(SQLModel, table=True):
    """A live ad's creative or a generated variant, with its full lineage."""

    id: str = Field(primary_key=True, max_length=200)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    role: str = Field(max_length=20)  # a CreativeRole
    parent_id: str | None = Field(default=None, foreign_key="creative.id", index=True)
    experiment_id: str | None = Field(default=None, index=True)
    label: str | None = Field(default=None, max_length=40)  # "v3" inside its experiment
    platform_ad_id: str | None = Field(default=None, max_length=100)
    status: str = Field(default=CreativeStatus.ACTIVE, max_length=20)  # a CreativeStatus
    headline: str = ""
    recipe: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    prompt: str = ""
    seed: int | None = None
    generator: str | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, max_length=200)
    tier: str | None = Field(default=None, max_length=10)  # fast | pro
    width: int | None = None
    height: int | None = None
    image_hash: str | None = Field(default=None, max_length=64)
    flags: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Named traits from the recipe or prompt (connectors.images.traits), e.g. {"grade": "warm"}.
    traits: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class DailyMetric(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("creative_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    creative_id: str = Field(foreign_key="creative.id", index=True)
    day: date
    impressions: int = 0
    clicks: int = 0
    spend_minor: int = 0
    conversions: int = 0
    reach: int = 0
    frequency: float = 0.0
    updated_at: datetime = Field(default_factory=utcnow)


class Experiment(SQLModel, table=True):
    """One fatigued creative's search for a successor: a persisted state machine."""

    id: str = Field(primary_key=True, max_length=200)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    parent_creative_id: str = Field(foreign_key="creative.id")
    state: str = Field(max_length=30, index=True)  # an ExperimentState
    reason: str = ""
    seed: int = 0
    policy: str = "thompson"
    detected_on: date | None = None
    testing_started_on: date | None = None
    decided_on: date | None = None
    winner_creative_id: str | None = None
    pro_creative_id: str | None = None
    scaled_creative_id: str | None = None
    waiting_for: str | None = None  # while awaiting_approval: "drafts" | "pro"
    approved_stage: str | None = None  # the last stage a person approved: "drafts" | "pro"
    tiering: str = "tiered"  # tiered | pro-only
    # A period cap is used: the experiment waits (never abandoned) and is retried every tick;
    # ``waiting_until`` is the first day of the next period, when the cap has room again.
    waiting_until: date | None = None
    waiting_since: date | None = None  # the platform day the current wait began
    waited_days: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}
    )  # days spent waiting for budget while testing (they do not count as test days)
    verdict: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # The test plan made before launch (policies.planning.ExperimentPlan.to_dict()); empty before it.
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # The platform's day (not the wall clock) on which the loop saw it abandoned:
    # the retry-after-abandon cool-down counts from it, also in a simulation.
    abandoned_on: date | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Arm(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "creative_id"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True)
    creative_id: str = Field(foreign_key="creative.id")
    position: int = 0
    platform_adset_id: str | None = None
    platform_ad_id: str | None = None
    daily_budget_minor: int = 0
    status: str = Field(default=ArmStatus.PENDING, max_length=20)  # an ArmStatus


class BanditDecision(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("experiment_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True)
    day: date
    seed: int
    policy: str
    clicks: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    impressions: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    weights: list[float] = Field(default_factory=list, sa_column=Column(JSON))
    prob_best: list[float] = Field(default_factory=list, sa_column=Column(JSON))
    budgets_minor: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    winner: int | None = None
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class FatigueNoise(SQLModel, table=True):
    """The noise the fatigue test allowed for on one day of a campaign (``policies.fatigue.NoiseModel``).

    Estimated from the baseline windows of the campaign's creatives before that
    day and stored the first time the day is tested, so that a later tick,
    with more creatives or revised rows, re-tests old days exactly as before.
    """

    __table_args__ = (UniqueConstraint("campaign_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    day: date
    extra_variance: float = 0.0  # τ²: relative variance of the daily CTR beyond binomial noise
    weekday_factors: list[float] = Field(default_factory=list, sa_column=Column(JSON))  # Monday first
    df: float = 0.0  # residual baseline days behind the estimate (0: the prior alone)
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """The money ledger. A reservation stays open until a release with its key."""

    __table_args__ = (UniqueConstraint("key", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    account: str = Field(max_length=10)  # test | credit
    kind: str = Field(max_length=10)  # reserve | release | actual
    key: str = Field(max_length=250)
    amount_minor: int
    # The platform day the money belongs to: a reservation's first day (its release and its
    # actual carry the same day), so a cap period holds exactly the entries dated inside it.
    day: date | None = Field(default=None, index=True)
    experiment_id: str | None = Field(default=None, index=True)
    tier: str | None = Field(default=None, max_length=10)
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class AccountCap(SQLModel, table=True):
    """The account-wide cap across every campaign (one row, ``id = "account"``).

    ``monthly_cap_minor`` holds test spend and generation credits of all
    campaigns together per calendar month; None means no such cap.
    """

    id: str = Field(default="account", primary_key=True, max_length=20)
    monthly_cap_minor: int | None = None
    currency: str = Field(default="USD", max_length=3)
    updated_at: datetime = Field(default_factory=utcnow)


class PlatformMutation(SQLModel, table=True):
    """Every ad-platform mutation: written as an intent before it is sent, then its result."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=250, unique=True)
    campaign_id: str = Field(index=True)
    experiment_id: str | None = Field(default=None, index=True)
    kind: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default=MutationStatus.INTENT, max_length=10)  # a MutationStatus
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Platform objects made or adopted so far (ids by role, duplicates archived):
    # a retry adopts them by id instead of looking them up by name.
    objects: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    error: str = ""
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    name: str = Field(max_length=60, index=True)
    campaign_id: str | None = Field(default=None, index=True)
    experiment_id: str | None = Field(default=None, index=True)
    actor: str = Field(default="loop", max_length=100)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class TickRun(SQLModel, table=True):
    """One tick of the loop (for status, health and overlap checks)."""

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    day: date | None = None
    dry_run: bool = False
    ok: bool | None = None
    error: str = ""
    attempts: int = Field(
        default=1, sa_column_kwargs={"server_default": "1"}
    )  # a retry of the day's round reuses its record


class PlatformSignal(SQLModel, table=True):
    """A signal the ad platform sends about an ad (e.g. Meta's creative-fatigue level)."""

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str | None = Field(default=None, index=True)
    platform_ad_id: str = Field(index=True, max_length=100)
    name: str = Field(max_length=60)  # e.g. "creative_fatigue"
    level: str = Field(default="", max_length=40)  # e.g. "FATIGUED", "AT_RISK"
    value: float | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    received_at: datetime = Field(default_factory=utcnow, index=True)


class Counter(SQLModel, table=True):
    """Monotonic counters shared between processes (API calls, throttles, generations)."""

    __table_args__ = (UniqueConstraint("name", "labels"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    labels: str = Field(default="", max_length=250)  # 'tier="pro",backend="diffusers"'
    value: float = 0.0
    updated_at: datetime = Field(default_factory=utcnow)
