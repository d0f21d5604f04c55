"""Offline policy comparison: every allocation policy on the same random streams.

``creative-loop simulate --compare thompson,uniform,epsilon_greedy --runs 50``
runs the real loop on the simulated platform once per (policy, run).  Run
``r`` uses the scenario's seed + ``r`` for *every* policy, and the simulator
draws its noise from a stream per (purpose, object, day), so the policies see
the same delivery and click noise and the same variants: their differences
are the policies' and not the dice's (common random numbers).

Each run is scored from its own in-memory database and the simulator's hidden
truth into a :class:`RunSummary`; :func:`summarize` folds a policy's runs into
one :class:`PolicyRow`.  Definitions (per run, summed over campaigns):

- ``regret_clicks``: Σ over test days and arms of impressions × (best arm's
  true CTR − the arm's true CTR), as in :mod:`loop.simulate`;
- ``first_day_regret``: the part of it lost on each experiment's first day of
  delivery, which every policy splits evenly (no data yet: burn-in); a
  policy's regret cannot fall below it, so ``first_day_pct_of_uniform`` (that
  part over uniform's mean regret) is the lowest % of uniform the policy
  could reach with one allocation a day;
- ``wasted_impressions``: test impressions on arms that were not truly best;
- impressions until P(best) ≥ 0.95: the experiment's cumulative test
  impressions at the first bandit decision (a ``BanditDecision`` row, or the
  declaration itself, which stores no row) whose largest P(best) reaches
  0.95, and whether that arm was truly best;
- detection delay: ``detected_day − true_onset_day`` for each fatigue
  detected on or after its onset; a detection before onset is a false alarm.

Draft selection (issue 17): ``--selection model,first`` runs every policy
under each selection strategy (rows named ``policy/selection``) on the same
seeds.  Per run it also scores

- ``winner CTR``: per decided experiment, the winner's true CTR over the true
  base CTR of the scenario creative its lineage started from (so a better
  winner, which becomes the next parent, counts again in its successors);
  the per-run mean;
- the winner's true CTR over its own parent's (``winner lift``);
- ``regret_at_root``: regret in clicks at a scale both strategies share.  A
  strategy that finds better winners tests their successors at higher CTRs,
  where the same relative gap between arms costs more clicks, so raw regret
  clicks compare the CTR levels as much as the tests.  Each experiment's
  regret is taken as a share of its best arm's clicks and multiplied back at
  the true CTR of the scenario creative its lineage started from:
  Σ impressions × (best − arm) / best × root CTR, i.e. the clicks the test
  would have lost had it run at the scenario creatives' own CTRs;
- the trait model fitted at the end of the run (every decided experiment,
  ``loop.insights``): how many tried trait levels' 90 % intervals cover the
  true centred effect (``oracle_trait_effect``), and how many were reported
  reliable (interval excluding zero);
- cost per winning asset: (test spend + credits) / scaled winners.

Images do not change the simulator's outcomes, so runs use a 64-pixel
procedural generator over 128-pixel source art; runs are spread over processes.  The table, the charts
and the HTML report of a :class:`Comparison` are :mod:`loop.compare_report`'s.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlmodel import Session, col, select

from connectors.ads.scenario import Scenario
from connectors.ads.simulated import SimulatedAdPlatform
from connectors.images.base import ImageGenerator
from connectors.images.procedural import ProceduralGenerator
from loop import events
from loop.config import Config
from loop.simulate import TIERINGS, run_simulation
from storage.db import session as open_session
from storage.models import Arm, AuditEvent, BanditDecision, Creative, DailyMetric, Experiment
from storage.states import ExperimentState

PROB_BEST_LEVEL = 0.95
BASELINE = "uniform"

__all__ = [
    "BASELINE",
    "Comparison",
    "PolicyRow",
    "RunSummary",
    "compare_policies",
    "parse_policies",
    "run_one",
    "summarize",
]


@dataclass
class RunSummary:
    """One policy's run on one seed, reduced to what the comparison needs."""

    policy: str
    run: int
    seed: int
    regret_clicks: float
    daily_regret: list[float]  # per simulated day, summed over campaigns and experiments
    wasted_impressions: int
    test_impressions: int
    test_spend: float
    credit_spend: float
    clicks: int  # every click of the run's campaigns: main ad sets and tests (what the account gets)
    experiments: int
    winners: int
    winners_truly_best: int
    confident: list[tuple[int, bool]]  # per experiment reaching P(best) ≥ 0.95: (impressions, truly best)
    detection_delays: list[int]
    missed_detections: int
    false_alarms: int
    detections: dict[str, int | None]  # "campaign/creative" -> detected_day
    allocation: dict[str, Any] | None = None  # a representative experiment's split, day by day
    cpu_s: float = 0.0  # CPU time the run took in its process
    endings: dict[str, int] | None = None  # experiments by how they ended (loop.simulate.ending)
    simple_regret: list[float] | None = None  # per decided experiment: (best true CTR − winner's) / best
    clicks_recovered: float = 0.0  # clicks the scaled winners earned over their fatigued parents
    best_arm_clicks: float = 0.0  # Σ test impressions × their experiment's best true CTR (regret's scale)
    regret_at_root: float = 0.0  # Σ per experiment regret / best arm's CTR × its root creative's CTR (common scale)
    selection: str | None = None  # the draft selection strategy (None: the config's, not compared)
    winner_vs_root: list[float] | None = None  # per decided experiment: winner true CTR / root creative's base CTR
    winner_vs_parent: list[float] | None = None  # per decided experiment: winner true CTR / parent's base CTR
    traits_covered: int = 0  # tried trait levels whose interval covers the true centred effect (end-of-run fit)
    traits_scored: int = 0  # tried trait levels scored
    traits_reliable: int = 0  # tried trait levels reported reliable (interval excludes zero)
    trait_variants: int = 0  # tested variants behind the end-of-run fit
    scaled_winners: int = 0  # experiments that reached scale
    first_day_regret: float = 0.0  # the part of regret_clicks lost on each experiment's first day of delivery

    @property
    def winner_ctr(self) -> float | None:
        """Mean over the run's decided experiments of the winner's true CTR over its root creative's."""
        return float(np.mean(self.winner_vs_root)) if self.winner_vs_root else None

    @property
    def cost(self) -> float:
        return self.test_spend + self.credit_spend


