"""The configuration file, parsed once into frozen, validated objects.

``load_config(path)`` reads ``./creative-loop.toml`` by default and falls back
to the bundled ``config.example.toml``.  Money is written in currency units in
the file and converted to integer minor units here, at the edge.
"""

from __future__ import annotations

import logging
import os
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from connectors.ads.currencies import minor_digits
from connectors.ads.registry import PLATFORMS
from connectors.ads.scenario import SimulatedSettings
from connectors.google_ads.settings import GoogleAdsSettings
from connectors.images.diffusers import DiffusersSettings
from connectors.images.gemini import GeminiSettings
from connectors.images.registry import GENERATORS
from connectors.meta.settings import MetaSettings
from connectors.settings import ENV_NAME, MAX_MONEY, MAX_SECONDS, Money, Settings
from policies.errors import ConfigError
from storage.tomlfile import load_model, read_toml, translate

log = logging.getLogger("creative_loop.config")
# Deprecated keys already reported by this process, as (file, key): a daemon re-reads its file every tick.
_REPORTED: set[tuple[str, str]] = set()

DEFAULT_CONFIG = Path("creative-loop.toml")
BUNDLED_CONFIG = Path(__file__).resolve().parent / "data" / "config.example.toml"
# What storage can hold (money: connectors.settings.MAX_MONEY).  Ids end up inside longer ids (a
# variant's is campaign:ad:day:v3:pro-r1:live, at most 200 characters), so a campaign id is at most 64.
MAX_CAMPAIGN_ID = 64
MAX_DAYS = 3650
MAX_COUNT = 10**9
# Sections of the file that are the loop's own; every other section belongs to a registered backend.
LOOP_SECTIONS = frozenset({"loop", "defaults", "budget", "web", "celery", "campaigns"})


