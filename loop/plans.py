"""Campaign plans: what the loop needs to know about each campaign, in minor units.

A plan merges the config's ``[defaults]`` and ``[[campaigns]]`` entry with,
on the simulated platform, the scenario's campaign (budgets, caps, costs).
A config's caps hold per ``cap_period`` (default month); a scenario's caps
hold per run (lifetime), as the simulator has always counted them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from connectors.ads.currencies import minor_digits
from connectors.ads.registry import PLATFORMS
from connectors.ads.scenario import CampaignSpec, Scenario
from loop.config import CampaignSettings, Config, to_minor
from policies.errors import ConfigError
from storage.tomlfile import translate


@dataclass(frozen=True)
class CampaignPlan:
    id: str
    currency: str
    test_spend_cap: int
    credit_cap: int
    test_daily_budget: int
    fast_credit_cost: int
    pro_credit_cost: int
    settings: CampaignSettings
    # The account-wide cap across campaigns (test spend + credits per calendar month); None: none.
    account_monthly_cap: int | None = None
    exponent: int = 2  # decimals of the currency's minor unit (ISO 4217: JPY 0, USD 2, KWD 3)
    source: str = "config"  # the file the plan was read from (for the errors that name it)

    @property
    def min_arm_minor(self) -> int:
        """The smallest daily budget an arm is given, in minor units."""
        return to_minor(self.settings.min_arm_daily_budget, self.exponent)

    @property
    def cap_period(self) -> str:
        """month | week | lifetime: the period the campaign's caps hold for."""
        return self.settings.cap_period

    def drafts(self, tiering: str = "tiered") -> int:
        """Drafts to generate per fatigued creative: ``drafts`` when the trait model selects
        (fast tier only), else ``variants``, as many as a test may launch."""
        s = self.settings
        if s.selection == "model" and tiering != "pro-only":
            return max(s.drafts, s.variants)
        return s.variants


def _required(cfg: Config, settings: CampaignSettings, key: str) -> float:
    value = getattr(settings, key)
    if value is None:
        raise ConfigError(str(cfg.path), f"campaigns[{settings.id}].{key}", "missing required key")
    return float(value)


def plan_from_settings(cfg: Config, settings: CampaignSettings) -> CampaignPlan:
    # The most the platform may spend over a daily budget on one day (its registry line: Google Ads
    # may spend up to twice an average daily budget on a day): the loop reserves at least that much,
    # whatever ``overspend`` says, so that caps hold.
    floor = PLATFORMS.get(settings.platform or cfg.loop.platform).overspend
    if floor is not None and settings.overspend < floor:
        settings = settings.model_copy(update={"overspend": floor})
        budget, cap = settings.test_daily_budget, settings.test_spend_cap
        if budget is not None and cap is not None and budget * floor > cap:
            raise ConfigError(
                str(cfg.path), f"campaigns[{settings.id}].test_daily_budget",
                f"{budget} x {floor} (the platform's daily overspend) exceeds test_spend_cap {cap}: not even one day fits",
            )  # fmt: skip
    digits = _digits(cfg, settings)

    def money(key: str, value: float | None = None) -> int:
        value = _required(cfg, settings, key) if value is None else value
        minor = to_minor(value, digits)
        if value > 0 and minor == 0:
            raise ConfigError(
                str(cfg.path), f"campaigns[{settings.id}].{key}",
                f"{value:g} is less than one minor unit of {settings.currency} ({10**-digits:g})",
            )  # fmt: skip
        return minor

    money("min_arm_daily_budget", settings.min_arm_daily_budget)  # read as min_arm_minor; refused here when 0
    return CampaignPlan(
        id=settings.id,
        currency=settings.currency,
        test_spend_cap=money("test_spend_cap"),
        credit_cap=money("credit_cap"),
        test_daily_budget=money("test_daily_budget"),
        fast_credit_cost=money("fast_credit_cost"),
        pro_credit_cost=money("pro_credit_cost"),
        settings=settings,
        account_monthly_cap=_account_cap(cfg, digits),
        exponent=digits,
        source=str(cfg.path),
    )


def _digits(cfg: Config, settings: CampaignSettings) -> int:
    """Decimals of the campaign's currency's minor unit: the loop's money is in it (0 for JPY)."""
    try:
        return minor_digits(settings.currency)
    except ValueError as exc:
        raise ConfigError(str(cfg.path), f"campaigns[{settings.id}].currency", str(exc)) from None


def _account_cap(cfg: Config, digits: int) -> int | None:
    """The account-wide cap in the campaigns' minor unit (campaign_plans refuses one over several currencies)."""
    cap = cfg.model.budget.account_monthly_cap
    return None if cap is None else to_minor(cap, digits)


def plan_from_scenario(
    cfg: Config, spec: CampaignSpec, scenario_path: str = "scenario", **overrides: object
) -> CampaignPlan:
    """The scenario gives budgets, caps and costs; the config (and ``overrides``) the policy."""
    settings = cfg.campaign_settings(spec.id)
    explicit = {c.id: c.model_fields_set for c in cfg.model.campaigns}.get(spec.id, set())
    money = {
        key: getattr(spec, key)
        for key in ("test_spend_cap", "credit_cap", "test_daily_budget", "fast_credit_cost", "pro_credit_cost")
        if key not in explicit
    }
    # The scenario's caps are per run (lifetime); caps or a period set in the config's entry
    # are the config's, which hold per cap_period (default month).
    period = {} if explicit & {"cap_period", "test_spend_cap", "credit_cap"} else {"cap_period": "lifetime"}
    data = {**settings.model_dump(), **money, "currency": spec.currency, **period, **overrides}
    try:
        merged = CampaignSettings.model_validate(data)
    except ValidationError as exc:
        # The scenario's money with the config's policy (its overspend, say): one line naming both.
        err = translate(scenario_path, CampaignSettings, exc)
        key = f"campaigns[{spec.id}]" + (f".{err.key}" if err.key else "")
        raise ConfigError(scenario_path, key, f"{err.problem} (with the policy of {cfg.path})") from None
    return plan_from_settings(cfg, merged)


def campaign_plans(cfg: Config, scenario: Scenario | None = None, **overrides: object) -> list[CampaignPlan]:
    if scenario is not None:
        plans = [plan_from_scenario(cfg, spec, scenario.path, **overrides) for spec in scenario.campaigns]
    elif not cfg.model.campaigns:
        raise ConfigError(str(cfg.path), "campaigns", "no [[campaigns]] configured")
    else:
        plans = [
            plan_from_settings(
                cfg, CampaignSettings.model_validate({**cfg.campaign_settings(c.id).model_dump(), **overrides})
            )
            for c in cfg.model.campaigns
        ]
    currencies = sorted({p.currency for p in plans})
    if cfg.model.budget.account_monthly_cap is not None and len(currencies) > 1:
        raise ConfigError(
            str(cfg.path), "budget.account_monthly_cap",
            f"campaigns spend in several currencies ({', '.join(currencies)}): one cap cannot add them up",
        )  # fmt: skip
    return plans