@dataclass
class PolicyRow:
    """A policy's runs, aggregated (means are per run unless named otherwise)."""

    policy: str
    runs: int
    regret_mean: float
    regret_se: float
    regret_pct_of_uniform: float | None
    wasted_impressions: float
    test_impressions: float
    imps_to_confident_mean: float | None
    imps_to_confident_median: float | None
    confident_experiments: int
    experiments: int
    confident_truly_best: float | None  # share of confident picks that were truly best
    winners_truly_best: float | None  # share of declared winners that were truly best
    delay_mean: float | None
    delay_median: float | None
    detections: int
    missed_detections: int
    false_alarms_per_run: float
    test_spend: float
    credit_spend: float
    clicks: float
    confident_decisions: int = 0  # tests ended by P(best) or expected loss
    best_so_far_decisions: int = 0  # tests ended by the budget or the time limit, on the best arm so far
    abandoned: int = 0  # experiments that never decided (plan, caps, rejected)
    confident_share: float | None = None  # confident / (confident + best so far)
    spend_per_decided_winner: float | None = None  # test spend / confident decisions
    simple_regret_pct: float | None = None  # mean CTR the chosen winner gives up against the best arm, in %
    net_clicks_per_spend: float | None = None  # (clicks recovered − regret clicks) per currency unit of test spend
    regret_share: float | None = None  # regret clicks / the clicks of the best arms on the same impressions
    regret_at_root_mean: float | None = None  # mean over runs of RunSummary.regret_at_root
    regret_at_root_se: float | None = None
    winner_ctr: float | None = None  # mean over runs of RunSummary.winner_ctr (winner CTR / root creative's)
    winner_ctr_se: float | None = None
    winner_lift: float | None = None  # mean winner CTR / parent's base CTR, over all decided experiments
    trait_coverage: float | None = None  # share of tried trait levels whose 90 % interval covered the truth
    runs_with_reliable_trait: int = 0  # runs whose end-of-run fit reported some trait level as reliable
    cost_per_winning_asset: float | None = None  # (test spend + credits) / scaled winners, over all runs
    scaled_winners: int = 0
    first_day_regret_mean: float = 0.0  # mean over runs of RunSummary.first_day_regret
    first_day_pct_of_uniform: float | None = None  # that over uniform's mean regret: the lowest % of uniform reachable


