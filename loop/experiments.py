"""The experiment state machine (DESIGN.md)::

    detected → exploring → [awaiting_approval] → testing → decided → rendering
             → [awaiting_approval] → scaled
    any state → abandoned (cap reached, no winner, rejected), reason stored

:func:`advance` moves one experiment as far as it can today.  Every handler
is idempotent: it looks at what is stored (variants, arms, mutations, ledger
keys) and does only what is missing, so repeating it after a crash is safe.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import numpy as np
from PIL import Image
from sqlmodel import Session, col, select

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets
from connectors.images.base import Brief, Rendered
from connectors.images.procedural import stable_seed
from connectors.images.traits import traits_for
from loop import budget_wait, events
from loop.insights import account_of, fit_account, variant_traits
from loop.parallel import ordered
from loop.plans import CampaignPlan
from loop.runtime import Runtime
from policies import brand, fidelity
from policies.bandit import ThompsonSampling, get_policy, policy_class
from policies.budget import reservation_for, split_budget
from policies.errors import CapExceeded, GenerationError
from policies.objectives import effective_counts
from policies.planning import ExperimentPlan, plan_experiment
from policies.traits import TraitPrior, select_drafts
from storage.imagecheck import ImageRejected, load_image
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import Arm, AuditEvent, BanditDecision, Creative, DailyMetric, Experiment, FatigueNoise, utcnow
from storage.states import (
    END_STATES,
    STOPPED_ARMS,
    ArmStatus,
    CreativeRole,
    CreativeStatus,
    ExperimentState,
)

log = logging.getLogger("creative_loop.experiments")


# Image-guard events (issue 4), past-tense like those in loop.events.
BRAND_CHECK_FAILED = "BrandCheckFailed"
FIDELITY_CHECK_FAILED = "FidelityCheckFailed"


class GenerationPending(Exception):
    """A generator queued its work elsewhere instead of returning an image.

    Raised by ``loop.tasks.QueuedGenerator`` (the Celery executor's generation
    queue).  The experiment stays in its state with its credits reserved;
    :func:`advance` stops the campaign's later experiments too, so that the
    tick that runs once the jobs are done takes every step in the same order
    as inline generation would.  ``jobs`` describes what was queued.
    """

    def __init__(self, jobs: list[Any]) -> None:
        super().__init__(f"{len(jobs)} generation job(s) queued")
        self.jobs = list(jobs)


def advance(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> list[str]:
    """Advance ``exp`` through as many states as today allows; returns 'id: a→b' lines."""
    moves: list[str] = []
    queued = rt.generation_jobs
    if queued and any(job.get("campaign") == plan.id for job in queued):
        return moves  # an earlier experiment waits for queued generation: keep the campaign's order
    for _ in range(8):  # a bound, not a budget: at most one pass per state
        before = exp.state
        handler = HANDLERS.get(exp.state)
        if handler is None:
            break
        try:
            handler(rt, session, plan, exp, today)
        except GenerationPending as pending:
            if queued is None:
                raise
            rt.commit(session)
            queued.extend({**job, "campaign": plan.id} for job in pending.jobs)
            break
        if exp.state == before:
            break
        moves.append(f"{exp.id}: {before} → {exp.state}")
        rt.step(f"state:{exp.state}")
    return moves


def _move(rt: Runtime, session: Session, exp: Experiment, state: ExperimentState, reason: str = "") -> None:
    exp.state = state
    if reason:
        exp.reason = reason
    exp.updated_at = utcnow()
    session.add(exp)
    rt.commit(session)


def abandon(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, reason: str, actor: str = "loop"
) -> None:
    """End an experiment without a winner: pause its arms, free its open credit reservations."""
    arms = _arms(session, exp)
    live = [a for a in arms if a.platform_ad_id and a.status != ArmStatus.PAUSED]
    if live:
        rt.perform(
            session,
            PauseAds(
                key=f"cl:{exp.id}:pause-arms",
                campaign=plan.id,
                ad_ids=tuple(a.platform_ad_id for a in live if a.platform_ad_id),
                adset_ids=tuple(a.platform_adset_id for a in live if a.platform_adset_id),
            ),
            exp.id,
        )
        for a in live:
            a.status = ArmStatus.ELIMINATED if a.status == ArmStatus.ELIMINATED else ArmStatus.PAUSED
            session.add(a)
    ledger = Ledger(session)
    for res in ledger.open_reservations(plan.id, "credit", prefix=f"credit:{exp.id}:"):
        ledger.settle(res.key, None, note=f"abandoned: {reason}")
    exp.waiting_since = exp.waiting_until = None  # an ended experiment waits for nothing
    events.record(session, events.EXPERIMENT_ABANDONED, plan.id, exp.id, actor=actor, reason=reason)
    _move(rt, session, exp, ExperimentState.ABANDONED, reason)


# -- helpers -------------------------------------------------------------------
def _arms(session: Session, exp: Experiment) -> list[Arm]:
    return list(session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all())


def _variants(session: Session, exp: Experiment) -> list[Creative]:
    return list(
        session.exec(
            select(Creative)
            .where(Creative.experiment_id == exp.id, Creative.role == CreativeRole.DRAFT)
            .order_by(col(Creative.created_at), col(Creative.id))
        ).all()
    )


def _brief(parent: Creative, plan: CampaignPlan, tier: str = "fast") -> Brief:
    s = plan.settings
    return Brief(
        headline=parent.headline or parent.label or "",
        message=parent.headline,
        brand_terms=s.brand_terms,
        prompt_template=(s.pro_prompt_template if tier == "pro" else s.prompt_template),
        attributes=s.prompt_attributes,
    )


def _brand_guard(plan: CampaignPlan, r: Rendered) -> tuple[Rendered, dict[str, Any] | None]:
    """Check ``r`` against the campaign's palette; with ``correct``, shift it onto the palette.

    Returns the (possibly corrected) render and the flags to store, or None
    when the campaign has no palette.
    """
    s = plan.settings
    if not s.brand_palette:
        return r, None
    pixels = np.asarray(r.image.convert("RGB"))
    verdict = brand.check(pixels, s.brand_palette, s.brand_tolerance, s.brand_max_off_share)
    flags = {**verdict.as_flags(), "action": s.brand_action}
    if verdict.ok or s.brand_action != "correct":
        return r, flags
    fixed = brand.correct(pixels, s.brand_palette, s.brand_tolerance)
    after = brand.check(fixed, s.brand_palette, s.brand_tolerance, s.brand_max_off_share)
    recipe = {**r.recipe, "brand_correction": {"palette": list(s.brand_palette), "tolerance": s.brand_tolerance}}
    corrected = dataclasses.replace(r, image=Image.fromarray(fixed, "RGB"), recipe=recipe)
    return corrected, {**after.as_flags(), "action": "correct", "corrected": True, "before": verdict.as_flags()}


def _source(rt: Runtime, session: Session, plan: CampaignPlan, parent: Creative) -> Image.Image:
    """The parent's live image, fetched once and kept in the image store."""
    image, new = _fetch_source(rt, plan, parent)
    if new:
        _keep_source(rt, session, parent, image, rt.images.encode(image))
    return image