def to_minor(amount: float, exponent: int = 2) -> int:
    """Currency units to integer minor units, rounding half up (the edge of the system)."""
    return int((Decimal(str(amount)) * (10**exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_major(minor: int, exponent: int = 2) -> float:
    return round(minor / 10**exponent, exponent)


def currency_digits(currency: str | None) -> int:
    """Decimals of ``currency``'s minor unit, the loop's money unit (JPY 0, USD 2); 2 for none or an unknown code."""
    try:
        return minor_digits(currency or "")
    except ValueError:
        return 2


_SLOT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _default_attributes() -> dict[str, tuple[str, ...]]:
    from connectors.images.prompts import DEFAULT_ATTRIBUTES

    return dict(DEFAULT_ATTRIBUTES)


_Frozen = Settings  # frozen, unknown keys refused, no inf/nan (connectors.settings)


class PolicySettings(_Frozen):
    """Per-campaign policy settings; ``[defaults]`` sets them for every campaign."""

    # Top-two Thompson sampling (Russo 2016) finds the winner fastest: on the bundled example, a small
    # account and DESIGN.md's scenario its campaigns get the most clicks (bench/README.md, "A test the
    # money can almost resolve, and the account's clicks"); plain thompson loses fewer test clicks but
    # decides later.
    policy: str = "top_two_thompson"
    variants: int = Field(6, ge=2, le=50)  # the most drafts one test launches (the test plan may launch fewer)
    # Draft selection (issue 17): "model" generates `drafts` cheap drafts and tests those the trait
    # model expects to win (Thompson sampling); "first" generates `variants` and tests the first ones.
    selection: Literal["model", "first"] = "model"
    drafts: int = Field(24, ge=2, le=200)
    prob_best_target: float = Field(0.95, gt=0.5, lt=1.0)
    min_impressions_per_arm: int = Field(2000, ge=0, le=MAX_COUNT)
    burn_in_impressions: int = Field(0, ge=0, le=MAX_COUNT)
    burn_in_clicks: float = Field(10.0, ge=0.0, le=1e6)
    # The floor and the variance scale were chosen together (bench/README.md, "The same frontier at
    # 200 runs"): against floor 2 % and α = 1, thompson on the bundled example ends 91 % of its tests
    # confident instead of 79 %, with less regret and less spend per decided winner.
    arm_floor: float = Field(0.05, ge=0.0, lt=0.5)
    # Thompson sampling's split drawn from its posterior with the variance scaled by this (α of
    # Chapelle & Li 2011); decisions always read the true posterior.  1: plain Thompson sampling.
    thompson_variance_scale: float = Field(0.25, gt=0.0, le=4.0)
    eliminate_below: float = Field(0.05, ge=0.0, le=0.2)
    max_expected_loss: float = Field(0.01, ge=0.0, le=0.5)
    plan_lift: float = Field(0.2, gt=0.0, le=5.0)
    plan_power: float = Field(0.8, gt=0.0, lt=1.0)
    # When the money cannot resolve plan_lift with two arms, a two-arm test that resolves up to
    # plan_lift x this still runs (1: such tests are refused).
    plan_lift_tolerance: float = Field(1.5, ge=1.0, le=5.0)
    max_test_days: int = Field(21, ge=1, le=MAX_DAYS)
    min_arm_daily_budget: Money = 1.0
    commitment_days: int = Field(1, ge=1, le=30)
    overspend: float = Field(1.25, ge=1.0, le=3.0)
    reserve_pro_credit: bool = True
    generator: str = "procedural"  # a name in connectors.images.registry.GENERATORS
    brand_terms: tuple[str, ...] = ()
    # Images (issue 4): prompt templates, brand-colour and fidelity guards.
    # Options per attribute slot of the prompt templates ({palette} ...): the prompt-driven variants' traits.
    prompt_attributes: dict[str, tuple[str, ...]] = Field(default_factory=_default_attributes)
    prompt_template: str = ""  # fast tier; empty: the generator's default
    pro_prompt_template: str = ""  # pro tier; empty: the generator's default
    pro_strength: float | None = Field(None, gt=0.0, le=1.0)  # None: the backend's own
    brand_palette: tuple[str, ...] = ()  # hex codes; empty: no brand check
    brand_tolerance: float = Field(10.0, gt=0.0, le=100.0)  # ΔE00 within which a colour is on brand
    brand_max_off_share: float = Field(0.35, ge=0.0, le=1.0)  # most of the image off brand before it fails
    brand_action: Literal["flag", "reject", "correct"] = "flag"
    fidelity_threshold: float = Field(0.5, ge=-1.0, le=1.0)  # least SSIM between pro render and draft
    fidelity_retries: int = Field(1, ge=0, le=5)  # re-renders at lower strength before a person decides
    fidelity_strength_factor: float = Field(0.5, gt=0.0, lt=1.0)  # each retry multiplies the strength by this

    @field_validator("prompt_attributes")
    @classmethod
    def _attribute_slots(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        from connectors.images.prompts import PLACEHOLDERS

        for slot, options in value.items():
            if not _SLOT.match(slot) or slot in PLACEHOLDERS:
                raise ValueError(
                    f"slot {slot!r}: expected a lower-case name (letters, digits, _) other than {', '.join(PLACEHOLDERS)}"
                )
            if not 1 <= len(options) <= 50:
                raise ValueError(f"slot {slot!r}: expected 1 to 50 options, got {len(options)}")
            for option in options:
                if not option.strip() or len(option) > 80 or any(ch in option for ch in "{}\n"):
                    raise ValueError(
                        f"slot {slot!r}: option {option!r} must be 1-80 characters, without braces or newlines"
                    )
            if len(set(options)) != len(options):
                raise ValueError(f"slot {slot!r}: options must be unique")
        return value

    @field_validator("prompt_template", "pro_prompt_template")
    @classmethod
    def _known_placeholders(cls, value: str, info: ValidationInfo) -> str:
        from connectors.images.prompts import validate

        slots = info.data.get("prompt_attributes")
        return validate(value, list(slots) if slots is not None else None) if value else value

    @field_validator("brand_palette")
    @classmethod
    def _hex_codes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from policies.brand import parse_hex

        for colour in value:
            parse_hex(colour)
        return value

    @field_validator("generator")
    @classmethod
    def _registered_generator(cls, value: str) -> str:
        if value not in GENERATORS:
            raise ValueError(f"unknown generator {value!r} (registered: {', '.join(GENERATORS.names())})")
        return value

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from policies.bandit import POLICY_NAMES

        if value not in POLICY_NAMES:
            raise ValueError(f"unknown policy {value!r} (allowed: {', '.join(POLICY_NAMES)})")
        return value


class CampaignSettings(PolicySettings):
    """One campaign: its caps (currency units in the file) and its policy overrides."""

    id: str = Field(min_length=1, max_length=MAX_CAMPAIGN_ID, pattern=r"^[A-Za-z0-9_.-]+$")
    test_spend_cap: Money | None = None
    credit_cap: Money | None = None
    test_daily_budget: float | None = Field(None, gt=0, le=MAX_MONEY)
    fast_credit_cost: Money | None = None
    pro_credit_cost: Money | None = None
    # The period both caps hold for; periods follow the platform's calendar day.
    cap_period: Literal["month", "week", "lifetime"] = "month"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    # The ad platform this campaign runs on; empty: loop.platform. Meta and Google Ads campaigns can share a deployment.
    platform: str = ""
    # Platform ids (ignored by the simulated platform).
    account_id: str = ""
    campaign_id: str = ""
    test_campaign_id: str = ""

    @field_validator("platform")
    @classmethod
    def _real_platform(cls, value: str) -> str:
        real = [e.name for e in PLATFORMS if not e.scenario]
        if value and value not in real:
            raise ValueError(f"unknown platform {value!r} (a campaign may name: {', '.join(real)})")
        return value

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
    platform: str = "simulated"  # a name in connectors.ads.registry.PLATFORMS
    approval: Literal["none", "pro", "all"] = "pro"
    interval_minutes: float | None = Field(60.0, gt=0, le=366 * 24 * 60)
    cron: str | None = None
    timezone: str = "UTC"
    log_format: Literal["text", "json"] = "text"
    # inline: one process ticks every campaign; celery: `run` only schedules, workers tick (see [celery]).
    executor: Literal["inline", "celery"] = "inline"
    # Days of insights re-read every tick (late attribution updates them), whatever the platform.
    backfill_days: int = Field(7, ge=1, le=90)

    @field_validator("platform")
    @classmethod
    def _registered_platform(cls, value: str) -> str:
        if value not in PLATFORMS:
            raise ValueError(f"unknown platform {value!r} (registered: {', '.join(PLATFORMS.names())})")
        return value

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

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Paris)") from None
        return value

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            # The value may hold a password: do not echo it.
            raise ValueError(
                "not a database URL (e.g. sqlite:///data/creative-loop.db, postgresql+psycopg://host/db)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {backend!r} (sqlite or postgresql)")
        return value


class BudgetSettings(_Frozen):
    """Finance caps above the campaigns' own."""

    # Test spend and generation credits of every campaign together, per calendar month
    # (the platform's day); None: no account-wide cap.
    account_monthly_cap: float | None = Field(None, ge=0)


class CelerySettings(_Frozen):
    """``executor = "celery"``: the broker, the result backend and the limits of the queues."""

    broker_url: str = Field("redis://127.0.0.1:6379/0", min_length=1)
    result_backend: str = Field("redis://127.0.0.1:6379/1", min_length=1)
    queue_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.:-]*$")
    generation_queue_limit: int = Field(64, ge=1, le=MAX_COUNT)
    visibility_timeout: float = Field(3600.0, gt=0, le=MAX_SECONDS)
    lock_retry_seconds: float = Field(5.0, gt=0, le=MAX_SECONDS)
    tick_timeout: float = Field(600.0, gt=0, le=MAX_SECONDS)


class WebSettings(_Frozen):
    """``creative-loop serve``: where the dashboard listens and how it is protected."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8080, ge=1, le=65535)
    # Any bind other than loopback refuses to start unless this variable holds a token.
    access_token_env: str = Field("CREATIVE_LOOP_WEB_TOKEN", pattern=ENV_NAME)


class ConfigModel(_Frozen):
    """The whole file: the loop's own sections and one section per registered backend.

    The built-in backends' sections are typed fields here; the section of a
    backend registered beside them (``connectors.ads.registry``,
    ``connectors.images.registry``) is validated by its own model
    (``load_config``, ``Config.sections``).
    """

    loop: LoopSettings = LoopSettings()
    defaults: PolicySettings = PolicySettings()
    budget: BudgetSettings = BudgetSettings()
    simulated: SimulatedSettings = SimulatedSettings()
    meta: MetaSettings = MetaSettings()
    google_ads: GoogleAdsSettings = GoogleAdsSettings()
    web: WebSettings = WebSettings()
    diffusers: DiffusersSettings = DiffusersSettings()
    gemini: GeminiSettings = GeminiSettings()
    celery: CelerySettings = CelerySettings()
    campaigns: tuple[CampaignSettings, ...] = ()

    @model_validator(mode="after")
    def _celery_layout(self) -> ConfigModel:
        if (
            self.loop.executor == "celery"
            and self.loop.platform == "simulated"
            and self.simulated.layout != "per-campaign"
        ):
            raise ValueError(
                'executor "celery" on the simulated platform needs simulated.layout = "per-campaign" '
                "(workers cannot share one state file)"
            )
        return self

    @model_validator(mode="after")
    def _real_platforms_only(self) -> ConfigModel:
        named = [i for i, c in enumerate(self.campaigns) if c.platform]
        if named and PLATFORMS.get(self.loop.platform).scenario:
            real = " or ".join(f'"{e.name}"' for e in PLATFORMS if not e.scenario)
            raise ValueError(
                f"campaigns[{named[0]}].platform: per-campaign platforms need loop.platform = {real} "
                f"(the {self.loop.platform} platform runs a scenario's campaigns only)"
            )
        return self

    @field_validator("campaigns")
    @classmethod
    def _unique(cls, campaigns: tuple[CampaignSettings, ...]) -> tuple[CampaignSettings, ...]:
        ids = [c.id for c in campaigns]
        if len(set(ids)) != len(ids):
            raise ValueError(f"campaign ids must be unique, got {ids}")
        return campaigns


def backend_sections() -> dict[str, type[Settings]]:
    """Every registered backend's section of the file and the model that validates it."""
    sections: dict[str, type[Settings]] = {}
    for entry in (*PLATFORMS, *GENERATORS):
        if entry.section in LOOP_SECTIONS:
            raise ValueError(f"backend {entry.name!r}: section [{entry.section}] is the loop's own")
        if sections.setdefault(entry.section, entry.settings) is not entry.settings:
            raise ValueError(f"backend {entry.name!r}: section [{entry.section}] is registered twice")
    return sections


class Config:
    """The parsed configuration plus where it came from (paths resolve against cwd).

    ``sections`` holds the sections of backends registered beside the built-in
    ones (``ConfigModel`` types the built-in backends' sections itself).
    """

    def __init__(self, model: ConfigModel, path: Path, sections: dict[str, Settings] | None = None) -> None:
        self.model = model
        self.path = path
        self.sections = dict(sections or {})

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

    def platform_of(self, campaign_id: str) -> str:
        """The platform a campaign runs on: its own ``platform``, else ``loop.platform``."""
        for c in self.model.campaigns:
            if c.id == campaign_id and c.platform:
                return c.platform
        return self.model.loop.platform

    @property
    def platforms(self) -> list[str]:
        """Every platform a campaign runs on (``loop.platform`` when there are no campaigns)."""
        used = [self.platform_of(c.id) for c in self.model.campaigns] or [self.model.loop.platform]
        return sorted(set(used))

    def section(self, name: str) -> Settings:
        """The validated settings of a registered backend's section (``[meta]``, ``[diffusers]``, ...)."""
        if name in self.sections:
            return self.sections[name]
        if name in ConfigModel.model_fields and name not in LOOP_SECTIONS:
            value = getattr(self.model, name)
            assert isinstance(value, Settings)
            return value
        registered = backend_sections().get(name)
        if registered is None:
            raise ConfigError(str(self.path), name, "no such backend section (is its backend registered?)")
        return registered()  # a backend registered after the file was read: its defaults

    def secret(self, env_name: str, key: str) -> str:
        """Read a secret from the environment variable the config names."""
        value = os.environ.get(env_name, "")
        if not value:
            raise ConfigError(str(self.path), key, f"environment variable {env_name} is not set")
        return value


def folder_problem(folder: Path) -> str:
    """Why ``folder`` cannot be a folder this process writes to ("" when it can)."""
    text = str(folder)
    if not text.strip():
        return "expected a folder, got ''"
    if len(os.fsencode(text)) > 4000 or any(len(os.fsencode(part)) > 255 for part in folder.parts):
        return f"path too long ({len(text)} characters; a name at most 255 bytes)"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    writable = os.access(existing, os.W_OK | os.X_OK)
    if existing == folder:
        if not folder.is_dir():
            return "is a file, expected a folder"
        return "" if writable else "is not writable (a read-only folder or file system)"
    if not existing.is_dir():
        return f"cannot be made: {existing} is a file"
    return "" if writable else f"cannot be made: {existing} is not writable"


def _parse(path: Path, data: dict[str, Any]) -> tuple[ConfigModel, dict[str, Settings]]:
    """``ConfigModel`` from the file, and the sections of backends it does not type, each by its own model."""
    registered = {k: v for k, v in backend_sections().items() if k not in ConfigModel.model_fields}
    try:
        model = load_model(path, ConfigModel, {k: v for k, v in data.items() if k not in registered})
    except ConfigError as bad:
        if "." in bad.key or "[" in bad.key or not bad.problem.startswith("unknown key (allowed: "):
            raise
        allowed = ", ".join([*ConfigModel.model_fields, *registered])
        raise ConfigError(str(path), bad.key, f"unknown key (allowed: {allowed})") from None
    sections: dict[str, Settings] = {}
    for name, model_cls in registered.items():
        try:
            sections[name] = model_cls.model_validate(data.get(name, {}))
        except ValidationError as exc:
            err = translate(path, model_cls, exc)
            raise ConfigError(str(path), f"{name}.{err.key}" if err.key else name, err.problem) from None
    return model, sections


def _moved_backfill_days(
    path: Path, data: dict[str, Any], model: ConfigModel, sections: dict[str, Settings]
) -> ConfigModel:
    """``backfill_days`` moved from the platform sections to ``[loop]``: the old keys still count.

    Each old key logs one deprecation line (once per file and process).  Without ``loop.backfill_days``
    the window is what the old keys gave: the longest among the platforms in
    use, each its own section's key (a platform whose section has no such
    key, the simulator, took ``[meta]``'s).
    """
    old: dict[str, int] = {}
    for entry in PLATFORMS:
        raw = data.get(entry.section)
        if isinstance(raw, dict) and "backfill_days" in raw:
            old[entry.name] = int(Config(model, path, sections).section(entry.section).model_dump()["backfill_days"])
            if (str(path), entry.section) not in _REPORTED:
                _REPORTED.add((str(path), entry.section))
                log.warning(
                    "%s: %s.backfill_days is deprecated; set backfill_days in [loop] instead", path, entry.section
                )
    loop_raw = data.get("loop")
    if not old or (isinstance(loop_raw, dict) and "backfill_days" in loop_raw):
        return model
    default = model.loop.backfill_days

    def window(name: str) -> int:
        has_key = "backfill_days" in PLATFORMS.get(name).settings.model_fields
        return old.get(name, default) if has_key else old.get("meta", default)

    days = max(window(name) for name in Config(model, path).platforms)
    return model.model_copy(update={"loop": model.loop.model_copy(update={"backfill_days": days})})


def load_config(path: str | Path | None = None, *, check_paths: bool = True) -> Config:
    """Load ``path``, or ``./creative-loop.toml``, or the bundled example.

    An empty ``./creative-loop.toml`` found by default is an error (a file
    truncated by mistake must not run on every default); naming it with
    ``--config`` says the defaults are meant.  ``check_paths`` also checks
    that ``loop.data_dir`` can be written and ``simulated.scenario`` exists
    (``doctor`` checks them itself, to report them beside everything else).
    """
    explicit = path is not None
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else BUNDLED_CONFIG
    path = Path(path)
    data = read_toml(path)
    if not data and not explicit and path != BUNDLED_CONFIG:
        raise ConfigError(
            str(path), "", f"the file is empty; add settings, or pass --config {path} to run on every default"
        )
    model, sections = _parse(path, data)
    model = _moved_backfill_days(path, data, model, sections)
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
    if check_paths:
        problem = folder_problem(Path(model.loop.data_dir))
        if problem:
            raise ConfigError(str(path), "loop.data_dir", problem)
        scenario = model.simulated.scenario
        if scenario and not Path(scenario).is_file():
            kind = " (a folder)" if Path(scenario).is_dir() else ""
            raise ConfigError(str(path), "simulated.scenario", f"no scenario file {scenario!r}{kind}")
    return Config(model, path, sections)