@dataclass
class Comparison:
    scenario: str
    days: int
    runs: int
    seed: int
    tiering: str
    policies: list[str]
    summaries: dict[str, list[RunSummary]]
    rows: list[PolicyRow]
    elapsed_s: float = 0.0
    workers: int = 1
    selections: list[str] | None = None  # draft selection strategies compared (rows are policy/selection)

    @property
    def cpu_s(self) -> float:
        return sum(s.cpu_s for runs in self.summaries.values() for s in runs)

    def row(self, policy: str) -> PolicyRow:
        return next(r for r in self.rows if r.policy == policy)

    def paired_difference(self, a: str, b: str, measure: str = "regret_clicks") -> tuple[float, float]:
        """Mean and standard error of ``a``'s regret minus ``b``'s, run by run.

        Runs share their random numbers (same seed, same streams), so the
        difference is taken per run: most of the dice cancel, and the standard
        error is that of the differences, far smaller than either policy's.
        ``measure`` names the :class:`RunSummary` field (``regret_at_root``:
        regret at the root creatives' CTRs).
        """
        ra = {s.run: getattr(s, measure) for s in self.summaries[a]}
        rb = {s.run: getattr(s, measure) for s in self.summaries[b]}
        d = np.array([ra[r] - rb[r] for r in sorted(set(ra) & set(rb))])
        if d.size == 0:
            raise ValueError(f"paired_difference: no common runs of {a!r} and {b!r}")
        se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
        return float(d.mean()), se

    def paired_lines(self) -> list[str]:
        """``thompson − epsilon_greedy: −11.6 ± 4.2 regret clicks per run (paired, 2.8 s.e.)`` for the first policy,
        and the same for the campaigns' clicks (what the account gets: a slower test keeps the fatigued
        creative in the main ad set longer, which costs clicks that test regret does not count)."""
        first, lines = self.policies[0], []
        for other in self.policies[1:]:
            mean, se = self.paired_difference(first, other)
            lines.append(f"{first} − {other}: {mean:+,.1f} ± {se:,.1f} regret clicks per run (paired{_z(mean, se)})")
            mean, se = self.paired_difference(first, other, "clicks")
            lines.append(
                f"{first} − {other}: {mean:+,.0f} ± {se:,.0f} campaign clicks per run, main ad sets and tests "
                f"(paired{_z(mean, se)})"
            )
            if self.selections:
                mean, se = self.paired_difference(first, other, "regret_at_root")
                lines.append(
                    f"{first} − {other}: {mean:+,.1f} ± {se:,.1f} regret clicks per run at the root creatives' "
                    f"CTRs (paired{_z(mean, se)})"
                )
                ratio = self.paired_winner_ratio(first, other)
                if ratio is not None:
                    m, e = ratio
                    lines.append(
                        f"{first} vs {other}: winner's true CTR {100 * m:+.1f} % ± {100 * e:.1f} "
                        f"(paired over {self.runs} run(s), mean of per-run ratios)"
                    )
        floors = [
            f"{r.policy} {r.first_day_pct_of_uniform:.1f} %"
            for r in self.rows
            if r.first_day_pct_of_uniform is not None
        ]
        if floors:
            lines.append(
                "lost on the tests' first days, split evenly before any data (the lowest % of uniform each could "
                f"reach with one allocation a day): {', '.join(floors)}"
            )
        return lines

    def paired_winner_ratio(self, a: str, b: str) -> tuple[float, float] | None:
        """Mean and s.e. over runs of ``a``'s winner CTR / ``b``'s − 1 (runs where both decided something)."""
        wa = {s.run: s.winner_ctr for s in self.summaries[a]}
        wb = {s.run: s.winner_ctr for s in self.summaries[b]}
        pairs = [(wa[r], wb[r]) for r in sorted(set(wa) & set(wb))]
        d = np.array([x / y - 1.0 for x, y in pairs if x is not None and y is not None and y > 0])
        if d.size == 0:
            return None
        return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")

    def _paired(self, measure: str) -> dict[str, dict[str, float]]:
        """``{other: {"mean": ..., "se": ...}}``: the first policy minus each other one in ``measure``, per run."""
        first = self.policies[0]
        return {
            other: dict(zip(("mean", "se"), self.paired_difference(first, other, measure), strict=True))
            for other in self.policies[1:]
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "days": self.days,
            "runs": self.runs,
            "seed": self.seed,
            "tiering": self.tiering,
            "policies": self.policies,
            "elapsed_s": round(self.elapsed_s, 1),
            "cpu_s": round(self.cpu_s, 1),
            "workers": self.workers,
            "seeds": [self.seed + r for r in range(self.runs)],
            "table": [asdict(r) for r in self.rows],
            "selections": self.selections,
            "paired": self._paired("regret_clicks"),
            "paired_clicks": self._paired("clicks"),
            "paired_regret_at_root": self._paired("regret_at_root") if self.selections else {},
            "paired_winner_ctr": {
                other: dict(zip(("mean", "se"), ratio, strict=True))
                for other in self.policies[1:]
                if self.selections and (ratio := self.paired_winner_ratio(self.policies[0], other)) is not None
            },
            "per_run": {
                p: [{k: v for k, v in asdict(s).items() if k not in ("allocation", "daily_regret")} for s in runs]
                for p, runs in self.summaries.items()
            },
        }


