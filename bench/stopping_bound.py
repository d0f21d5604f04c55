"""How low can a test's regret go when the test stops once it is confident?  (issue 11)

    python bench/stopping_bound.py [--tests 400] [--seed 7]

Runs one A/B(/C) test at a time through the loop's own policy objects, built
from the default config exactly as the loop builds them
(``loop.experiments.loop_policy``: floor, burn-in in expected clicks,
elimination, P(best) >= 0.95 with a minimum of impressions per arm, the
expected-loss stop).  Each simulated day the loop's order is kept:
eliminate, decide, allocate, then deliver the day's impressions by the split
(clicks binomial).  A test ends on a decision or when its impressions reach
the cap (best arm so far).  Regret = Σ impressions x (best CTR - arm CTR).

Besides uniform, thompson, epsilon_greedy and ucb1 it runs a yardstick that
knows which arm is best, the ``oracle split``: from day 1 on, a fixed share
``f`` of the day on the other arms and the rest on the best one, with the same
stopping rules; ``f`` is the best of a grid *in hindsight* for each
configuration among the shares whose tests end on a confident decision at
least 70 % of the time (the issue's other target: a split that starves the
other arms ends every test at the cap, with little regret and no confident
winner).  It is a yardstick, not a bound: an adaptive policy can beat a fixed split
(by dropping a far-off arm early), but no policy knows the best arm.

Prints, per configuration, each policy's mean regret (± s.e.), its share of
uniform's and the share of its tests that ended confident; never judges the
numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.config import load_config  # noqa: E402
from loop.experiments import loop_policy  # noqa: E402

# The bundled example's first campaign: 50.00 a day at CPM 8 buys about 6,000 test impressions a day;
# its cap (500) about 62,000.  Base CTR 1.2 %.
DAILY = 6000
CAP = 62000
BASE = 0.012
CONFIGS = [  # relative CTR gaps of the other arms to the best one
    (0.10,),
    (0.20,),
    (0.30,),
    (0.20, 0.40),
    (0.10, 0.30),
]
ORACLE_SHARES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def run_test(
    policy, rates: np.ndarray, rng: np.random.Generator, oracle_share: float | None = None
) -> tuple[float, bool]:  # type: ignore[no-untyped-def]
    """One test: its regret in clicks and whether it ended on a confident decision (not the cap)."""
    k = len(rates)
    clicks, imps = np.zeros(k), np.zeros(k)
    active = np.ones(k, dtype=bool)
    regret, best = 0.0, rates.max()
    day = 0
    while True:
        if day > 0:
            out = policy.eliminate(clicks, imps, rng, active=active)
            active &= ~out
            exhausted = imps.sum() + DAILY > CAP
            decision = policy.decide(clicks, imps, rng, active=active, budget_exhausted=exhausted)
            if decision.winner is not None:
                return regret, not decision.budget_exhausted
        if day == 0 or oracle_share is None:
            weights = policy.allocate(clicks, imps, rng, active=active)
        else:
            others = active & (rates < best)
            weights = np.where(rates == best, 1.0 - oracle_share, 0.0)
            weights[others] = oracle_share / max(1, others.sum())
            weights /= weights.sum()
        n = np.floor(DAILY * weights)
        c = rng.binomial(n.astype(np.int64), rates)
        clicks += c
        imps += n
        regret += float((n * (best - rates)).sum())
        day += 1


def summarise(results: list[tuple[float, bool]]) -> tuple[float, float, float]:
    """Mean regret, its standard error, and the share of tests that ended on a confident decision."""
    r = np.array([x for x, _ in results])
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r))), float(np.mean([ok for _, ok in results]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    settings = load_config(None).campaign_settings("example")
    names = ["uniform", "thompson", "epsilon_greedy", "ucb1"]
    print(f"{args.tests} tests per row; {DAILY:,} test impressions a day, cap {CAP:,}; base CTR {BASE:.1%}")
    print("| other arms' gaps | " + " | ".join(names) + " | oracle split (best f) |")
    print("| --- |" + " ---: |" * (len(names) + 1))
    for gaps in CONFIGS:
        rates = np.array([BASE, *(BASE * (1 - g) for g in gaps)])
        means: dict[str, tuple[float, float, float]] = {}
        for name in names:
            policy = loop_policy(name, settings)
            rng = np.random.default_rng(args.seed)  # common random numbers across policies
            means[name] = summarise([run_test(policy, rates, rng) for _ in range(args.tests)])
        policy = loop_policy("uniform", settings)  # day 0 and the stopping rules only
        oracle = []
        for share in ORACLE_SHARES:
            rng = np.random.default_rng(args.seed)
            got = summarise([run_test(policy, rates, rng, oracle_share=share) for _ in range(args.tests)])
            if got[2] >= 0.7:
                oracle.append((*got, share))
        o_mean, o_se, o_conf, o_share = min(oracle) if oracle else (float("nan"),) * 4
        u = means["uniform"][0]
        cells = [f"{m:,.1f} ± {se:,.1f} ({m / u:.0%}; {c:.0%})" for m, se, c in means.values()]
        label = ", ".join(f"{g:.0%}" for g in gaps)
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {o_mean:,.1f} ± {o_se:,.1f} ({o_mean / u:.0%}; {o_conf:.0%}; f={o_share}) |"
        )


if __name__ == "__main__":
    main()
