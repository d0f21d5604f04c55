"""Creative insights: which traits win for an account, learnt from every decided experiment.

The read side of :mod:`policies.traits`.  :func:`trait_data` turns the
stored history into the model's inputs: for each variant that was tested in
an experiment whose test is decided, its traits (``Creative.traits``, or
derived again from its recipe for a variant stored before traits were), its
posterior log CTR over its parent's baseline CTR (the fatigue verdict's) and
that value's variance (binomial, plus the campaign's day-level
over-dispersion over the variant's days of delivery).

A model is fitted per account: the campaigns of one ``account_id`` (all
campaigns of a config that names none) learn together; ``--campaign``
narrows the data to one campaign.  The same fit drives the draft selection
(``loop.experiments``), the ``insights`` command and the dashboard page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from connectors.images.base import Brief
from connectors.images.prompts import template_for
from connectors.images.traits import PROCEDURAL_FAMILIES, describe, traits_for
from loop.config import Config
from loop.plans import CampaignPlan, campaign_plans
from policies.traits import TraitEffect, TraitPosterior, TraitPrior, fit_traits, log_ctr_moments
from storage.models import Arm, Creative, DailyMetric, Experiment, FatigueNoise

__all__ = [
    "AccountInsights",
    "TraitData",
    "account_of",
    "accounts",
    "fit_account",
    "insights",
    "plans_for",
    "sentence",
    "trait_data",
    "vocabulary",
]


@dataclass
class TraitData:
    """The model's inputs: one observation per tested variant and day of its decided experiment."""

    traits: list[dict[str, str]] = field(default_factory=list)
    log_lift: list[float] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # "experiment@day": what is compared within
    creatives: list[str] = field(default_factory=list)  # the variant of each observation
    experiments: list[str] = field(default_factory=list)  # the experiment of each observation

    def __len__(self) -> int:
        """The tested variants behind the data."""
        return len(set(self.creatives))


def vocabulary(plans: Sequence[CampaignPlan]) -> dict[str, list[str]]:
    """Every level the campaigns' generators can give, per family (tried or not).

    Procedural campaigns: the fixed families of ``connectors.images.traits``;
    prompt-driven ones: the options of each attribute slot their fast template uses.
    """
    out: dict[str, list[str]] = {}
    for plan in plans:
        s = plan.settings
        if s.generator == "procedural":
            fams = {f.name: list(f.levels) for f in PROCEDURAL_FAMILIES.values()}
        else:
            from connectors.images.prompts import slots_in

            brief = Brief(headline="", prompt_template=s.prompt_template, attributes=s.prompt_attributes)
            fams = {slot: list(s.prompt_attributes.get(slot, ())) for slot in slots_in(template_for(brief, "fast"))}
        for fam, levels in fams.items():
            known = out.setdefault(fam, [])
            known.extend(level for level in levels if level not in known)
    return out


def account_of(plans: Sequence[CampaignPlan], campaign_id: str) -> list[CampaignPlan]:
    """The campaigns that learn together with ``campaign_id``: those of its ad account."""
    mine = next((p for p in plans if p.id == campaign_id), None)
    if mine is None:
        return []
    return [p for p in plans if p.settings.account_id == mine.settings.account_id]


def accounts(plans: Sequence[CampaignPlan]) -> dict[str, list[CampaignPlan]]:
    """Campaign plans grouped by ``account_id`` (``""``: a config that names no account)."""
    out: dict[str, list[CampaignPlan]] = {}
    for p in plans:
        out.setdefault(p.settings.account_id, []).append(p)
    return out


def variant_traits(creative: Creative) -> dict[str, str]:
    """The stored traits, or those its recipe gives (a variant stored before traits existed)."""
    return dict(creative.traits or {}) or traits_for(creative.generator, creative.recipe)