def _z(mean: float, se: float) -> str:
    """``, 2.8 s.e.`` for a paired difference, or nothing when its standard error is not a number."""
    return f", {abs(mean) / se:.1f} s.e." if se and math.isfinite(se) and se > 0 else ""


def parse_policies(text: str) -> list[str]:
    """``"thompson, uniform"`` -> ``["thompson", "uniform"]``; ``ValueError`` naming an unknown policy."""
    from policies.bandit import POLICY_NAMES

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"expected a comma-separated list of policies from {', '.join(POLICY_NAMES)}, got {text!r}")
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r} (allowed: {', '.join(POLICY_NAMES)})")
    if len(set(names)) != len(names):
        raise ValueError(f"each policy once, got {text!r}")
    return names


SELECTIONS = ("model", "first")


def parse_selections(text: str) -> list[str]:
    """``"model,first"`` -> ``["model", "first"]``; ``ValueError`` naming an unknown strategy."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SELECTIONS]
    if not names or unknown:
        bad = f"unknown selection {unknown[0]!r}" if unknown else f"expected a comma-separated list, got {text!r}"
        raise ValueError(f"{bad} (allowed: {', '.join(SELECTIONS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"each selection once, got {text!r}")
    return names


def label(policy: str, selection: str | None) -> str:
    """A comparison row's name: the policy, or ``policy/selection`` when selections are compared."""
    return policy if selection is None else f"{policy}/{selection}"


# -- one run -------------------------------------------------------------------

_GENERATORS: dict[str, ImageGenerator] = {}


# The comparison's images: 64-pixel drafts and pro renders cut from 128-pixel source art.
SMALL_WIDTH, SMALL_SOURCE = 64, 128


def _small_generators() -> dict[str, ImageGenerator]:
    # One per process: the generator is stateless, and 64-pixel images cost little.
    if not _GENERATORS:
        small = ProceduralGenerator(draft_width=SMALL_WIDTH, pro_width=SMALL_WIDTH)
        small.concurrency = 1  # the runs already fill the cores, one process each; 64-pixel drafts need no threads
        _GENERATORS["procedural"] = small
    return _GENERATORS


