"""Meta connector figures: insights ingest throughput and Graph API calls per tick.

    .venv/bin/python bench/meta_ingest.py [--ads 2000] [--days 90] [--campaigns 100] [--pg URL | --no-pg]

1. Ingest: 90 days x 2,000 ads of daily insights served by the fake Graph API
   server (tests/meta/fake_graph.py) on loopback, read by ``MetaAdPlatform``
   through the real SDK (an async report run, then 500-row pages), and upserted
   by ``loop.tick.ingest`` into SQLite and PostgreSQL (a throwaway schema,
   dropped afterwards).  Prints rows/s for the read, the first ingest (inserts)
   and a re-ingest (late attribution: every row compared, none changed).
2. API calls per tick: 100 campaigns ticked by ``loop.tick.tick`` against the
   fake server in steady state (no experiment), plus the calls each mutation
   costs, counted by the connector's transport.

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
from connectors.retry import NO_WAIT  # noqa: E402
from loop.config import CampaignSettings  # noqa: E402
from loop.plans import CampaignPlan  # noqa: E402
from loop.tick import Runtime, ingest, tick  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.db import session as open_session  # noqa: E402
from storage.images import ImageStore  # noqa: E402
from storage.models import Campaign, Creative  # noqa: E402

START = date(2026, 1, 1)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def connect(graph: FakeGraph, campaigns: dict[str, MetaCampaign], **options: object) -> MetaAdPlatform:
    return MetaAdPlatform.connect(
        access_token=TOKEN, app_secret=APP_SECRET, app_id="app", graph_url=graph.base_url, timeout=120,
        trust_env=False, campaigns=campaigns, options=MetaOptions(page_id="5550001", poll_interval=0.05, **options),  # type: ignore[arg-type]
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
            arms.append(
                cost(
                    "LaunchTestArm (first arm)" if v == 0 else "LaunchTestArm (each further arm)",
                    lambda m=m: platform.apply(m),
                )
            )
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
            "find() after a crash (LaunchTestArm)",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL base URL (a throwaway schema is used)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    rows = bench_ingest(args.ads, args.days, None if args.no_pg else args.pg)
    rows += bench_calls(args.campaigns)
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    print(
        f"Meta connector ({args.ads:,} ads x {args.days} days; {args.campaigns} campaigns), fake Graph API on loopback"
    )
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:<{mid}}  {c}")


if __name__ == "__main__":
    main()