def trait_data(session: Session, campaigns: Sequence[str], *, before: date | None = None) -> TraitData:
    """The model's inputs from the decided experiments of ``campaigns`` (decided before ``before``, if given).

    A variant is compared only with the arms that ran on the same days: each
    day on which two or more arms of an experiment delivered gives one
    observation per arm.  Arms share a day's weekday and a new ad's learning
    phase (they were launched together), so neither can pass for a trait; over
    whole tests they would, since the arms eliminated early have seen mostly
    their first days.  The day's log CTR is over the parent's baseline CTR, its
    variance the binomial one plus the campaign's day-level over-dispersion.
    """
    out = TraitData()
    query = select(Experiment).where(
        col(Experiment.campaign_id).in_(list(campaigns)), col(Experiment.decided_on).is_not(None)
    )
    if before is not None:
        query = query.where(col(Experiment.decided_on) < before)
    for exp in session.exec(query.order_by(col(Experiment.decided_on), col(Experiment.id))).all():
        arms = session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all()
        if len(arms) < 2:
            continue
        ids = [a.creative_id for a in arms]
        by_day: dict[date, list[DailyMetric]] = {}
        for m in session.exec(select(DailyMetric).where(col(DailyMetric.creative_id).in_(ids))).all():
            if m.impressions > 0:
                by_day.setdefault(m.day, []).append(m)
        base = math.log(_baseline(exp, session, ids))
        tau2 = _extra_variance(session, exp.campaign_id, exp.decided_on)
        traits: dict[str, dict[str, str]] = {}
        for day in sorted(by_day):
            rows = sorted(by_day[day], key=lambda m: ids.index(m.creative_id))
            if len(rows) < 2:
                continue  # one arm alone that day: nothing to compare it with
            mean, var = log_ctr_moments(
                np.array([m.clicks for m in rows]), np.array([m.impressions for m in rows]), extra_variance=tau2
            )
            for m, y, v in zip(rows, mean, var, strict=True):
                if m.creative_id not in traits:
                    creative = session.get(Creative, m.creative_id)
                    traits[m.creative_id] = variant_traits(creative) if creative is not None else {}
                out.traits.append(traits[m.creative_id])
                out.log_lift.append(float(y - base))
                out.variance.append(float(v))
                out.groups.append(f"{exp.id}@{day.isoformat()}")
                out.creatives.append(m.creative_id)
                out.experiments.append(exp.id)
    return out


def _baseline(exp: Experiment, session: Session, arm_ids: Sequence[str]) -> float:
    """The parent's CTR before fatigue (the detector's baseline); else the arms' pooled CTR."""
    rate = (exp.verdict or {}).get("baseline_ctr")
    if isinstance(rate, (int, float)) and 0 < rate < 1:
        return float(rate)
    rows = session.exec(select(DailyMetric).where(col(DailyMetric.creative_id).in_(list(arm_ids)))).all()
    return float(max(sum(m.clicks for m in rows), 0.5) / max(sum(m.impressions for m in rows), 1))


def _extra_variance(session: Session, campaign_id: str, until: date | None) -> float:
    query = select(FatigueNoise).where(FatigueNoise.campaign_id == campaign_id)
    if until is not None:
        query = query.where(FatigueNoise.day <= until)
    row = session.exec(query.order_by(col(FatigueNoise.day).desc())).first()
    return float(row.extra_variance) if row is not None else 0.0


def fit_account(
    session: Session,
    plans: Sequence[CampaignPlan],
    rng: np.random.Generator,
    *,
    campaign: str | None = None,
    before: date | None = None,
    prior: TraitPrior | None = None,
) -> tuple[TraitPosterior, TraitData]:
    """Fit the trait model on ``plans``' decided experiments (or only ``campaign``'s)."""
    ids = [campaign] if campaign is not None else [p.id for p in plans]
    data = trait_data(session, ids, before=before)
    posterior = fit_traits(
        data.traits, data.log_lift, data.variance, data.groups, rng, levels=vocabulary(plans), prior=prior,
        variants=data.creatives,
    )  # fmt: skip
    posterior.experiments = len(set(data.experiments))  # the groups it counted are experiment-days
    return posterior, data