def run_one(
    cfg: Config,
    scenario: Scenario,
    policy: str,
    run: int,
    *,
    days: int | None = None,
    tiering: str = "tiered",
    keep_allocation: bool = False,
    selection: str | None = None,
) -> RunSummary:
    """Simulate ``policy`` on the scenario with seed ``scenario.seed + run`` (in-memory database).

    ``selection`` overrides every campaign's draft selection (``model`` | ``first``).
    """
    started = time.process_time()
    seeded = scenario.model_copy(update={"seed": scenario.seed + run})
    days = days or scenario.days
    with tempfile.TemporaryDirectory(prefix="creative-loop-compare-") as tmp:
        sim = run_simulation(
            cfg, seeded, days=days, tiering=tiering, policy=policy, out_dir=tmp,
            database_url="sqlite://", generators=_small_generators(), selection=selection,
            source_size=SMALL_SOURCE,
        )  # fmt: skip
        try:
            with open_session(sim.runtime.engine) as session:
                summary = _summarize_run(
                    session, sim.platform, sim.result, policy, run, seeded.seed, days, keep_allocation
                )
                _score_selection(session, sim, summary)
            summary.policy = label(policy, selection)
            summary.selection = selection
            summary.cpu_s = time.process_time() - started
            return summary
        finally:
            sim.runtime.engine.dispose()


def _summarize_run(
    session: Session,
    platform: SimulatedAdPlatform,
    result: dict[str, Any],
    policy: str,
    run: int,
    seed: int,
    days: int,
    keep_allocation: bool,
) -> RunSummary:
    daily = np.zeros(days)
    wasted = test_imps = winners = winners_best = 0
    best_clicks = 0.0  # the clicks the test impressions would have got on each experiment's best arm
    at_root = 0.0  # regret at the root creatives' CTRs (see the module docstring)
    first_day = 0.0  # regret on each experiment's first day of delivery
    confident: list[tuple[int, bool]] = []
    allocation: dict[str, Any] | None = None
    n_exps = 0
    endings: dict[str, int] = {}
    simple: list[float] = []
    for camp in result["campaigns"]:
        for e in camp["experiments"]:
            n_exps += 1
            endings[e["ended"]] = endings.get(e["ended"], 0) + 1
            if e["winner"] is not None and e["best_true_ctr"] is not None:
                winners += 1
                winners_best += e["winner_true_ctr"] == e["best_true_ctr"]
                if e["winner_true_ctr"] is not None and e["best_true_ctr"] > 0:
                    simple.append((e["best_true_ctr"] - e["winner_true_ctr"]) / e["best_true_ctr"])
    exps = session.exec(select(Experiment).order_by(col(Experiment.campaign_id), col(Experiment.created_at))).all()
    for exp in exps:
        arms = session.exec(select(Arm).where(Arm.experiment_id == exp.id).order_by(col(Arm.position))).all()
        true_ctr = [platform.ads[a.platform_ad_id].base_ctr if a.platform_ad_id in platform.ads else None for a in arms]
        known = [c for c in true_ctr if c is not None]
        if not known:
            continue
        best = max(known)
        ids = [a.creative_id for a in arms]
        metrics = session.exec(select(DailyMetric).where(col(DailyMetric.creative_id).in_(ids))).all()
        parent = session.get(Creative, exp.parent_creative_id)
        root = _root_ctr(platform, parent.platform_ad_id) if parent and parent.platform_ad_id in platform.ads else None
        lost = 0.0
        start = min((m.day for m in metrics if m.impressions > 0), default=None)
        for m in metrics:
            ctr = true_ctr[ids.index(m.creative_id)]
            if ctr is None:
                continue
            d = platform.day_index(m.day)
            if 0 <= d < days:
                daily[d] += m.impressions * (best - ctr)
            lost += m.impressions * (best - ctr)
            if m.day == start:
                first_day += m.impressions * (best - ctr)
            test_imps += m.impressions
            best_clicks += m.impressions * best
            if ctr < best:
                wasted += m.impressions
        if root is not None and best > 0:
            at_root += lost / best * root
        point = _first_confident(session, exp, ids, metrics)
        if point is not None:
            imps, arm = point
            confident.append((imps, true_ctr[arm] == best))
        if keep_allocation and allocation is None:
            allocation = _allocation(session, exp, arms)
    delays, missed, detections = [], 0, {}
    for camp in result["campaigns"]:
        for f in camp["fatigue"]:
            onset, detected = f["true_onset_day"], f["detected_day"]
            detections[f"{camp['id']}/{f['creative']}"] = detected
            if onset is not None and detected is not None and detected >= onset:
                delays.append(int(detected - onset))
            elif onset is not None and detected is None and onset < days:
                missed += 1
    return RunSummary(
        policy=policy,
        run=run,
        seed=seed,
        regret_clicks=float(daily.sum()),
        best_arm_clicks=float(best_clicks),
        regret_at_root=float(at_root),
        first_day_regret=float(first_day),
        daily_regret=[float(x) for x in daily],
        wasted_impressions=int(wasted),
        test_impressions=int(test_imps),
        test_spend=float(sum(c["test_spend"] for c in result["campaigns"])),
        credit_spend=float(sum(c["credit_spend"] for c in result["campaigns"])),
        clicks=int(sum(c["clicks"] for c in result["campaigns"])),
        experiments=n_exps,
        winners=winners,
        winners_truly_best=int(winners_best),
        confident=confident,
        detection_delays=delays,
        missed_detections=missed,
        false_alarms=int(sum(c["false_alarms"] for c in result["campaigns"])),
        detections=detections,
        allocation=allocation,
        endings=endings,
        simple_regret=simple,
        clicks_recovered=float(sum(c["clicks_recovered"] for c in result["campaigns"])),
    )


