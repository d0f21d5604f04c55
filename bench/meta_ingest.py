"""Meta connector figures: insights ingest, Graph API calls per tick and per arm, ticks under faults.

    .venv/bin/python bench/meta_ingest.py [--ads 2000] [--days 90] [--campaigns 100] [--pg URL | --no-pg]
                                          [--fault-ticks 5] [--skip-ingest]

1. Ingest: 90 days x 2,000 ads of daily insights served by the fake Graph API
   server (tests/meta/fake_graph.py) on loopback, read by ``MetaAdPlatform``
   through the real SDK (an async report run, then 500-row pages), and upserted
   by ``loop.tick.ingest`` into SQLite and PostgreSQL (a throwaway schema,
   dropped afterwards).  Prints rows/s for the read, the first ingest (inserts)
   and a re-ingest (late attribution: every row compared, none changed).
2. API calls per tick: 100 campaigns ticked by ``loop.tick.tick`` against the
   fake server in steady state (no experiment), plus the calls each mutation
   costs, counted by the connector's transport.
3. Faults: ticks per minute for 100 campaigns with 0 % and 10 % of calls
   failing (throttled, 500, HTML 502, slow, and writes carried out whose
   answer is lost), and API calls per launched arm: 25 campaigns launch 4
   arms each and set their budgets through ``Runtime.perform`` (intent,
   retry, settle), as the loop does.  Waits are scaled down so that the
   figure is the connector's own cost (usage-gate pause 0.5 s instead of
   60 s, retry backoff 0.05 s doubling to 1 s, settle window 1 s from
   0.25 s): with Meta's real pauses a throttled tick simply takes longer.

Figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "meta")]

from fake_graph import APP_SECRET, TOKEN, FakeGraph, png_bytes, seed_account  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlmodel import select  # noqa: E402

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets  # noqa: E402
from connectors.images.procedural import ProceduralGenerator  # noqa: E402
from connectors.meta import MetaAdPlatform, MetaCampaign, MetaOptions  # noqa: E402
from connectors.meta.usage import GateSettings, UsageGate  # noqa: E402
from connectors.retry import NO_WAIT, RetrySettings  # noqa: E402
from loop.config import CampaignSettings  # noqa: E402
from loop.plans import CampaignPlan  # noqa: E402
from loop.runtime import Runtime  # noqa: E402
from loop.tick import ingest, tick  # noqa: E402
from policies.errors import ConnectorError  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.db import session as open_session  # noqa: E402
from storage.images import ImageStore  # noqa: E402
from storage.models import Campaign, Creative  # noqa: E402

START = date(2026, 1, 1)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def connect(
    graph: FakeGraph, campaigns: dict[str, MetaCampaign], gate: UsageGate | None = None, **options: object
) -> MetaAdPlatform:
    return MetaAdPlatform.connect(
        access_token=TOKEN, app_secret=APP_SECRET, app_id="app", graph_url=graph.base_url, timeout=120,
        trust_env=False, campaigns=campaigns, options=MetaOptions(page_id="5550001", poll_interval=0.05, **options),  # type: ignore[arg-type]
        gate=gate,
    )  # fmt: skip


def build_ingest_account(ads: int, days: int) -> tuple[FakeGraph, MetaCampaign, list[str]]:
    graph = FakeGraph().start()
    ids = seed_account(graph, ads=0)
    ad_ids = []
    for i in range(ads):
        ad = graph.add("ad", name=f"ad-{i}", account=graph.account, campaign_id=ids["main"], adset_id=ids["adset"],
                       creative_id="", status="ACTIVE")  # fmt: skip
        ad_ids.append(ad["id"])
    for d in range(days):
        day = (START + timedelta(days=d)).isoformat()
        for i, ad_id in enumerate(ad_ids):
            imps = 1000 + (i * 37 + d * 11) % 5000
            graph.rows[(ad_id, day)] = {"impressions": imps, "clicks": imps // 60, "spend_minor": imps * 8 // 10,
                                        "reach": imps * 4 // 5, "frequency": 1.25, "conversions": imps // 600}  # fmt: skip
    graph._row_writes += 1
    return graph, MetaCampaign("bench", graph.account, ids["main"], ids["test"]), ad_ids


def pg_engine_url(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}", schema


def drop_schema(base: str, schema: str) -> None:
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def bench_ingest(ads: int, days: int, pg: str | None) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    graph, camp, ad_ids = build_ingest_account(ads, days)
    platform = connect(graph, {"bench": camp})
    try:
        t0 = time.perf_counter()
        rows = platform.insights("bench", START, START + timedelta(days=days - 1))
        read_s = time.perf_counter() - t0
        calls = platform.count("meta_api_calls")
        out.append(
            (
                "read (async run + pages)",
                f"{len(rows):,} rows in {read_s:.1f} s",
                f"{len(rows) / read_s:,.0f} rows/s, {calls:.0f} API calls",
            )
        )
    finally:
        platform.close()
        graph.stop()
    targets: list[tuple[str, str, str | None]] = []
    tmp = tempfile.mkdtemp(prefix="meta-bench-")
    targets.append(("SQLite", f"sqlite:///{tmp}/bench.db", None))
    if pg:
        url, schema = pg_engine_url(pg)
        targets.append(("PostgreSQL", url, schema))
    for name, url, schema in targets:
        engine = make_engine(url)
        try:
            migrate(engine)
            with open_session(engine) as s:
                s.add(Campaign(id="bench"))
                s.add_all(Creative(id=f"bench:{a}", campaign_id="bench", role="live", platform_ad_id=a) for a in ad_ids)
                s.commit()
            for label in ("first ingest (inserts)", "re-ingest (unchanged)"):
                t0 = time.perf_counter()
                with open_session(engine) as s:
                    ingest(s, "bench", rows)
                    s.commit()
                secs = time.perf_counter() - t0
                out.append(
                    (f"{name}: {label}", f"{len(rows):,} rows in {secs:.1f} s", f"{len(rows) / secs:,.0f} rows/s")
                )
            with open_session(engine) as s:
                assert len(s.exec(select(Creative)).all()) == len(ad_ids)
        finally:
            engine.dispose()
            if schema and pg:
                drop_schema(pg, schema)
    return out


def bench_calls(n_campaigns: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    graph = FakeGraph().start()
    campaigns: dict[str, MetaCampaign] = {}
    plans = []
    for i in range(n_campaigns):
        ids = seed_account(graph, ads=3, image=png_bytes(1, (32, 32)))
        cid = f"c{i:03d}"
        campaigns[cid] = MetaCampaign(cid, graph.account, ids["main"], ids["test"])
        plans.append(CampaignPlan(id=cid, currency="USD", test_spend_cap=30000, credit_cap=5000, test_daily_budget=2000,
                                  fast_credit_cost=2, pro_credit_cost=60, settings=CampaignSettings(id=cid)))  # fmt: skip
        campaigns[cid] = MetaCampaign(cid, graph.account, ids["main"], ids["test"])
    for d in range(10):
        graph.deliver(START + timedelta(days=d))
    platform = connect(graph, campaigns)
    tmp = Path(tempfile.mkdtemp(prefix="meta-bench-"))
    engine = make_engine(f"sqlite:///{tmp}/calls.db")
    migrate(engine)
    rt = Runtime(engine=engine, platform=platform, generators={"procedural": ProceduralGenerator()},
                 images=ImageStore(tmp / "images"), plans=plans, approval="none", retry=NO_WAIT)  # fmt: skip
    try:
        for label, day in (("first tick (reads each account once)", 10), ("steady-state tick", 11)):
            before = platform.count("meta_api_calls")
            t0 = time.perf_counter()
            tick(rt, START + timedelta(days=day))
            secs = time.perf_counter() - t0
            calls = platform.count("meta_api_calls") - before
            out.append((f"{n_campaigns} campaigns, {label}", f"{calls:.0f} API calls in {secs:.1f} s",
                        f"{calls / n_campaigns:.2f} calls/campaign"))  # fmt: skip
        # What each mutation costs on top (one campaign, six arms).
        camp = campaigns["c000"]
        parent = graph.of_type("ad", campaign_id=camp.campaign_id)[0]["id"]
        costs: list[tuple[str, float, float]] = []

        def cost(label: str, fn) -> dict:  # type: ignore[no-untyped-def]
            b0, i0 = platform.count("meta_api_calls"), platform.count("meta_batch_items")
            r = fn()
            costs.append((label, platform.count("meta_api_calls") - b0, platform.count("meta_batch_items") - i0))
            return r  # type: ignore[no-any-return]

        arms = []
        for v in range(6):
            m = LaunchTestArm(key=f"cl:bench:v{v}", campaign="c000", parent_ad_id=parent, image=png_bytes(v, (32, 32)))
            platform.remember(m.key, {}, fresh=True)  # as Runtime.perform does for a new intent
            arms.append(
                cost(
                    "LaunchTestArm, new intent (first arm)" if v == 0 else "LaunchTestArm, new intent (further arm)",
                    lambda m=m: platform.apply(m),
                )
            )
        # The same with no record to start from (a crash between intent and result): name lookups first.
        cold = connect(graph, campaigns)
        for v in range(6, 8):
            m = LaunchTestArm(key=f"cl:bench:v{v}", campaign="c000", parent_ad_id=parent, image=png_bytes(v, (32, 32)))
            c0 = cold.count("meta_api_calls")
            cold.apply(m)
            costs.append(("LaunchTestArm, no record (first arm)" if v == 6 else "LaunchTestArm, no record (further arm)",
                          cold.count("meta_api_calls") - c0, 0.0))  # fmt: skip
        c0 = cold.count("meta_api_calls")
        cold.find(LaunchTestArm(key="cl:bench:v0", campaign="c000"))
        costs.append(("find() after a crash, no record (LaunchTestArm)", cold.count("meta_api_calls") - c0, 0.0))
        cold.close()
        budgets = tuple((a["adset_id"], 300) for a in arms)
        cost(
            "SetBudgets, 6 arms (activates their ads)",
            lambda: platform.apply(SetBudgets(key="b1", campaign="c000", budgets=budgets)),
        )
        cost(
            "SetBudgets, 6 arms (next day)",
            lambda: platform.apply(SetBudgets(key="b2", campaign="c000", budgets=budgets)),
        )
        cost("PauseAds, 6 arms", lambda: platform.apply(PauseAds(key="p", campaign="c000", ad_ids=tuple(a["ad_id"] for a in arms),
                                                                  adset_ids=tuple(a["adset_id"] for a in arms))))  # fmt: skip
        cost("ScaleWinner", lambda: platform.apply(ScaleWinner(key="cl:bench:scale", campaign="c000", parent_ad_id=parent,
                                                                image=png_bytes(9, (32, 32)))))  # fmt: skip
        cost(
            "find() after a crash, ids on the record (LaunchTestArm)",
            lambda: platform.find(LaunchTestArm(key="cl:bench:v0", campaign="c000")),
        )
        seen: set[str] = set()
        for label, calls, items in costs:
            if label in seen:
                continue
            seen.add(label)
            out.append((f"mutation: {label}", f"{calls:.0f} API calls", f"{items:.0f} batch items" if items else ""))
    finally:
        platform.close()
        engine.dispose()
        graph.stop()
    return out


FAST_WAITS = RetrySettings(attempts=8, backoff=0.05, max_backoff=1.0, jitter=0.0, deadline=120.0)


def bench_faults(n_campaigns: int, ticks: int, launch_campaigns: int) -> list[tuple[str, str, str]]:
    """Steady ticks per minute at 0 % and 10 % faults; API calls per launched arm (10 % faults)."""
    out: list[tuple[str, str, str]] = []
    for rate in (0.0, 0.1):
        graph = FakeGraph(seed=3).start()
        campaigns: dict[str, MetaCampaign] = {}
        plans = []
        for i in range(n_campaigns):
            ids = seed_account(graph, ads=3, image=png_bytes(1, (32, 32)))
            cid = f"c{i:03d}"
            campaigns[cid] = MetaCampaign(cid, graph.account, ids["main"], ids["test"])
            plans.append(CampaignPlan(id=cid, currency="USD", test_spend_cap=300000, credit_cap=5000,
                                      test_daily_budget=2000, fast_credit_cost=2, pro_credit_cost=60,
                                      settings=CampaignSettings(id=cid)))  # fmt: skip
        for d in range(10):
            graph.deliver(START + timedelta(days=d))
        gate = UsageGate(GateSettings(pause=0.5, max_inline_wait=5.0))
        platform = connect(graph, campaigns, gate=gate, settle_timeout=1.0, settle_backoff=0.25)
        tmp = Path(tempfile.mkdtemp(prefix="meta-bench-"))
        engine = make_engine(f"sqlite:///{tmp}/faults.db")
        migrate(engine)
        rt = Runtime(engine=engine, platform=platform, generators={"procedural": ProceduralGenerator()},
                     images=ImageStore(tmp / "images"), plans=plans, approval="none", retry=FAST_WAITS)  # fmt: skip
        try:
            tick(rt, START + timedelta(days=10))  # the first tick reads each account once
            graph.fault_rate = rate
            secs, calls, errors = [], 0.0, 0
            for day in range(11, 11 + ticks):
                graph.deliver(START + timedelta(days=day - 1))
                c0, t0 = platform.count("meta_api_calls"), time.perf_counter()
                report = tick(rt, START + timedelta(days=day))
                secs.append(time.perf_counter() - t0)
                calls += platform.count("meta_api_calls") - c0
                errors += len(report.errors)
            mean = sum(secs) / len(secs)
            out.append((f"{n_campaigns} campaigns, steady tick, {rate:.0%} faults",
                        f"{mean:.1f} s per tick ({min(secs):.1f}-{max(secs):.1f})",
                        f"{60 / mean:.1f} ticks/min, {calls / ticks / n_campaigns:.2f} calls/campaign, "
                        f"{errors} campaign errors in {ticks} ticks"))  # fmt: skip
            if rate:
                out += launch_costs(graph, platform, rt, dict(list(campaigns.items())[:launch_campaigns]))
        finally:
            platform.close()
            engine.dispose()
            graph.stop()
    return out


def launch_costs(graph: FakeGraph, platform: MetaAdPlatform, rt: Runtime, campaigns: dict[str, MetaCampaign]) -> list[tuple[str, str, str]]:  # fmt: skip
    """Every campaign launches 4 arms, then sets their budgets, through Runtime.perform (10 % faults)."""
    from collections import Counter as Tally

    arms: dict[str, list[dict]] = {}
    jobs = [(cid, v) for cid in campaigns for v in range(4)]
    c0, t0, retries = platform.count("meta_api_calls"), time.perf_counter(), 0
    with open_session(rt.engine) as s:
        for cid, v in jobs:
            parent = graph.of_type("ad", campaign_id=campaigns[cid].campaign_id)[0]["id"]
            m = LaunchTestArm(key=f"cl:{cid}:bench:v{v}", campaign=cid, parent_ad_id=parent,
                              image=png_bytes(100 + v, (32, 32)))  # fmt: skip
            while True:  # a mutation whose retries ran out is taken up again, as by the next tick
                try:
                    arms.setdefault(cid, []).append(rt.perform(s, m))
                    break
                except ConnectorError:
                    retries += 1
    launch_calls, launch_s = platform.count("meta_api_calls") - c0, time.perf_counter() - t0
    c0 = platform.count("meta_api_calls")
    with open_session(rt.engine) as s:
        for cid, made in arms.items():
            m = SetBudgets(key=f"cl:{cid}:bench:budgets", campaign=cid,
                           budgets=tuple((a["adset_id"], 500) for a in made), end_day=START + timedelta(days=20))  # fmt: skip
            while True:
                try:
                    rt.perform(s, m)
                    break
                except ConnectorError:
                    retries += 1
    budget_calls = platform.count("meta_api_calls") - c0
    names = Tally((t, o["name"]) for t in ("ad", "adset", "creative") for o in graph.of_type(t)
                  if o["name"].startswith("cl:") and o.get("status") not in ("ARCHIVED", "DELETED"))  # fmt: skip
    dups = sum(n - 1 for n in names.values())
    n = len(jobs)
    return [
        (f"LaunchTestArm x {n}, 10% faults", f"{launch_calls:.0f} API calls in {launch_s:.1f} s",
         f"{launch_calls / n:.2f} calls per launched arm (fault-free: 4 + first-arm reads)"),
        (f"SetBudgets x {len(arms)} (4 arms each), 10% faults", f"{budget_calls:.0f} API calls",
         f"{budget_calls / len(arms):.2f} calls per SetBudgets; {budget_calls / n:.2f} per arm"),
        ("  settle, duplicates", f"{platform.count('meta_duplicates_archived'):.0f} archived",
         f"{dups} duplicates alive; {retries} mutations taken up again after their retries ran out"),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL base URL (a throwaway schema is used)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--fault-ticks", type=int, default=5, help="ticks measured at each fault rate")
    ap.add_argument("--launch-campaigns", type=int, default=25, help="campaigns that launch 4 arms under faults")
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()
    rows = [] if args.skip_ingest else bench_ingest(args.ads, args.days, None if args.no_pg else args.pg)
    rows += bench_calls(args.campaigns)
    rows += bench_faults(args.campaigns, args.fault_ticks, args.launch_campaigns)
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    print(
        f"Meta connector ({args.ads:,} ads x {args.days} days; {args.campaigns} campaigns), fake Graph API on loopback"
    )
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:<{mid}}  {c}")


if __name__ == "__main__":
    main()