def _fetch_source(rt: Runtime, plan: CampaignPlan, parent: Creative) -> tuple[Image.Image, bool]:
    """The parent's live image from the store, or from the platform (then True: not stored yet)."""
    if parent.image_hash and parent.image_hash in rt.images:
        return rt.images.open(parent.image_hash), False
    src = rt.call(
        lambda: rt.platform.source_creative(plan.id, parent.platform_ad_id or ""), f"source creative of {parent.id}"
    )
    # Truncated files, non-images, decompression bombs and odd modes stop here (ImageRejected).
    return load_image(src.image, where=f"campaign {plan.id}: source image of ad {parent.platform_ad_id}"), True


def _keep_source(rt: Runtime, session: Session, parent: Creative, image: Image.Image, png: bytes) -> None:
    """Store a fetched source image (``png``: its bytes from :meth:`ImageStore.encode`) as the parent's."""
    parent.image_hash = rt.images.put_bytes(png)
    parent.width, parent.height = image.size
    session.add(parent)


@dataclasses.dataclass(frozen=True)
class _Draft:
    """A draft rendered ahead: the (possibly brand-corrected) render, its brand flags, its PNG bytes."""

    render: Rendered
    brand: dict[str, Any] | None
    png: bytes


def _as_rendered(rt: Runtime, creative: Creative) -> Rendered:
    return Rendered(
        image=rt.images.open(creative.image_hash or ""),
        tier=creative.tier or "fast",
        seed=creative.seed or 0,
        recipe=dict(creative.recipe),
        prompt=creative.prompt,
        model=creative.model or "",
        generator=creative.generator or "",
    )


def _store_variant(
    rt: Runtime,
    session: Session,
    cid: str,
    exp: Experiment,
    parent: Creative,
    label: str,
    r: Rendered,
    role: CreativeRole,
    png: bytes | None = None,
) -> Creative:
    """Store ``r`` (``png``: its bytes from :meth:`ImageStore.encode`, when already encoded) as a candidate."""
    digest = rt.images.put_bytes(png) if png else rt.images.put(r.image)
    creative = Creative(
        id=cid,
        campaign_id=exp.campaign_id,
        role=role,
        parent_id=parent.id,
        experiment_id=exp.id,
        label=label,
        status=CreativeStatus.CANDIDATE,
        headline=parent.headline,
        recipe=r.recipe,
        prompt=r.prompt,
        seed=r.seed,
        generator=r.generator,
        model=r.model,
        tier=r.tier,
        width=r.image.width,
        height=r.image.height,
        image_hash=digest,
        traits=traits_for(r.generator, r.recipe),
    )
    session.add(creative)
    return creative


def _png(rt: Runtime, digest: str | None) -> bytes:
    return rt.images.get_bytes(digest or "")


def plan_test(session: Session, plan: CampaignPlan, exp: Experiment, budget_left: int) -> ExperimentPlan:
    """The experiment's test plan from the parent's CTR and CPM, the daily test budget and the money left."""
    s = plan.settings
    parent_rate, cpm = parent_rate_and_cpm(session, exp)
    return plan_experiment(
        baseline_rate=parent_rate,
        cpm_minor=cpm,
        daily_budget_minor=plan.test_daily_budget,
        budget_left_minor=max(0, budget_left),
        max_days=s.max_test_days,
        max_arms=s.variants,
        lift=s.plan_lift,
        max_lift=s.plan_lift * s.plan_lift_tolerance,
        power=s.plan_power,
        confidence=s.prob_best_target,
        overspend=s.overspend,
        digits=plan.exponent,
    )


# Without history, plan with a typical CTR and CPM (minor units) rather than refuse.
FALLBACK_RATE, FALLBACK_CPM = 0.01, 1000.0


def parent_rate_and_cpm(session: Session, exp: Experiment) -> tuple[float, float]:
    """The parent's CTR before fatigue (the detector's baseline) and its CPM, from what the platform reported."""
    rows = session.exec(
        select(DailyMetric).where(DailyMetric.creative_id == exp.parent_creative_id).order_by(col(DailyMetric.day))
    ).all()
    imps = sum(r.impressions for r in rows)
    spend = sum(r.spend_minor for r in rows)
    rate = exp.verdict.get("baseline_ctr") if exp.verdict else None
    if not rate or not 0 < float(rate) < 1:
        rate = sum(r.clicks for r in rows) / imps if imps else FALLBACK_RATE
    cpm = spend * 1000.0 / imps if imps and spend else FALLBACK_CPM
    return float(min(max(rate, 1e-6), 0.5)), float(cpm)