def _root_ctr(platform: SimulatedAdPlatform, ad_id: str) -> float:
    """The true base CTR of the scenario creative an ad's lineage starts from."""
    seen: set[str] = set()
    ad = platform.ads[ad_id]
    while (parent := ad.lineage.get("parent")) in platform.ads and parent not in seen:
        seen.add(parent)
        ad = platform.ads[parent]
    return ad.base_ctr


def _score_selection(session: Session, sim: Any, summary: RunSummary) -> None:
    """Winner CTRs against the parent and the root creative, and the end-of-run trait model against the truth."""
    from loop.insights import fit_account

    platform: SimulatedAdPlatform = sim.platform
    vs_root, vs_parent = [], []
    for exp in session.exec(select(Experiment).where(col(Experiment.winner_creative_id).is_not(None))).all():
        winner = session.get(Creative, exp.winner_creative_id)
        parent = session.get(Creative, exp.parent_creative_id)
        if winner is None or parent is None or winner.platform_ad_id not in platform.ads:
            continue
        if parent.platform_ad_id not in platform.ads:
            continue
        ctr = platform.ads[winner.platform_ad_id].base_ctr
        vs_parent.append(ctr / platform.ads[parent.platform_ad_id].base_ctr)
        vs_root.append(ctr / _root_ctr(platform, parent.platform_ad_id))
    summary.winner_vs_root, summary.winner_vs_parent = vs_root, vs_parent
    summary.scaled_winners = len(
        session.exec(select(Experiment).where(Experiment.state == ExperimentState.SCALED)).all()
    )
    posterior, data = fit_account(session, sim.runtime.plans, np.random.default_rng(summary.seed))
    summary.trait_variants = len(data)
    truth = {lv: platform.oracle_trait_effect(*lv) for lv in posterior.levels}
    for e in posterior.effects():
        if e.variants == 0:
            continue
        family = [t for (f, _), t in truth.items() if f == e.family]
        centred = truth[(e.family, e.value)] - float(np.mean(family))
        summary.traits_scored += 1
        summary.traits_covered += e.covers(centred)
        summary.traits_reliable += e.reliable


def _first_confident(
    session: Session, exp: Experiment, arm_ids: list[str], metrics: Sequence[DailyMetric]
) -> tuple[int, int] | None:
    """(cumulative test impressions, leading arm) at the first decision with max P(best) ≥ 0.95."""
    points: list[tuple[date, int, list[float]]] = [
        (d.day, sum(d.impressions), list(d.prob_best))
        for d in session.exec(
            select(BanditDecision).where(BanditDecision.experiment_id == exp.id).order_by(col(BanditDecision.day))
        ).all()
    ]
    # A winner declared by the stopping rule stores no decision row: its event carries P(best),
    # computed from the counts reported before the decision day.
    declared = session.exec(
        select(AuditEvent).where(AuditEvent.experiment_id == exp.id, AuditEvent.name == events.WINNER_DECLARED)
    ).first()
    if declared is not None and exp.decided_on is not None and declared.data.get("prob_best"):
        imps = sum(m.impressions for m in metrics if m.day < exp.decided_on)
        points.append((exp.decided_on, imps, [float(p) for p in declared.data["prob_best"]]))
    for _, imps, prob in sorted(points, key=lambda p: p[0]):
        if len(prob) == len(arm_ids) and max(prob) >= PROB_BEST_LEVEL:
            return imps, int(np.argmax(prob))
    return None


