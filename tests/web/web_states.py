"""A hand-made database with one creative and one experiment in every state the dashboard names.

Written row by row (not by the loop), so each state is there on purpose, on
SQLite and PostgreSQL alike, and every label can be made hostile.  The
campaign is the bundled example's "lead-gen", so the config's plans (caps,
daily test budget, P(best) target) apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from storage.db import session as open_session
from storage.models import (
    Arm,
    AuditEvent,
    BanditDecision,
    Campaign,
    Creative,
    DailyMetric,
    Experiment,
    LedgerEntry,
    TickRun,
)

CAMPAIGN = "lead-gen"
START = date(2026, 3, 2)  # platform day 0 (a Monday)
DAYS = 40
T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)  # the wall clock: nothing like the platform's calendar
TARGET = 0.95

HOSTILE = [
    "Win $$ now",
    "Save $5 on $20+",
    "_x",
    "back\\slash \\n \\$ \\\\",
    "<script>alert('x')</script>",
    "שלום עולם مرحبا بالعالم",
    "🔥 Sale 😀 漢字",
    "Ω" * 10 + " " + "名" * 5 + " " + "n" * 385,  # 400 characters
]


def day(i: int) -> date:
    return START + timedelta(days=i)


def moment(i: int, minute: int = 5) -> datetime:
    """A wall-clock time inside the tick of platform day ``i``."""
    return T0 + timedelta(hours=i, minutes=minute)


@dataclass
class States:
    """Ids of what :func:`seed` wrote, by the state each one is in."""

    creatives: dict[str, str] = field(default_factory=dict)  # state -> creative id
    experiments: dict[str, str] = field(default_factory=dict)  # state -> experiment id
    labels: dict[str, str] = field(default_factory=dict)  # creative id -> label
    weak: str = ""  # experiment awaiting approval on weak evidence
    strong: str = ""  # experiment awaiting approval on strong evidence


def seed(engine: Engine, *, hostile: bool = False) -> States:
    """Fill ``engine`` (migrated, empty) with every state; labels from HOSTILE when ``hostile``."""
    limit = 10_000 if engine.dialect.name == "sqlite" else 40  # PostgreSQL enforces label's VARCHAR(40)
    st = States()
    rows: list[object] = []
    counter = iter(range(10_000))

    def label(plain: str) -> str:
        return HOSTILE[next(counter) % len(HOSTILE)][:limit] if hostile else plain

    def creative(key: str, cid: str, plain: str, **kw: object) -> Creative:
        c = Creative(
            id=cid, campaign_id=CAMPAIGN, label=label(plain),
            headline=HOSTILE[-1] if hostile else "Fresh deals", **kw,
        )  # type: ignore[arg-type]  # fmt: skip
        st.labels[c.id] = c.label or c.id
        if key:
            st.creatives[key] = c.id
        rows.append(c)
        return c

    def metrics(cid: str, first: int, clicks: list[int], imps: int = 5000) -> None:
        for k, c in enumerate(clicks):
            rows.append(
                DailyMetric(creative_id=cid, day=day(first + k), impressions=imps, clicks=c, spend_minor=imps * 8 // 10)
            )

    def event(name: str, exp: str | None, i: int, actor: str = "loop", **data: object) -> None:
        rows.append(
            AuditEvent(name=name, campaign_id=CAMPAIGN, experiment_id=exp, actor=actor, at=moment(i), data=data)
        )

    rows.append(
        Campaign(
            id=CAMPAIGN, currency="USD", test_spend_cap_minor=40_000, credit_cap_minor=5_000,
            halted_reason=None, created_at=T0,
        )
    )  # fmt: skip
    for i in range(DAYS):
        rows.append(TickRun(started_at=T0 + timedelta(hours=i), finished_at=T0 + timedelta(hours=i, minutes=30),
                            day=day(i), ok=True))  # fmt: skip
    # 1. live creatives the loop has not acted on: healthy, fatigued (no experiment yet), paused
    steady = creative(
        "healthy", f"{CAMPAIGN}:steady", "steady", role="live", platform_ad_id="ad-steady", status="active"
    )
    metrics(steady.id, 0, [100] * DAYS)
    sliding = creative(
        "fatigued", f"{CAMPAIGN}:sliding", "sliding", role="live", platform_ad_id="ad-sliding", status="active"
    )
    metrics(sliding.id, 0, [150] * 20 + [150 - 5 * k for k in range(20)])
    retired = creative(
        "paused", f"{CAMPAIGN}:retired", "retired", role="live", platform_ad_id="ad-retired", status="paused"
    )
    metrics(retired.id, 0, [100] * 10)

    # 2. one experiment per state, each replacing its own live parent
    def experiment(state: str, detected: int, key: str = "", **kw: object) -> Experiment:
        name = key or state
        parent = creative(
            f"replacing:{name}" if state not in ("scaled", "abandoned") else f"parent:{name}",
            f"{CAMPAIGN}:parent-{name.replace(':', '-')}", f"parent-{name.replace(':', '-')}", role="live", platform_ad_id=f"ad-{state}",
            status="paused" if state == "scaled" else "active",
        )  # fmt: skip
        metrics(parent.id, 0, [150] * 20 + [100] * (detected - 20))
        exp = Experiment(
            id=f"{parent.id}:{day(detected).isoformat()}", campaign_id=CAMPAIGN, parent_creative_id=parent.id,
            state=state, seed=1000 + detected, detected_on=day(detected), created_at=moment(detected),
            updated_at=moment(detected), verdict={"day": day(detected - 1).isoformat(), "baseline_ctr": 0.03,
            "current_ctr": 0.02, "statistic": 9.1, "threshold": 6.0, "signal": "ctr",
            "reason": f"CTR fell from 3.00% to 2.00% on {parent.label}"}, **kw,
        )  # type: ignore[arg-type]  # fmt: skip
        rows.append(exp)
        st.experiments[key or state] = exp.id
        event("FatigueDetected", exp.id, detected, creative=parent.id, **exp.verdict)
        return exp

    def arms(exp: Experiment, first: int, counts: list[tuple[int, int]], winner: int | None) -> list[Creative]:
        drafts = []
        for pos, (c, n) in enumerate(counts):
            d = creative(
                "", f"{exp.id}:v{pos + 1}", f"v{pos + 1}", role="draft", parent_id=exp.parent_creative_id, experiment_id=exp.id,
                platform_ad_id=f"ad-{exp.id[-10:]}-{pos}", status="testing", tier="fast", seed=77 + pos,
                generator="procedural", model="procedural-v1", width=512, height=512, prompt=label("a bold headline"),
                recipe={"palette": ["#2563eb"], "layout": pos, "note": label("draft")},
            )  # fmt: skip
            drafts.append(d)
            rows.append(Arm(experiment_id=exp.id, creative_id=d.id, position=pos, status="paused",
                            daily_budget_minor=400, platform_adset_id=f"set-{pos}", platform_ad_id=d.platform_ad_id))  # fmt: skip
            rows.append(DailyMetric(creative_id=d.id, day=day(first), impressions=n, clicks=c, spend_minor=n * 8 // 10))
        rows.append(
            BanditDecision(
                experiment_id=exp.id, day=day(first), seed=4242, policy="thompson",
                clicks=[0] * len(counts), impressions=[0] * len(counts), weights=[1 / len(counts)] * len(counts),
                prob_best=[1 / len(counts)] * len(counts), budgets_minor=[415] * len(counts),
                note="undecided: arm 0 has 0 < 2000 impressions; arm 2 has 0 < 2000 impressions",
            )
        )  # fmt: skip
        event("AllocationSet", exp.id, first, day=day(first).isoformat(), budgets=[415] * len(counts), seed=4242)
        if winner is not None:
            exp.winner_creative_id = drafts[winner].id
            exp.decided_on = day(first + 1)
        return drafts

    experiment("detected", 30)
    experiment("exploring", 31)
    testing = experiment("testing", 28, testing_started_on=day(29))
    arms(testing, 29, [(30, 1500), (35, 1500), (28, 1500)], None)
    decided = experiment("decided", 25, testing_started_on=day(26))
    arms(decided, 26, [(60, 3000), (95, 3000)], 1)
    rendering = experiment("rendering", 24, testing_started_on=day(25))
    arms(rendering, 25, [(60, 3000), (95, 3000)], 1)

    # 3. waiting for a person: one winner on weak evidence (212 impressions, P(best) low), one on strong
    weak = experiment("awaiting_approval", 22, "awaiting:weak", testing_started_on=day(23), waiting_for="pro")
    drafts = arms(weak, 23, [(3, 212), (4, 212), (2, 212), (5, 212)], 3)
    weak.reason = "test spend cap reached: best arm so far"
    event("WinnerDeclared", weak.id, 24, winner=drafts[3].id, reason="test spend cap reached: best arm so far",
          prob_best=[0.2, 0.25, 0.15, 0.4])  # fmt: skip
    event("ApprovalRequested", weak.id, 25, stage="pro")
    st.weak = weak.id
    strong = experiment("awaiting_approval", 21, "awaiting:strong", testing_started_on=day(22), waiting_for="pro")
    drafts = arms(strong, 22, [(100, 10_000), (500, 10_000)], 1)
    strong.reason = "prob_best: arm 1 has P(best)=1.0000 >= 0.95"
    event("WinnerDeclared", strong.id, 23, winner=drafts[1].id, reason=strong.reason, prob_best=[0.0, 1.0])
    event("ApprovalRequested", strong.id, 24, stage="pro")
    st.strong = strong.id

    # 4. ended: replaced by a scaled creative; and abandoned (the parent stays live and fatigued)
    scaled = experiment("scaled", 10, testing_started_on=day(11))
    drafts = arms(scaled, 11, [(40, 2000), (80, 2000)], 1)
    live = creative(
        "replacement", f"{CAMPAIGN}:scaled-live", "v2-pro-live", role="pro", platform_ad_id="ad-scaled-live", status="active",
        experiment_id=scaled.id, parent_id=drafts[1].id, tier="pro", seed=78,
    )  # fmt: skip
    metrics(live.id, 14, [100] * (DAYS - 14))
    scaled.pro_creative_id = scaled.scaled_creative_id = live.id
    event("WinnerScaled", scaled.id, 14, creative=live.id, ad_id="ad-scaled-live", replaced=scaled.parent_creative_id)
    abandoned = experiment("abandoned", 15, reason="test spend cap: no budget left to test variants")
    event("CapReached", abandoned.id, 15, account="test", left=180)
    event("ExperimentAbandoned", abandoned.id, 15, reason=abandoned.reason)
    # a person's approval long ago: recorded outside any tick
    event(
        "Approved",
        scaled.id,
        -50,
        actor="web:" + (HOSTILE[4] if hostile else "maria"),
        stage="pro",
        note=label("on brand"),
    )

    # 5. money: 370.00 of the 400.00 test cap spent (an open reservation too), a little credit
    for k, (kind, amount) in enumerate([("reserve", 37_000), ("release", 37_000), ("actual", 36_950)]):
        rows.append(LedgerEntry(campaign_id=CAMPAIGN, account="test", kind=kind, key="test:seeded:0", amount_minor=amount,
                                created_at=moment(12, 10 + k)))  # fmt: skip
    rows.append(LedgerEntry(campaign_id=CAMPAIGN, account="test", kind="reserve", key="test:seeded:1",
                            amount_minor=2_850, created_at=moment(29, 12)))  # fmt: skip
    for k, (kind, amount) in enumerate([("reserve", 60), ("release", 60), ("actual", 60)]):
        rows.append(LedgerEntry(campaign_id=CAMPAIGN, account="credit", kind=kind, key="credit:seeded:pro",
                                amount_minor=amount, tier="pro", created_at=moment(13, 10 + k)))  # fmt: skip
    with open_session(engine) as s:
        # Parents before children: the foreign keys are checked row by row.
        order = (Campaign, TickRun, Creative, Experiment, Arm, DailyMetric, BanditDecision, AuditEvent, LedgerEntry)
        for kind in order:
            batch = [r for r in rows if isinstance(r, kind)]
            if kind is Creative:
                batch.sort(key=lambda c: (c.parent_id is not None, c.role == "pro"))  # type: ignore[attr-defined]
            s.add_all(batch)
            s.flush()
        s.commit()
    return st


def write_site_config(folder: Path) -> Path:
    """A config whose plans know "lead-gen" (the bundled scenario), its data folder in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "creative-loop.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///{folder / "unused.db"}"\ndata_dir = "{folder / "data"}"\napproval = "pro"\n'
    )
    return path