def _two_arm_spend(test_plan: ExperimentPlan, plan: CampaignPlan) -> int:
    """Money (minor units, reservations included) a two-arm test of ``test_plan``'s sample needs."""
    # As policies.planning counts money: whole days, the first one reserved with the overspend.
    days = math.ceil(2 * test_plan.per_arm_impressions * test_plan.cpm_minor / 1000 / max(1, plan.test_daily_budget))
    return reservation_for(plan.test_daily_budget, 1, plan.settings.overspend) + (days - 1) * plan.test_daily_budget


def _off_brand(v: Creative) -> bool:
    return bool(v.flags.get("brand")) and not v.flags["brand"].get("ok", True)


def _to_launch(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, variants: list[Creative], today: date
) -> list[Creative]:
    """The drafts the plan has room for; the others stay untested in the gallery, never uploaded.

    ``selection = "first"`` takes the first ones, on-brand first; ``"model"`` lets the
    trait model pick (Thompson sampling over the account's decided experiments).  Once
    made, the choice is stored (the others marked untested), so a repeated pass keeps it.
    """
    k = max(2, int(exp.plan.get("arms", len(variants))) if exp.plan else len(variants))
    launched = {a.creative_id for a in _arms(session, exp)}
    if launched or any(v.status == CreativeStatus.UNTESTED for v in variants):
        return [v for v in variants if v.id in launched or v.status != CreativeStatus.UNTESTED]
    if plan.settings.selection == "model" and len(variants) > k:
        chosen = _model_pick(rt, session, plan, exp, variants, k, today)
    else:
        chosen = sorted(variants, key=_off_brand)[:k]
    for v in variants:
        if v not in chosen and v.status == CreativeStatus.CANDIDATE:
            v.status = CreativeStatus.UNTESTED
            session.add(v)
    return [v for v in variants if v in chosen]


# The selection needs a few draws from a chain long enough to forget its start, not a full summary.
SELECTION_PRIOR = TraitPrior(draws=200, burn_in=300)


def _model_pick(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, variants: list[Creative], k: int, today: date
) -> list[Creative]:
    """The ``k`` drafts the trait model picks by Thompson sampling; off-brand drafts only to fill up."""
    seed = stable_seed(exp.seed, "select-drafts")
    rng = np.random.default_rng(seed)
    members = account_of(rt.plans, plan.id) or [plan]
    posterior, data = fit_account(session, members, rng, before=today + timedelta(days=1), prior=SELECTION_PRIOR)
    on_brand = [v for v in variants if not _off_brand(v)]
    pool = on_brand if len(on_brand) >= k else variants
    traits = [variant_traits(v) for v in pool]
    picked = [pool[i] for i in select_drafts(posterior, traits, k, rng, prior=SELECTION_PRIOR)]
    expected = posterior.design(traits) @ posterior.beta.mean(axis=0) if posterior.beta.size else np.zeros(len(pool))
    events.record(
        session, events.DRAFTS_SELECTED, plan.id, exp.id, strategy="model", seed=seed, arms=k,
        candidates=len(pool), chosen=[v.label for v in picked], model_variants=len(data),
        model_experiments=posterior.experiments,
        expected_lift_pct={v.label: round(100 * math.expm1(float(e)), 2) for v, e in zip(pool, expected, strict=True)},
    )  # fmt: skip
    return picked