def _allocation(session: Session, exp: Experiment, arms: Sequence[Arm]) -> dict[str, Any] | None:
    rows = session.exec(
        select(BanditDecision).where(BanditDecision.experiment_id == exp.id).order_by(col(BanditDecision.day))
    ).all()
    if not rows:
        return None
    labels = []
    for a in arms:
        c = session.get(Creative, a.creative_id)
        labels.append((c.label if c is not None else None) or a.creative_id)
    parent = session.get(Creative, exp.parent_creative_id)
    return {
        "experiment": exp.id,
        "parent": (parent.label if parent is not None else None) or exp.parent_creative_id,
        "days": [r.day.isoformat() for r in rows],
        "weights": [list(r.weights) for r in rows],
        "labels": labels,
        "winner": next((i for i, a in enumerate(arms) if a.creative_id == exp.winner_creative_id), None),
    }


# -- many runs -----------------------------------------------------------------


def _job(args: tuple[Config, Scenario, str, int, int, str, str | None]) -> RunSummary:
    cfg, scenario, policy, run, days, tiering, selection = args
    return run_one(
        cfg, scenario, policy, run, days=days, tiering=tiering, keep_allocation=run == 0, selection=selection
    )


def compare_policies(
    cfg: Config,
    scenario: Scenario,
    policies: Sequence[str],
    runs: int = 50,
    *,
    scenario_name: str = "bundled example",
    days: int | None = None,
    tiering: str = "tiered",
    workers: int | None = None,
    on_run: Callable[[int, int], None] | None = None,
    selections: Sequence[str] | None = None,
) -> Comparison:
    """Run every policy ``runs`` times on common random numbers and aggregate.

    ``workers`` processes (default: the CPU count; 1 runs in this process);
    ``on_run(done, total)`` is called after each finished simulation.
    ``selections`` (``model``, ``first``) runs each policy under each draft
    selection strategy; rows are then named ``policy/selection``.
    """
    # 1. check inputs
    if runs < 1:
        raise ValueError(f"runs: expected >= 1, got {runs}")
    if tiering not in TIERINGS:
        raise ValueError(f"tiering: expected one of {TIERINGS}, got {tiering!r}")
    policies = parse_policies(",".join(policies))
    chosen: list[str | None] = list(parse_selections(",".join(selections))) if selections else [None]
    days = days or scenario.days
    # 2. one job per (run, policy, selection); runs first, so an interrupted compare has whole runs
    jobs = [(cfg, scenario, p, r, days, tiering, sel) for r in range(runs) for p in policies for sel in chosen]
    labels = [label(p, sel) for p in policies for sel in chosen]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    started = datetime.now(UTC)
    done: list[RunSummary] = []
    if workers == 1:
        for job in jobs:
            done.append(_job(job))
            if on_run is not None:
                on_run(len(done), len(jobs))
    else:
        # Not fork: the caller may be running threads (a progress bar); forkserver starts clean workers.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
            futures = [pool.submit(_job, job) for job in jobs]
            for fut in as_completed(futures):
                done.append(fut.result())
                if on_run is not None:
                    on_run(len(done), len(jobs))
    # 3. aggregate per policy, in run order
    summaries = {p: sorted((s for s in done if s.policy == p), key=lambda s: s.run) for p in labels}
    baseline = summaries.get(BASELINE)
    rows = [summarize(summaries[p], baseline) for p in labels]
    return Comparison(
        scenario=scenario_name,
        days=days,
        runs=runs,
        seed=scenario.seed,
        tiering=tiering,
        policies=labels,
        summaries=summaries,
        rows=rows,
        elapsed_s=(datetime.now(UTC) - started).total_seconds(),
        workers=workers,
        selections=[c for c in chosen if c is not None] or None,
    )