# -- what a person reads -------------------------------------------------------------


def sentence(effect: TraitEffect) -> str:
    """``warm grade: +6 % CTR [+2, +10], 41 variants`` (the interval is the credible one)."""
    n = effect.variants
    return (
        f"{describe(effect.family, effect.value)}: {_pct(effect.pct)} % CTR "
        f"[{_pct(effect.pct_lo)}, {_pct(effect.pct_hi)}], {n} variant{'s' if n != 1 else ''}"
    )


def _pct(value: float) -> str:
    """``+6``, ``-3``, and ``+0`` (never ``-0``) for a percentage."""
    return f"{int(round(value)):+d}"


@dataclass
class AccountInsights:
    """One account's fitted insights, ready to print, serialise or draw."""

    account: str
    campaigns: list[str]
    posterior: TraitPosterior
    effects: list[TraitEffect]  # tried levels, family by family, best first within a family

    @property
    def untried(self) -> list[tuple[str, str]]:
        tried = {(e.family, e.value) for e in self.effects}
        return [
            lv for lv, n in zip(self.posterior.levels, self.posterior.counts, strict=True) if not n and lv not in tried
        ]

    def header(self) -> str:
        p = self.posterior
        who = f"account {self.account}" if self.account else "account"
        if p.variants == 0:
            return f"{who} ({', '.join(self.campaigns)}): no decided experiment yet, nothing learnt"
        mean, lo, hi = p.mean_lift_interval()
        return (
            f"{who} ({', '.join(self.campaigns)}): {p.variants} tested variants from {p.experiments} decided "
            f"experiment(s); the average variant vs its parent: {_pct(100 * math.expm1(mean))} % CTR "
            f"[{_pct(100 * math.expm1(lo))}, {_pct(100 * math.expm1(hi))}]"
        )

    def to_dict(self) -> dict[str, Any]:
        p = self.posterior
        mean, lo, hi = p.mean_lift_interval() if p.variants else (0.0, 0.0, 0.0)
        return {
            "account": self.account,
            "campaigns": self.campaigns,
            "variants": p.variants,
            "experiments": p.experiments,
            "level": p.level,
            "mean_lift": {"log": mean, "log_lo": lo, "log_hi": hi} if p.variants else None,
            "traits": [
                {
                    "family": e.family,
                    "value": e.value,
                    "effect_pct": round(e.pct, 2),
                    "lo_pct": round(e.pct_lo, 2),
                    "hi_pct": round(e.pct_hi, 2),
                    "log_effect": round(e.mean, 5),
                    "log_lo": round(e.lo, 5),
                    "log_hi": round(e.hi, 5),
                    "variants": e.variants,
                    "reliable": e.reliable,
                    "sentence": sentence(e),
                }
                for e in self.effects
            ],
            "untried": [{"family": f, "value": v} for f, v in self.untried],
        }


def plans_for(cfg: Config) -> list[CampaignPlan]:
    """The campaign plans of ``cfg`` (on the simulated platform, its scenario's campaigns)."""
    from loop.app import scenario_for

    return campaign_plans(cfg, scenario_for(cfg) if cfg.loop.platform == "simulated" else None)


def insights(
    session: Session, plans: Sequence[CampaignPlan], *, campaign: str | None = None, seed: int = 17
) -> list[AccountInsights]:
    """The fitted insights per account (one account when ``campaign`` is given); seeded, so repeatable."""
    out = []
    groups = accounts(plans)
    if campaign is not None:
        groups = {p.settings.account_id: [p] for p in plans if p.id == campaign}
    for account, members in groups.items():
        posterior, _ = fit_account(
            session, members, np.random.default_rng(seed), campaign=campaign if campaign is not None else None
        )
        order = {f: i for i, f in enumerate(posterior.families)}
        effects = sorted(
            (e for e in posterior.effects() if e.variants > 0), key=lambda e: (order[e.family], -e.mean, e.value)
        )
        out.append(AccountInsights(account, [p.id for p in members], posterior, effects))
    return out