# -- states --------------------------------------------------------------------
def on_detected(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Reserve generation credits (the pro render's first), then explore."""
    exp.tiering = rt.tiering
    ledger = Ledger(session)
    per_variant = plan.pro_credit_cost if rt.tiering == "pro-only" else plan.fast_credit_cost
    needs_pro = rt.tiering == "tiered" and plan.settings.reserve_pro_credit
    # Caps per period (loop.budget_wait): the money is spent today, so today's periods hold it.
    credit_left = ledger.room(plan.id, "credit", today)
    pro_cost = plan.pro_credit_cost if needs_pro and not ledger.find(f"credit:{exp.id}:pro", "reserve") else 0
    room = credit_left - pro_cost
    test_left = ledger.room(plan.id, "test", today)
    min_test = reservation_for(2 * max(1, plan.min_arm_minor), 1, plan.settings.overspend)
    if test_left < min_test:
        # Generating variants that can never be tested would waste credits.
        if budget_wait.wait(rt, session, plan, exp, "test", today,
                            budget_wait.blocking(ledger, plan, "test", today, min_test), min_test):  # fmt: skip
            return
        events.record(session, events.CAP_REACHED, plan.id, exp.id, account="test", left=test_left)
        abandon(rt, session, plan, exp, "test spend cap: no budget left to test variants")
        return
    test_plan = plan_test(session, plan, exp, test_left)
    if not test_plan.can_test:
        # Money that cannot conclude a test is not spent on one. When a whole period's cap could
        # fund the test, wait for the next period; otherwise the reason says what it could resolve.
        needed = _two_arm_spend(test_plan, plan)
        if plan_test(session, plan, exp, plan.test_spend_cap).can_test and budget_wait.wait(
            rt, session, plan, exp, "test", today, budget_wait.blocking(ledger, plan, "test", today, needed), needed
        ):
            return
        events.record(session, events.TEST_PLANNED, plan.id, exp.id, **test_plan.to_dict())
        abandon(rt, session, plan, exp, test_plan.reason)
        return
    wanted = plan.drafts(rt.tiering)
    fit = wanted if per_variant == 0 else min(wanted, max(0, room) // per_variant)
    if fit < 2:
        need = pro_cost + 2 * per_variant
        if budget_wait.wait(rt, session, plan, exp, "credit", today,
                            budget_wait.blocking(ledger, plan, "credit", today, need), need):  # fmt: skip
            return
        events.record(session, events.CAP_REACHED, plan.id, exp.id, account="credit", left=credit_left)
        abandon(rt, session, plan, exp, f"credit cap: room for {fit} variant(s), need at least 2")
        return
    if rt.hold_exploration:
        # Backpressure (loop.executors): the generation queue is full; stay detected, try the next tick.
        log.info("experiment %s: exploration held, the generation queue is full", exp.id)
        return
    budget_wait.resume(session, plan, exp, today)
    if not exp.plan:
        exp.plan = test_plan.to_dict()
        events.record(session, events.TEST_PLANNED, plan.id, exp.id, **exp.plan)
        log.info("experiment %s: test plan: %s", exp.id, test_plan.summary())
    if needs_pro:
        ledger.reserve(
            plan.id, "credit", f"credit:{exp.id}:pro", plan.pro_credit_cost, exp.id, "pro", "pro render", day=today
        )
    for i in range(1, fit + 1):
        ledger.reserve(
            plan.id, "credit", f"credit:{exp.id}:v{i}", per_variant, exp.id, "fast", f"variant v{i}", day=today
        )
    _move(rt, session, exp, ExperimentState.EXPLORING)


def on_exploring(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Generate the reserved variants, then launch them as paused test arms."""
    parent = session.get(Creative, exp.parent_creative_id)
    assert parent is not None
    ledger = Ledger(session)
    reserved = {r.key: r for r in ledger.open_reservations(plan.id, "credit", prefix=f"credit:{exp.id}:v")}
    keys = sorted(reserved, key=lambda k: int(k.rsplit(":v", 1)[1]))
    if keys:
        gen = rt.generator(plan)
        try:
            source, new_source = _fetch_source(rt, plan, parent)
        except ImageRejected as exc:
            abandon(rt, session, plan, exp, f"source image rejected: {exc.problem}")
            return
        source.load()  # read once here, not lazily by several threads at once
        brief = _brief(parent, plan)
        pro_only = exp.tiering == "pro-only"

        def make(seed: int) -> _Draft:  # on a worker thread when the generator renders side by side
            r = gen.draft(source, brief, seed)
            if pro_only:
                r = gen.render_pro(source, r, brief)
            r, flags = _brand_guard(plan, r)
            dropped = flags is not None and not flags["ok"] and plan.settings.brand_action == "reject"
            return _Draft(r, flags, b"" if dropped else ImageStore.encode(r.image))

        def job(seed: int | None) -> _Draft | bytes:  # None: a new source's PNG for the store, beside the drafts
            return rt.images.encode(source) if seed is None else make(seed)

        todo: list[tuple[str, str, int, str, bool]] = []
        for key in keys:
            label = "v" + key.rsplit(":v", 1)[1]
            seed = stable_seed(exp.seed, label)
            cid = f"{exp.id}:{label}"
            if rt.dry_run:
                rt.plan_lines.append(f"generate {cid} ({gen.name}, seed {seed})")
                continue
            todo.append((key, label, seed, cid, session.get(Creative, cid) is None))
        # Drafts render ahead on the generator's threads; each is stored, settled and committed in order.
        # A source new to the store is encoded first, on those threads too, while the first drafts render.
        seeds: list[int | None] = [None] if new_source else []
        seeds += [t[2] for t in todo if t[4]]
        drafts = ordered(job, seeds, gen.concurrency, catch=(GenerationPending, GenerationError))
        pending: list[Any] = []
        try:
            if new_source:
                png = next(drafts)
                assert isinstance(png, bytes)
                _keep_source(rt, session, parent, source, png)
            for key, label, _seed, cid, missing in todo:
                if missing:
                    outcome = next(drafts)
                    if isinstance(outcome, GenerationPending):
                        pending.extend(outcome.jobs)  # queued: ask for every variant, then wait for them all
                        continue
                    if isinstance(outcome, GenerationError):
                        ledger.settle(key, None, note=f"failed: {outcome}", open_entry=reserved[key])
                        events.record(
                            session,
                            events.GENERATION_FAILED,
                            plan.id,
                            exp.id,
                            variant=cid,
                            error=str(outcome),
                            refused=outcome.refused,
                        )
                        rt.commit(session)
                        continue
                    assert isinstance(outcome, _Draft)
                    r, brand_flags = outcome.render, outcome.brand
                    if brand_flags is not None and not brand_flags["ok"]:
                        events.record(
                            session, BRAND_CHECK_FAILED, plan.id, exp.id, variant=cid,
                            action=plan.settings.brand_action,
                            worst_delta_e=brand_flags.get("before", brand_flags)["worst_delta_e"],
                            off_brand_share=brand_flags.get("before", brand_flags)["off_brand_share"],
                        )  # fmt: skip
                        if plan.settings.brand_action == "reject":
                            # Dropped before anyone sees it: the credit goes back, the variant is never stored.
                            ledger.settle(key, None, note=f"rejected off brand: {cid}", open_entry=reserved[key])
                            rt.commit(session)
                            continue
                    stored = _store_variant(rt, session, cid, exp, parent, label, r, CreativeRole.DRAFT, outcome.png)
                    if brand_flags is not None:
                        stored.flags = {**stored.flags, "brand": brand_flags}
                ledger.settle(key, "reserved", note=f"generated {cid}", open_entry=reserved[key])
                rt.commit(session)
                rt.step("generated")
        finally:
            drafts.close()
        if pending:
            raise GenerationPending(pending)
        if rt.dry_run:
            return
    # Once per experiment, also when a crash came between the last variant's commit and this event.
    done = select(AuditEvent.id).where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.VARIANTS_GENERATED)
    if session.exec(done).first() is None:
        count, generator = len(_variants(session, exp)), rt.generator(plan).name
        events.record(session, events.VARIANTS_GENERATED, plan.id, exp.id, count=count, generator=generator)
        rt.commit(session)
    variants = _variants(session, exp)
    if len(variants) < 2:
        abandon(rt, session, plan, exp, f"only {len(variants)} variant(s) could be generated")
        return
    variants = _to_launch(rt, session, plan, exp, variants, today)
    # Launch each chosen variant as its own paused test ad set + ad.
    for pos, v in enumerate(variants):
        arm = session.exec(select(Arm).where(Arm.experiment_id == exp.id, Arm.creative_id == v.id)).first()
        if arm is None:
            arm = Arm(experiment_id=exp.id, creative_id=v.id, position=pos)
            session.add(arm)
            rt.commit(session)
        if arm.platform_ad_id:
            continue
        result = rt.perform(
            session,
            LaunchTestArm(
                key=f"cl:{exp.id}:{v.label}",
                campaign=plan.id,
                parent_ad_id=parent.platform_ad_id or "",
                image=_png(rt, v.image_hash),
                headline=v.headline,
                lineage={
                    "variant": v.id,
                    "tier": v.tier,
                    "seed": v.seed,
                    "parent": parent.id,
                    "traits": variant_traits(v),
                },  # fmt: skip
            ),
            exp.id,
        )
        arm.platform_adset_id, arm.platform_ad_id = result["adset_id"], result["ad_id"]
        arm.status = ArmStatus.PAUSED
        v.platform_ad_id, v.status = result["ad_id"], CreativeStatus.TESTING
        session.add_all([arm, v])
        rt.commit(session)
    events.record(session, events.ARMS_LAUNCHED, plan.id, exp.id, arms=len(variants))
    if rt.approval == "all" and exp.approved_stage != "drafts":
        _wait(rt, session, plan, exp, "drafts")
        return
    exp.testing_started_on = today
    _move(rt, session, exp, ExperimentState.TESTING)


def _wait(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, stage: str) -> None:
    exp.waiting_for = stage
    events.record(session, events.APPROVAL_REQUESTED, plan.id, exp.id, stage=stage)
    _move(rt, session, exp, ExperimentState.AWAITING_APPROVAL)


def on_awaiting(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Wait for a person (``approve``/``reject``); approval moves to the next state."""
    if exp.approved_stage != exp.waiting_for:
        return
    if exp.waiting_for == "drafts":
        exp.testing_started_on = today
        exp.waiting_for = None
        _move(rt, session, exp, ExperimentState.TESTING)
    else:
        exp.waiting_for = None
        on_scale(rt, session, plan, exp, today)


def arm_metrics(session: Session, arms: list[Arm], until: date) -> list[Any]:
    """Every reported day of the arms before ``until``: rows of (creative_id, day, clicks, impressions).

    One read that :func:`arm_counts`, :func:`arm_days` and the delivery check of a testing day share.
    """
    ids = [a.creative_id for a in arms]
    return list(
        session.execute(
            select(
                col(DailyMetric.creative_id),
                col(DailyMetric.day),
                col(DailyMetric.clicks),
                col(DailyMetric.impressions),
            ).where(col(DailyMetric.creative_id).in_(ids), DailyMetric.day < until)
        ).all()
    )


def arm_counts(
    session: Session, arms: list[Arm], until: date, metrics: list[Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative clicks and impressions per arm, from what the platform reported (``metrics``: :func:`arm_metrics`)."""
    clicks = np.zeros(len(arms), dtype=np.int64)
    imps = np.zeros(len(arms), dtype=np.int64)
    ids = [a.creative_id for a in arms]
    for cid, _day, c, n in arm_metrics(session, arms, until) if metrics is None else metrics:
        i = ids.index(cid)
        clicks[i] += c
        imps[i] += n
    return clicks, imps


def arm_days(session: Session, arms: list[Arm], until: date, metrics: list[Any] | None = None) -> np.ndarray:
    """Days with delivery per arm before ``until`` (``metrics``: :func:`arm_metrics`)."""
    ids = [a.creative_id for a in arms]
    days = np.zeros(len(arms))
    for cid, _day, _c, n in arm_metrics(session, arms, until) if metrics is None else metrics:
        if n > 0:
            days[ids.index(cid)] += 1
    return days


def campaign_extra_variance(session: Session, campaign_id: str, before: date) -> float:
    """The latest day-level over-dispersion (τ²) the fatigue test stored for the campaign, 0 without one."""
    row = session.exec(
        select(FatigueNoise)
        .where(FatigueNoise.campaign_id == campaign_id, FatigueNoise.day < before)
        .order_by(col(FatigueNoise.day).desc())
    ).first()
    return float(row.extra_variance) if row is not None else 0.0


def on_testing(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Decide if the data allows, else split tomorrow's test budget by the bandit."""
    s = plan.settings
    arms = _arms(session, exp)
    metrics = arm_metrics(session, arms, today)
    raw_clicks, raw_imps = arm_counts(session, arms, today, metrics)
    # Day-level noise beyond binomial (the fatigue test's estimate for the campaign) makes a day's
    # clicks worth less evidence: the bandit sees the binomial sample with the same variance.
    tau2 = campaign_extra_variance(session, plan.id, today)
    clicks, imps = effective_counts(raw_clicks, raw_imps, arm_days(session, arms, today, metrics), tau2)
    seed = stable_seed(exp.seed, today.isoformat())
    rng = np.random.default_rng(seed)
    policy = loop_policy(exp.policy, s)
    decision_row = session.exec(
        select(BanditDecision).where(BanditDecision.experiment_id == exp.id, BanditDecision.day == today)
    ).first()
    if decision_row is None:
        if exp.waiting_since is None:  # the last split is checked once, not on every day of a budget wait
            check_delivery_of_last_split(session, plan, exp, arms, today, metrics)
        active = np.array([a.status != ArmStatus.ELIMINATED for a in arms])
        out = policy.eliminate(clicks, imps, rng, active=active)
        if out.any():
            for i in np.flatnonzero(out):
                arms[i].status = ArmStatus.ELIMINATED
                session.add(arms[i])
            events.record(
                session, events.ARMS_ELIMINATED, plan.id, exp.id, day=today.isoformat(),
                arms=[arms[i].creative_id for i in np.flatnonzero(out)],
                prob_best=[float(p) for p in policy.prob_best(clicks, imps, rng, active=active)],
            )  # fmt: skip
            active &= ~out
        decision = policy.decide(clicks, imps, rng, active=active)
        if decision.winner is not None:
            _declare(rt, session, plan, exp, arms, int(decision.winner), today, decision.reason, decision.prob_best)
            return
        days_tested = (today - (exp.testing_started_on or today)).days - budget_wait.waited_test_days(exp, today)
        if days_tested >= s.max_test_days:
            _end_best_so_far(
                rt, session, plan, exp, arms, clicks, imps, today, f"no winner after {days_tested} test days"
            )
            return
        ledger = Ledger(session)
        window = s.commitment_days
        min_arm = plan.min_arm_minor
        budget, blockers = budget_wait.affordable_test_budget(ledger, plan, today, 2 * max(1, min_arm))
        if budget < 2 * max(1, min_arm):
            # A period cap: pause the arms and wait for the next period; a lifetime cap: the best arm so far.
            if budget_wait.wait_while_testing(
                rt, session, plan, exp, arms, today, blockers, reservation_for(2 * max(1, min_arm), 1, s.overspend)
            ):
                return
            events.record(
                session, events.CAP_REACHED, plan.id, exp.id, account="test", left=ledger.room(plan.id, "test", today)
            )
            _end_best_so_far(rt, session, plan, exp, arms, clicks, imps, today, "test spend cap reached")
            return
        budget_wait.resume(session, plan, exp, today)
        weights = policy.allocate(clicks, imps, rng, active=active)
        budgets = split_budget(budget, [float(w) for w in weights], minimum=min_arm)
        total = sum(budgets)
        ledger.reserve_window(
            plan.id, "test", f"test:{exp.id}:{today.isoformat()}:{window}", reservation_for(total, 1, s.overspend),
            today, window, exp.id, note=f"budgets {budgets} x {window} day(s)",
        )  # fmt: skip
        decision_row = BanditDecision(
            experiment_id=exp.id,
            day=today,
            seed=seed,
            policy=exp.policy,
            clicks=[int(c) for c in raw_clicks],
            impressions=[int(n) for n in raw_imps],
            weights=[float(w) for w in weights],
            prob_best=[float(p) for p in decision.prob_best],
            budgets_minor=budgets,
            note=decision.reason,
        )
        session.add(decision_row)
        events.record(
            session, events.ALLOCATION_SET, plan.id, exp.id, day=today.isoformat(), budgets=budgets, seed=seed,
            extra_variance=tau2,
        )  # fmt: skip
        rt.commit(session)  # money reserved and decision stored before the platform hears of it
    budgets = list(decision_row.budgets_minor)
    result = rt.perform(
        session,
        SetBudgets(
            key=f"cl:{exp.id}:budgets:{today.isoformat()}",
            campaign=plan.id,
            budgets=tuple((a.platform_adset_id or "", b) for a, b in zip(arms, budgets, strict=True)),
            end_day=today + timedelta(days=s.commitment_days - 1),
        ),
        exp.id,
    )
    paused = set(result.get("below_minimum", ()))  # the platform paused arms under its minimum budget
    for a, b in zip(arms, budgets, strict=True):
        live = b > 0 and a.platform_adset_id not in paused
        a.daily_budget_minor = b
        if a.status != ArmStatus.ELIMINATED:
            a.status = ArmStatus.LIVE if live else ArmStatus.PAUSED
        session.add(a)
    rt.commit(session)


def loop_policy(name: str, s: Any) -> Any:
    """The allocation policy as the loop runs it, from a campaign's settings (also used by compare)."""
    thompson = issubclass(policy_class(name), ThompsonSampling)
    return get_policy(
        name,
        **({"variance_scale": s.thompson_variance_scale} if thompson else {}),
        floor=s.arm_floor,
        burn_in_impressions=s.burn_in_impressions,
        burn_in_clicks=s.burn_in_clicks,
        target=s.prob_best_target,
        min_impressions=s.min_impressions_per_arm,
        eliminate_below=s.eliminate_below or None,
        relative_loss_threshold=s.max_expected_loss or None,
    )


# Normal pacing noise of a platform's delivery against a budget (coefficient of
# variation per ad set and day). Impressions bought by budget vary far more
# than a multinomial split would, so the chi-square is deflated by this much
# extra variance before it is read: only a real mismatch (an arm starved or
# pushed well past its share) is flagged, not ordinary pacing.
DELIVERY_CV = 0.15


def check_delivery_of_last_split(
    session: Session, plan: CampaignPlan, exp: Experiment, arms: list[Arm], today: date,
    metrics: list[Any] | None = None,
) -> None:  # fmt: skip
    """Compare what was delivered since the last allocation with the split asked for (``metrics``: :func:`arm_metrics`
    up to ``today``)."""
    from policies.delivery import check_delivery

    last = session.exec(
        select(BanditDecision)
        .where(BanditDecision.experiment_id == exp.id, BanditDecision.day < today)
        .order_by(col(BanditDecision.day).desc())
    ).first()
    if last is None or sum(last.budgets_minor) <= 0 or len(last.budgets_minor) != len(arms):
        return
    delivered = np.zeros(len(arms))
    ids = [a.creative_id for a in arms]
    for cid, day, _c, n in arm_metrics(session, arms, today) if metrics is None else metrics:
        if day >= last.day:
            delivered[ids.index(cid)] += n  # whole numbers: the order of the sum does not matter
    if delivered.sum() == 0:
        return
    weights = np.asarray(last.budgets_minor, dtype=float)
    phi = 1.0 + float(delivered.sum() / max(1, np.count_nonzero(weights))) * DELIVERY_CV**2
    check = check_delivery(weights, delivered / phi)
    if check.mismatch:
        events.record(
            session, events.DELIVERY_MISMATCH, plan.id, exp.id,
            day=last.day.isoformat(), requested_minor=list(last.budgets_minor),
            delivered=[int(x) for x in delivered], p_value=check.p_value, reason=check.reason,
        )  # fmt: skip
        log.warning("experiment %s: delivery mismatch: %s", exp.id, check.reason)


def _end_best_so_far(rt, session, plan, exp, arms, clicks, imps, today, why) -> None:  # type: ignore[no-untyped-def]
    if imps.sum() == 0:
        abandon(rt, session, plan, exp, f"{why}; no test data")
        return
    policy = get_policy(exp.policy)
    active = np.array([a.status != ArmStatus.ELIMINATED for a in arms])
    best = int(policy.best_so_far(clicks, imps, active=active))
    prob = policy.prob_best(clicks, imps, np.random.default_rng(exp.seed), active=active)
    _declare(rt, session, plan, exp, arms, best, today, f"{why}: best arm so far", prob)


def _declare(rt, session, plan, exp, arms, winner, today, reason, prob_best) -> None:  # type: ignore[no-untyped-def]
    exp.winner_creative_id = arms[winner].creative_id
    exp.decided_on = today
    events.record(
        session, events.WINNER_DECLARED, plan.id, exp.id,
        winner=exp.winner_creative_id, reason=reason, prob_best=[float(p) for p in prob_best],
    )  # fmt: skip
    _move(rt, session, exp, ExperimentState.DECIDED, reason)


def on_decided(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Stop the test, then render the winner at the pro tier (same seed, same recipe)."""
    arms = _arms(session, exp)
    live = [a for a in arms if a.platform_ad_id]
    if live and any(a.status not in STOPPED_ARMS for a in live):
        rt.perform(
            session,
            PauseAds(
                key=f"cl:{exp.id}:pause-arms",
                campaign=plan.id,
                ad_ids=tuple(a.platform_ad_id for a in live if a.platform_ad_id),
                adset_ids=tuple(a.platform_adset_id for a in live if a.platform_adset_id),
            ),
            exp.id,
        )
        for a in live:
            a.status = ArmStatus.ELIMINATED if a.status == ArmStatus.ELIMINATED else ArmStatus.PAUSED
            session.add(a)
        rt.commit(session)
    winner = session.get(Creative, exp.winner_creative_id)
    parent = session.get(Creative, exp.parent_creative_id)
    assert winner is not None and parent is not None
    ledger = Ledger(session)
    key = f"credit:{exp.id}:pro"
    if exp.tiering == "pro-only":
        exp.pro_creative_id = winner.id  # tested at the pro tier already
    elif exp.pro_creative_id is None:
        try:
            ledger.reserve(plan.id, "credit", key, plan.pro_credit_cost, exp.id, "pro", "pro render", day=today)
        except CapExceeded:
            pro = plan.pro_credit_cost
            if budget_wait.wait(rt, session, plan, exp, "credit", today,
                                budget_wait.blocking(ledger, plan, "credit", today, pro), pro):  # fmt: skip
                return
            abandon(rt, session, plan, exp, "credit cap: no room for the pro render")
            return
        budget_wait.resume(session, plan, exp, today)
        rt.commit(session)
        if rt.dry_run:
            rt.plan_lines.append(f"render pro of {winner.id}")
            return
        chosen, faithful = _render_pro(rt, session, plan, exp, winner, parent, today)
        if chosen is None:
            return  # the first render failed: abandoned
        exp.pro_creative_id = chosen.id
        if not faithful:
            # Every render strayed from the draft that won: a person looks before it scales.
            exp.reason = (
                f"pro render below the fidelity threshold ({plan.settings.fidelity_threshold}): approve or reject"
            )
            _wait(rt, session, plan, exp, "pro")
            return
    if ledger.is_open(key):
        ledger.settle(key, None, note="pro render not needed")
    _move(rt, session, exp, ExperimentState.RENDERING)


def _pro_strengths(rt: Runtime, plan: CampaignPlan) -> list[float | None]:
    """The strength of each pro attempt: the configured one, then lower per fidelity retry.

    A backend without a strength (procedural, gemini) gets one attempt:
    there is nothing to lower.
    """
    s = plan.settings
    base = s.pro_strength
    if base is None:
        base = rt.generator(plan).strength("pro")
    if base is None:
        return [None]
    return [round(base * s.fidelity_strength_factor**n, 4) for n in range(s.fidelity_retries + 1)]


def _render_pro(
    rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, winner: Creative, parent: Creative,
    today: date | None = None,
) -> tuple[Creative | None, bool]:  # fmt: skip
    """Render the winner at the pro tier until one keeps its composition (fidelity guard).

    Attempt 0 uses the reservation ``credit:{exp}:pro``; each retry reserves
    its own (``…:pro-r1`` …) before it runs, and a failed render releases
    it.  Each attempt is stored (``{winner}:pro``, ``{winner}:pro-r1`` …) with
    its SSIM in ``flags['fidelity']``, so a repeated tick resumes where it
    stopped.  Returns the render to scale and whether it passed; None when
    the first render failed (the experiment is then abandoned).
    """
    ledger = Ledger(session)
    draft = _as_rendered(rt, winner)
    best: Creative | None = None
    for attempt, strength in enumerate(_pro_strengths(rt, plan)):
        suffix = "pro" if attempt == 0 else f"pro-r{attempt}"
        key, cid = f"credit:{exp.id}:{suffix}", f"{winner.id}:{suffix}"
        creative = session.get(Creative, cid)
        if creative is None:
            if attempt > 0:
                try:
                    ledger.reserve(
                        plan.id, "credit", key, plan.pro_credit_cost, exp.id, "pro", f"pro retry {attempt}", day=today
                    )
                except CapExceeded as exc:
                    events.record(session, events.CAP_REACHED, plan.id, exp.id, account="credit", left=exc.left)
                    break
                rt.commit(session)
            recipe = dict(draft.recipe) if strength is None else {**draft.recipe, "pro_strength": strength}
            try:
                r = rt.generator(plan).render_pro(
                    _source(rt, session, plan, parent),
                    dataclasses.replace(draft, recipe=recipe),
                    _brief(parent, plan, "pro"),
                )
            except GenerationError as exc:
                ledger.settle(key, None, note=f"failed: {exc}")
                events.record(
                    session, events.GENERATION_FAILED, plan.id, exp.id, variant=cid, error=str(exc), refused=exc.refused
                )
                if attempt == 0:
                    abandon(rt, session, plan, exp, f"pro render failed: {exc}")
                    return None, False
                rt.commit(session)
                break
            r.image.load()  # read here once, not lazily by two threads at once
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="creative-loop-encode") as pool:
                png = pool.submit(rt.images.encode, r.image)  # the render's PNG, encoded while the guard compares
                verdict = fidelity.compare(
                    np.asarray(draft.image.convert("RGB")),
                    np.asarray(r.image.convert("RGB")),
                    plan.settings.fidelity_threshold,
                )
                encoded = png.result()
            label = f"{winner.label}-{suffix}"
            creative = _store_variant(rt, session, cid, exp, winner, label, r, CreativeRole.PRO, encoded)
            creative.flags = {
                **creative.flags,
                "fidelity": {**verdict.as_flags(), "attempt": attempt, "strength": strength},
            }
            events.record(
                session, events.PRO_RENDERED, plan.id, exp.id, creative=cid, seed=r.seed, model=r.model,
                attempt=attempt, ssim=round(verdict.ssim, 4),
            )  # fmt: skip
            if not verdict.ok:
                events.record(
                    session, FIDELITY_CHECK_FAILED, plan.id, exp.id, creative=cid, attempt=attempt, strength=strength,
                    ssim=round(verdict.ssim, 4), threshold=verdict.threshold,
                )  # fmt: skip
            ledger.settle(key, plan.pro_credit_cost, note=f"rendered {cid}")
            rt.commit(session)
        check = creative.flags.get("fidelity", {})
        if check.get("ok", True):
            return creative, True
        if best is None or check.get("ssim", -1.0) > best.flags.get("fidelity", {}).get("ssim", -1.0):
            best = creative
    return best, False


def on_rendering(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    if rt.approval in ("pro", "all") and exp.approved_stage != "pro":
        _wait(rt, session, plan, exp, "pro")
        return
    on_scale(rt, session, plan, exp, today)


def on_scale(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, today: date) -> None:
    """Put the pro render live in the parent's ad set and pause the fatigued parent."""
    pro = session.get(Creative, exp.pro_creative_id)
    parent = session.get(Creative, exp.parent_creative_id)
    assert pro is not None and parent is not None
    result = rt.perform(
        session,
        ScaleWinner(
            key=f"cl:{exp.id}:scale",
            campaign=plan.id,
            parent_ad_id=parent.platform_ad_id or "",
            image=_png(rt, pro.image_hash),
            headline=pro.headline,
            lineage={
                "variant": exp.winner_creative_id,
                "tier": "pro",
                "seed": pro.seed,
                "parent": parent.id,
                "traits": _winner_traits(session, exp),
            },  # fmt: skip
        ),
        exp.id,
    )
    if rt.dry_run:
        return
    # The scaled ad is a creative of its own (a pro row keeps the draft's lineage).
    scaled_id = f"{pro.id}:live" if pro.role == CreativeRole.DRAFT else pro.id
    scaled = session.get(Creative, scaled_id)
    if scaled is None:
        scaled = Creative(
            **{
                **pro.model_dump(),
                "id": scaled_id,
                "role": CreativeRole.PRO,
                "parent_id": pro.id,
                "label": f"{pro.label}-live",
            }
        )
    scaled.platform_ad_id, scaled.status, scaled.role = result["ad_id"], CreativeStatus.ACTIVE, CreativeRole.PRO
    parent.status = CreativeStatus.PAUSED
    exp.scaled_creative_id = scaled.id
    session.add_all([scaled, parent])
    events.record(
        session, events.WINNER_SCALED, plan.id, exp.id, creative=scaled.id, ad_id=result["ad_id"], replaced=parent.id
    )
    _move(rt, session, exp, ExperimentState.SCALED)


def _winner_traits(session: Session, exp: Experiment) -> dict[str, str]:
    winner = session.get(Creative, exp.winner_creative_id) if exp.winner_creative_id else None
    return variant_traits(winner) if winner is not None else {}


# Keyed by the plain strings rows hold (a member hashes and compares as its value).
HANDLERS: dict[str, Callable[[Runtime, Session, CampaignPlan, Experiment, date], None]] = {
    ExperimentState.DETECTED: on_detected,
    ExperimentState.EXPLORING: on_exploring,
    ExperimentState.AWAITING_APPROVAL: on_awaiting,
    ExperimentState.TESTING: on_testing,
    ExperimentState.DECIDED: on_decided,
    ExperimentState.RENDERING: on_rendering,
}


def approve(rt: Runtime, session: Session, exp: Experiment, actor: str, note: str = "") -> None:
    if exp.state != ExperimentState.AWAITING_APPROVAL or exp.waiting_for is None:
        from policies.errors import CreativeLoopError

        raise CreativeLoopError(f"experiment {exp.id} is {exp.state}, not awaiting approval", experiment=exp.id)
    exp.approved_stage = exp.waiting_for
    events.record(session, events.APPROVED, exp.campaign_id, exp.id, actor=actor, stage=exp.waiting_for, note=note)
    exp.updated_at = utcnow()
    session.add(exp)
    session.commit()


def reject(rt: Runtime, session: Session, plan: CampaignPlan, exp: Experiment, actor: str, reason: str) -> None:
    from policies.errors import CreativeLoopError

    if exp.state in END_STATES:
        raise CreativeLoopError(f"experiment {exp.id} already ended ({exp.state})", experiment=exp.id)
    events.record(session, events.REJECTED, exp.campaign_id, exp.id, actor=actor, stage=exp.waiting_for, reason=reason)
    abandon(rt, session, plan, exp, f"rejected by {actor}: {reason}", actor=actor)


__all__ = ["advance", "approve", "reject", "abandon", "arm_counts"]
