"""Google Ads connector figures: SearchStream ingest throughput and API calls per arm and per tick.

    .venv/bin/python bench/google_ads_ingest.py [--ads 2000] [--days 90] [--campaigns 100] [--pg URL | --no-pg] [--meta]

1. Ingest: 90 days x 2,000 ads of daily ``ad_group_ad`` metrics served by the
   fake Google Ads API (tests/google_ads/fake_ads.py, gRPC over TLS on
   loopback) running in a child process, read by ``GoogleAdsPlatform.insights``
   through the real ``google-ads`` client (GAQL over ``SearchStream``, 10,000
   rows per response message), then upserted by ``loop.tick.ingest`` into
   SQLite and PostgreSQL (a throwaway schema, dropped afterwards).  Prints
   rows/s for the read (wall, and the client process's own CPU, the fake's
   row building being in the other process), the first ingest (inserts) and a
   re-ingest (late attribution: every row compared, none changed).
2. API calls: 100 campaigns ticked by ``loop.tick.tick`` against the fake in
   steady state (no experiment), plus the calls each mutation costs, counted by
   the connector.  ``--meta`` runs the same count for the Meta connector
   (bench/meta_ingest.py) for the figures side by side.

Figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "google_ads"), str(ROOT / "bench")]

from google_tls import trusted_pair  # noqa: E402

trusted_pair()  # before the first TLS channel of this process

from fake_ads import (  # noqa: E402
    CLIENT_ID,
    CLIENT_SECRET,
    DEVELOPER_TOKEN,
    MANAGER,
    REFRESH_TOKEN,
    FakeGoogleAds,
    png_bytes,
    seed_account,
)

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets  # noqa: E402
from connectors.google_ads import GoogleAdsPlatform, GoogleCampaign, GoogleOptions  # noqa: E402
from connectors.images.procedural import ProceduralGenerator  # noqa: E402
from connectors.retry import NO_WAIT  # noqa: E402
from loop.config import CampaignSettings  # noqa: E402
from loop.plans import CampaignPlan  # noqa: E402
from loop.runtime import Runtime  # noqa: E402
from loop.tick import ingest, tick  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.db import session as open_session  # noqa: E402
from storage.images import ImageStore  # noqa: E402
from storage.models import Campaign, Creative  # noqa: E402

START = date(2026, 1, 1)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def connect(fake_endpoint: str, token_uri: str, campaigns: dict[str, GoogleCampaign], timeout: float = 600.0) -> GoogleAdsPlatform:  # fmt: skip
    return GoogleAdsPlatform.connect(
        developer_token=DEVELOPER_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN,
        login_customer_id=MANAGER, endpoint=fake_endpoint, token_uri=token_uri, trust_env=False, campaigns=campaigns,
        options=GoogleOptions(request_timeout=timeout),
    )  # fmt: skip


def serve_account(ads: int, days: int, conn: Any) -> None:
    """The child process: an account of ``ads`` ads with ``days`` of metrics, served until told to stop."""
    fake = FakeGoogleAds(workers=2).start()
    ids = seed_account(fake, ads=ads, image=png_bytes(1, (300, 300)))
    for d in range(days):
        day = (START + timedelta(days=d)).isoformat()
        for i, ad_id in enumerate(ids["ads"]):
            imps = 1000 + (i * 37 + d * 11) % 5000
            fake.metrics[(fake.ad_rn(ad_id), day)] = {
                "impressions": imps, "clicks": imps // 60, "cost_micros": imps * 8_000 + 1_234,
                "conversions": imps / 600, "all_conversions": imps / 600, "conversions_by_action": {},
            }  # fmt: skip
    conn.send((fake.endpoint, fake.token_uri, ids))
    conn.recv()  # stop
    fake.stop()


def bench_ingest(ads: int, days: int, pg: str | None) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=serve_account, args=(ads, days, child), daemon=True)
    proc.start()
    endpoint, token_uri, ids = parent.recv()
    camp = GoogleCampaign("bench", ids["customer"], ids["main"], "USD")
    platform = connect(endpoint, token_uri, {"bench": camp})
    try:
        platform.list_ads("bench")  # the token refresh and the channel's TLS handshake, outside the timing
        w0, c0, calls0 = time.perf_counter(), time.process_time(), platform.count("google_ads_api_calls")
        rows = platform.insights("bench", START, START + timedelta(days=days - 1))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        calls = platform.count("google_ads_api_calls") - calls0
        out.append(("read (SearchStream)", f"{len(rows):,} rows in {wall:.1f} s",
                    f"{len(rows) / wall:,.0f} rows/s wall; client CPU {cpu:.1f} s = {len(rows) / cpu:,.0f} rows/s; {calls:.0f} API calls"))  # fmt: skip
    finally:
        platform.close()
        parent.send("stop")
        proc.join(timeout=30)
    targets: list[tuple[str, str, str | None]] = []
    tmp = tempfile.mkdtemp(prefix="google-ads-bench-")
    targets.append(("SQLite", f"sqlite:///{tmp}/bench.db", None))
    if pg:
        from meta_ingest import pg_engine_url

        url, schema = pg_engine_url(pg)
        targets.append(("PostgreSQL", url, schema))
    ad_ids = sorted({r.ad_id for r in rows})
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
        finally:
            engine.dispose()
            if schema and pg:
                from meta_ingest import drop_schema

                drop_schema(pg, schema)
    return out


def bench_calls(n_campaigns: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    fake = FakeGoogleAds().start()
    campaigns: dict[str, GoogleCampaign] = {}
    plans = []
    accounts = {}
    for i in range(n_campaigns):
        ids = seed_account(fake, ads=3, image=png_bytes(1, (300, 300)))
        cid = f"c{i:03d}"
        accounts[cid] = ids
        campaigns[cid] = GoogleCampaign(cid, ids["customer"], ids["main"], "USD")
        plans.append(CampaignPlan(id=cid, currency="USD", test_spend_cap=30000, credit_cap=5000, test_daily_budget=2000,
                                  fast_credit_cost=2, pro_credit_cost=60,
                                  settings=CampaignSettings(id=cid, platform="google_ads", overspend=2.0)))  # fmt: skip
    for d in range(10):
        fake.deliver(START + timedelta(days=d))
    platform = connect(fake.endpoint, fake.token_uri, campaigns, timeout=60)
    tmp = Path(tempfile.mkdtemp(prefix="google-ads-bench-"))
    engine = make_engine(f"sqlite:///{tmp}/calls.db")
    migrate(engine)
    rt = Runtime(engine=engine, platform=platform, generators={"procedural": ProceduralGenerator()},
                 images=ImageStore(tmp / "images"), plans=plans, approval="none", retry=NO_WAIT)  # fmt: skip
    try:
        for label, day in (("first tick (reads each account once)", 10), ("steady-state tick", 11)):
            before = platform.count("google_ads_api_calls")
            t0 = time.perf_counter()
            tick(rt, START + timedelta(days=day))
            secs = time.perf_counter() - t0
            calls = platform.count("google_ads_api_calls") - before
            out.append((f"{n_campaigns} campaigns, {label}", f"{calls:.0f} API calls in {secs:.1f} s",
                        f"{calls / n_campaigns:.2f} calls/campaign"))  # fmt: skip
        # What each mutation costs on top (one campaign, six arms).
        parent = accounts["c000"]["ads"][0]
        costs: list[tuple[str, float, float]] = []

        def cost(label: str, fn) -> dict:  # type: ignore[no-untyped-def]
            c0, o0 = platform.count("google_ads_api_calls"), platform.count("google_ads_operations")
            r = fn()
            costs.append((label, platform.count("google_ads_api_calls") - c0, platform.count("google_ads_operations") - o0))  # fmt: skip
            return r  # type: ignore[no-any-return]

        arms = []
        for v in range(6):
            m = LaunchTestArm(key=f"cl:c000:bench:v{v}", campaign="c000", parent_ad_id=parent, image=png_bytes(v, (600, 600)))  # fmt: skip
            platform.remember(m.key, {}, fresh=True)  # as Runtime.perform does for a new intent
            label = "LaunchTestArm, new intent (first arm)" if v == 0 else "LaunchTestArm, new intent (further arm)"
            arms.append(cost(label, lambda m=m: platform.apply(m)))
        # The same with no record to start from (a crash between intent and result): a name lookup first.
        cold = connect(fake.endpoint, fake.token_uri, campaigns, timeout=60)
        cold.list_ads("c000")  # the token refresh, not counted
        for v in range(6, 8):
            m = LaunchTestArm(key=f"cl:c000:bench:v{v}", campaign="c000", parent_ad_id=parent, image=png_bytes(v, (600, 600)))  # fmt: skip
            c0, o0 = cold.count("google_ads_api_calls"), cold.count("google_ads_operations")
            cold.apply(m)
            label = "LaunchTestArm, no record (first arm)" if v == 6 else "LaunchTestArm, no record (further arm)"
            costs.append((label, cold.count("google_ads_api_calls") - c0, cold.count("google_ads_operations") - o0))
        c0 = cold.count("google_ads_api_calls")
        cold.find(LaunchTestArm(key="cl:c000:bench:v0", campaign="c000"))
        costs.append(("find() after a crash (LaunchTestArm)", cold.count("google_ads_api_calls") - c0, 0.0))
        cold.close()
        budgets = tuple((a["adset_id"], 300) for a in arms)
        cost("SetBudgets, 6 arms", lambda: platform.apply(SetBudgets(key="b1", campaign="c000", budgets=budgets, end_day=START + timedelta(days=12))))  # fmt: skip
        cost("SetBudgets, 6 arms (next day)", lambda: platform.apply(SetBudgets(key="b2", campaign="c000", budgets=budgets, end_day=START + timedelta(days=13))))  # fmt: skip
        cost("PauseAds, 6 arms", lambda: platform.apply(PauseAds(key="p", campaign="c000", ad_ids=tuple(a["ad_id"] for a in arms),
                                                                  adset_ids=tuple(a["adset_id"] for a in arms))))  # fmt: skip
        scale = ScaleWinner(key="cl:c000:bench:scale", campaign="c000", parent_ad_id=parent, image=png_bytes(9, (1080, 1080)))  # fmt: skip
        platform.remember(scale.key, {}, fresh=True)
        cost("ScaleWinner, new intent", lambda: platform.apply(scale))
        seen: set[str] = set()
        for label, calls, ops in costs:
            if label in seen:
                continue
            seen.add(label)
            out.append((f"mutation: {label}", f"{calls:.0f} API calls", f"{ops:.0f} operations" if ops else ""))
    finally:
        platform.close()
        engine.dispose()
        fake.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL base URL (a throwaway schema is used)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--meta", action="store_true", help="also count the Meta connector's calls (bench/meta_ingest.py)")
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()
    rows = [] if args.skip_ingest else bench_ingest(args.ads, args.days, None if args.no_pg else args.pg)
    rows += bench_calls(args.campaigns)
    if args.meta:
        sys.path.insert(0, str(ROOT / "tests" / "meta"))
        import meta_ingest

        rows += [(f"Meta: {a}", b, c) for a, b, c in meta_ingest.bench_calls(args.campaigns)]
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    print(
        f"Google Ads connector ({args.ads:,} ads x {args.days} days; {args.campaigns} campaigns), "
        "fake Google Ads API (gRPC, TLS) on loopback"
    )
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:<{mid}}  {c}")


if __name__ == "__main__":
    main()