def summarize(runs: Sequence[RunSummary], baseline: Sequence[RunSummary] | None = None) -> PolicyRow:
    """One policy's runs as a table row; ``baseline`` (uniform's runs) gives the % column."""
    if not runs:
        raise ValueError("summarize: expected at least one run")
    regret = np.array([s.regret_clicks for s in runs])
    se = float(regret.std(ddof=1) / math.sqrt(len(regret))) if len(regret) > 1 else 0.0
    pct = first_pct = None
    first = float(np.mean([s.first_day_regret for s in runs]))
    if baseline:
        base = float(np.mean([s.regret_clicks for s in baseline]))
        pct = 100.0 * float(regret.mean()) / base if base > 0 else None
        first_pct = 100.0 * first / base if base > 0 else None
    confident = [c for s in runs for c in s.confident]
    delays = [d for s in runs for d in s.detection_delays]
    experiments = sum(s.experiments for s in runs)
    winners = sum(s.winners for s in runs)
    ended = {k: sum((s.endings or {}).get(k, 0) for s in runs) for k in ("confident", "best_so_far", "abandoned")}
    decided = ended["confident"] + ended["best_so_far"]
    simple = [x for s in runs for x in (s.simple_regret or [])]
    spend = float(sum(s.test_spend for s in runs))
    net = float(sum(s.clicks_recovered - s.regret_clicks for s in runs))
    wctr = np.array([s.winner_ctr for s in runs if s.winner_ctr is not None])
    lifts = [x for s in runs for x in (s.winner_vs_parent or [])]
    scored = sum(s.traits_scored for s in runs)
    scaled = sum(s.scaled_winners for s in runs)
    at_root = np.array([s.regret_at_root for s in runs])
    return PolicyRow(
        policy=runs[0].policy,
        runs=len(runs),
        regret_mean=float(regret.mean()),
        regret_se=se,
        regret_pct_of_uniform=pct,
        wasted_impressions=float(np.mean([s.wasted_impressions for s in runs])),
        test_impressions=float(np.mean([s.test_impressions for s in runs])),
        imps_to_confident_mean=float(np.mean([c[0] for c in confident])) if confident else None,
        imps_to_confident_median=float(np.median([c[0] for c in confident])) if confident else None,
        confident_experiments=len(confident),
        experiments=experiments,
        confident_truly_best=float(np.mean([c[1] for c in confident])) if confident else None,
        winners_truly_best=sum(s.winners_truly_best for s in runs) / winners if winners else None,
        delay_mean=float(np.mean(delays)) if delays else None,
        delay_median=float(np.median(delays)) if delays else None,
        detections=len(delays),
        missed_detections=sum(s.missed_detections for s in runs),
        false_alarms_per_run=float(np.mean([s.false_alarms for s in runs])),
        test_spend=float(np.mean([s.test_spend for s in runs])),
        credit_spend=float(np.mean([s.credit_spend for s in runs])),
        clicks=float(np.mean([s.clicks for s in runs])),
        confident_decisions=ended["confident"],
        best_so_far_decisions=ended["best_so_far"],
        abandoned=ended["abandoned"],
        confident_share=ended["confident"] / decided if decided else None,
        spend_per_decided_winner=spend / ended["confident"] if ended["confident"] else None,
        simple_regret_pct=100.0 * float(np.mean(simple)) if simple else None,
        net_clicks_per_spend=net / spend if spend > 0 else None,
        regret_share=float(regret.sum()) / best if (best := sum(s.best_arm_clicks for s in runs)) > 0 else None,
        regret_at_root_mean=float(at_root.mean()),
        regret_at_root_se=float(at_root.std(ddof=1) / math.sqrt(at_root.size)) if at_root.size > 1 else None,
        winner_ctr=float(wctr.mean()) if wctr.size else None,
        winner_ctr_se=float(wctr.std(ddof=1) / math.sqrt(wctr.size)) if wctr.size > 1 else None,
        winner_lift=float(np.mean(lifts)) if lifts else None,
        trait_coverage=sum(s.traits_covered for s in runs) / scored if scored else None,
        runs_with_reliable_trait=sum(1 for s in runs if s.traits_reliable > 0),
        cost_per_winning_asset=float(sum(s.cost for s in runs)) / scaled if scaled else None,
        scaled_winners=scaled,
        first_day_regret_mean=first,
        first_day_pct_of_uniform=first_pct,
    )
