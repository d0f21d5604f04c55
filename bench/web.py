"""Dashboard: page times on a year of data for 50 campaigns.

    python bench/web.py [--campaigns 50] [--days 365] [--ads 6] [--backend sqlite|postgres] [--repeats 15]
                        [--parallel 8] [--json OUT] [--keep DIR]

Builds a database the way a year of the loop leaves it, written in bulk (not
by running the loop, which would take hours): per campaign ``--ads`` ad slots,
each with a live creative that fatigues every 45-90 days and an experiment
that replaces it (6 drafts with recipes and images, arms with daily test
delivery, bandit decisions, audit events, ledger entries, platform mutations;
about one in six abandoned, the newest ones still open in every state, some
waiting for approval), plus one tick record per platform day.

Then, in process (Starlette's test client, no network), it times each page:
the first request (cold: no chart rendered yet, no cached detector reading)
and the median and 90th percentile of ``--repeats`` more.  Experiment and
creative pages are timed on distinct ids, cold and then warm (charts are
cached by content).  Then ``--parallel`` cold experiment pages at once against
a live ``creative-loop serve`` (no lock serialises them), the overview while a
report renders in the background, and the report job itself.  Figures are
printed, never judged.

PostgreSQL: set CREATIVE_LOOP_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a fresh schema is used and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import Schema, peak_mb  # noqa: E402  (bench/load.py: a fresh PostgreSQL schema per run, peak RSS)

START = date(2025, 1, 6)  # platform day 0
T0 = datetime(2025, 1, 6, 5, 0, tzinfo=UTC)  # the daemon's daily tick, wall clock
TEST_DAYS = 10
RECIPE_NOTE = "soft light, brand palette, headline top-left, product centred, 4:5 crop, no text over faces " * 4


# -- the data ----------------------------------------------------------------------------------
def scenario_text(campaigns: int, ads: int) -> str:
    parts = ["seed = 5\ndays = 400\n"]
    for c in range(campaigns):
        parts.append(
            f'[[campaigns]]\nid = "c{c:02d}"\ndaily_impressions = {ads * 4000}\ncpm = 8.0\ntest_daily_budget = 20.0\n'
            "test_spend_cap = 6000.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.60\ncredit_cap = 100.0\n"
        )
        parts += [f'[[campaigns.creatives]]\nid = "c{c:02d}a{a}"\nctr = 0.015\n' for a in range(ads)]
    return "".join(parts)


def images_pool(folder: Path, n: int = 16) -> list[str]:
    from connectors.images.procedural import source_image
    from storage.images import ImageStore

    store = ImageStore(folder / "images")
    return [store.put(source_image(f"bench-{i}", f"Offer {i}").resize((256, 256))) for i in range(n)]


class Rows:
    """Row dicts per table, inserted in bulk at the end (parents first)."""

    def __init__(self) -> None:
        self.t: dict[str, list[dict[str, Any]]] = {}

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        self.t.setdefault(table, []).append(row)
        return row


def generate(url: str, folder: Path, campaigns: int, days: int, ads: int) -> dict[str, Any]:
    """Write the year; returns counts and a few ids to time pages on."""
    import numpy as np
    from sqlalchemy import insert

    from storage.db import make_engine, migrate
    from storage.models import (
        Arm,
        AuditEvent,
        BanditDecision,
        Campaign,
        Creative,
        DailyMetric,
        Experiment,
        LedgerEntry,
        PlatformMutation,
        TickRun,
    )  # fmt: skip

    rng = np.random.default_rng(2026)
    pool = images_pool(folder)
    rows = Rows()
    by_id: dict[str, dict[str, Any]] = {}
    open_states = ["detected", "exploring", "testing", "testing", "decided", "rendering", "awaiting_approval"]
    picks: dict[str, list[str]] = {"experiments": [], "creatives": [], "waiting": []}

    def at(d: int, minute: int = 5) -> datetime:
        return T0 + timedelta(days=d, minutes=minute)

    def day(d: int) -> date:
        return START + timedelta(days=d)

    def metrics(cid: str, first: int, last: int, ctr: float, onset: int | None, imps: int) -> None:
        for d in range(max(0, first), min(days, last)):
            p = ctr * (0.96 ** max(0, d - onset) if onset is not None else 1.0)
            n = int(imps * rng.uniform(0.85, 1.15))
            rows.add("dailymetric", creative_id=cid, day=day(d), impressions=n, clicks=int(rng.binomial(n, p)),
                     spend_minor=n * 8 // 10, updated_at=at(d + 1))  # fmt: skip

    def event(name: str, camp: str, exp: str, d: int, **data: Any) -> None:
        rows.add("auditevent", name=name, campaign_id=camp, experiment_id=exp, actor="loop", at=at(d), data=data)

    def money(
        camp: str, account: str, key: str, exp: str, d: int, reserved: int, actual: int | None, tier=None
    ) -> None:  # type: ignore[no-untyped-def]
        rows.add("ledgerentry", campaign_id=camp, account=account, kind="reserve", key=key, amount_minor=reserved,
                 experiment_id=exp, tier=tier, note="", created_at=at(d, 6))  # fmt: skip
        if actual is not None:
            if actual:
                rows.add("ledgerentry", campaign_id=camp, account=account, kind="actual", key=key, amount_minor=actual,
                         experiment_id=exp, tier=tier, note="", created_at=at(d + 1, 7))  # fmt: skip
            rows.add("ledgerentry", campaign_id=camp, account=account, kind="release", key=key, amount_minor=reserved,
                     experiment_id=exp, tier=tier, note="", created_at=at(d + 1, 7))  # fmt: skip

    def mutation(camp: str, exp: str, key: str, kind: str, d: int) -> None:
        rows.add("platformmutation", key=key, campaign_id=camp, experiment_id=exp, kind=kind, payload={"key": key},
                 status="done", result={"ok": True}, error="", attempts=1, created_at=at(d, 8), updated_at=at(d, 8))  # fmt: skip

    for d in range(days):
        rows.add("tickrun", started_at=at(d, 0), finished_at=at(d, 20), day=day(d), dry_run=False, ok=True, error="")
    for c in range(campaigns):
        camp = f"c{c:02d}"
        rows.add("campaign", id=camp, currency="USD", test_spend_cap_minor=600_000, credit_cap_minor=10_000,
                 halted_reason=None, created_at=at(0, 1))  # fmt: skip
        for a in range(ads):
            ad = f"{camp}a{a}"
            cur = f"{camp}:{ad}"
            ctr = 0.010 + 0.002 * (a % 4)
            by_id[cur] = rows.add("creative", id=cur, campaign_id=camp, role="live", label=ad, platform_ad_id=ad,
                                  status="active", headline=f"Offer {a}", recipe={}, prompt="", flags={},
                                  created_at=at(0, 2))  # fmt: skip
            picks["creatives"].append(cur)
            start, n = 0, 0
            while True:
                onset = start + int(rng.integers(45, 90))
                detect = onset + 5
                if detect >= days:
                    metrics(cur, start, days, ctr, onset, 4000)
                    break
                metrics(cur, start, detect + 1, ctr, onset, 4000)
                n += 1
                exp = f"{cur}:{day(detect).isoformat()}"
                left = days - detect
                if left > TEST_DAYS + 3:
                    state = "abandoned" if rng.random() < 1 / 6 else "scaled"
                else:
                    state = open_states[int(rng.integers(0, len(open_states)))]
                tested = 0 if state in ("detected", "exploring") else min(TEST_DAYS, left - 1)
                if tested == 0 and state not in ("detected", "exploring"):
                    state = "exploring"  # no test day yet: nothing to decide
                event("FatigueDetected", camp, exp, detect, creative=cur, day=day(detect - 1).isoformat(),
                      baseline_ctr=ctr, current_ctr=ctr * 0.8, statistic=8.2, threshold=6.1, signal="ctr",
                      reason=f"CTR signal fired: CTR {100 * ctr * 0.8:.2f}% vs baseline {100 * ctr:.2f}%")  # fmt: skip
                drafts = []
                if state != "detected":
                    for v in range(1, 7):
                        did = f"{exp}:v{v}"
                        drafts.append(did)
                        rows.add("creative", id=did, campaign_id=camp, role="draft", parent_id=cur, experiment_id=exp,
                                 label=f"v{v}", platform_ad_id=f"ad-{c}-{a}-{n}-{v}", status="paused",
                                 headline=f"Offer {a}", prompt=f"variant {v} of offer {a}: " + RECIPE_NOTE[:200],
                                 recipe={"palette": ["#2563eb", "#16a34a", "#f59e0b"], "layout": v, "seed": 1000 + v,
                                         "notes": RECIPE_NOTE, "strength": 0.55},
                                 seed=1000 + v, generator="procedural", model="procedural-v1", tier="fast", width=512,
                                 height=512, image_hash=pool[(c + a + n + v) % len(pool)], flags={},
                                 created_at=at(detect, 3))  # fmt: skip
                        money(camp, "credit", f"credit:{exp}:v{v}", exp, detect, 2, 2, "fast")
                        mutation(camp, exp, f"cl:{exp}:launch:v{v}", "LaunchTestArm", detect)
                    event("VariantsGenerated", camp, exp, detect, count=6, generator="procedural")
                    event("ArmsLaunched", camp, exp, detect, arms=6)
                true = rng.lognormal(np.log(ctr), 0.25, 6)
                cum_c, cum_n = np.zeros(6, int), np.zeros(6, int)
                for t in range(tested):
                    d = detect + 1 + t
                    w = rng.dirichlet(np.ones(6) * 3)
                    budgets = [int(2000 * x) for x in w]
                    rows.add("banditdecision", experiment_id=exp, day=day(d), seed=int(rng.integers(1 << 30)),
                             policy="thompson", clicks=[int(x) for x in cum_c], impressions=[int(x) for x in cum_n],
                             weights=[float(x) for x in w], prob_best=[float(x) for x in rng.dirichlet(np.ones(6))],
                             budgets_minor=budgets, winner=None, created_at=at(d),
                             note=f"undecided: best P(best)={w.max():.4f} (arm {int(w.argmax())}) < 0.95")  # fmt: skip
                    event("AllocationSet", camp, exp, d, day=day(d).isoformat(), budgets=budgets, seed=1)
                    money(camp, "test", f"test:{exp}:{day(d).isoformat()}:1", exp, d, 2500, 2000)
                    mutation(camp, exp, f"cl:{exp}:budgets:{day(d).isoformat()}", "SetBudgets", d)
                    for v, did in enumerate(drafts):
                        imps = int(budgets[v] * 1.25)
                        clicks = int(rng.binomial(imps, true[v]))
                        cum_c[v] += clicks
                        cum_n[v] += imps
                        rows.add("dailymetric", creative_id=did, day=day(d), impressions=imps, clicks=clicks,
                                 spend_minor=budgets[v], updated_at=at(d + 1))  # fmt: skip
                for v, did in enumerate(drafts):
                    rows.add("arm", experiment_id=exp, creative_id=did, position=v, platform_adset_id=f"set-{did}",
                             platform_ad_id=f"ad-{c}-{a}-{n}-{v + 1}", daily_budget_minor=300,
                             status="live" if state == "testing" else "paused")  # fmt: skip
                winner = drafts[int(np.argmax(cum_c / np.maximum(cum_n, 1)))] if drafts and tested else None
                decided = detect + 1 + tested
                row = {"id": exp, "campaign_id": camp, "parent_creative_id": cur, "state": state, "reason": "",
                       "seed": n, "policy": "thompson", "detected_on": day(detect), "tiering": "tiered",
                       "testing_started_on": day(detect + 1) if tested else None, "decided_on": None,
                       "winner_creative_id": None, "pro_creative_id": None, "scaled_creative_id": None,
                       "waiting_for": None, "approved_stage": None, "created_at": at(detect, 4),
                       "updated_at": at(decided), "verdict": {"day": day(detect - 1).isoformat(),
                       "baseline_ctr": ctr, "reason": "CTR signal fired"}}  # fmt: skip
                if state == "abandoned":
                    row["reason"] = "test spend cap reached: no budget left to test variants"
                    event("ExperimentAbandoned", camp, exp, decided, reason=row["reason"])
                    rows.add("experiment", **row)
                    start = decided + 20  # the parent stays live and fatigued until the next try
                    metrics(cur, detect + 1, start, ctr, onset, 4000)
                    continue
                if winner is not None and state in ("decided", "rendering", "awaiting_approval", "scaled"):
                    row.update(winner_creative_id=winner, decided_on=day(decided),
                               reason="prob_best: arm 2 has P(best)=0.9600 >= 0.95")  # fmt: skip
                    event("WinnerDeclared", camp, exp, decided, winner=winner, reason=row["reason"],
                          prob_best=[0.01, 0.01, 0.96, 0.01, 0.005, 0.005])  # fmt: skip
                    pro = f"{winner}-pro"
                    if state in ("rendering", "awaiting_approval", "scaled"):
                        rows.add("creative", id=pro, campaign_id=camp, role="pro", parent_id=winner, experiment_id=exp,
                                 label=f"{winner.rsplit(':', 1)[1]}-pro", status="candidate", headline=f"Offer {a}",
                                 prompt="pro render", recipe={"notes": RECIPE_NOTE}, seed=7, generator="procedural",
                                 model="procedural-v1", tier="pro", width=1080, height=1080,
                                 image_hash=pool[(c + n) % len(pool)], flags={}, created_at=at(decided, 9))  # fmt: skip
                        row["pro_creative_id"] = pro
                        money(camp, "credit", f"credit:{exp}:pro", exp, decided, 60, 60, "pro")
                        event("ProRendered", camp, exp, decided, creative=pro, seed=7, model="procedural-v1")
                    if state == "awaiting_approval":
                        row["waiting_for"] = "pro"
                        event("ApprovalRequested", camp, exp, decided, stage="pro")
                        picks["waiting"].append(exp)
                    if state == "scaled":
                        live = f"{pro}-live"
                        by_id[live] = rows.add("creative", id=live, campaign_id=camp, role="pro", parent_id=pro, experiment_id=exp,
                                 label=f"{winner.rsplit(':', 1)[1]}-pro-live", platform_ad_id=f"ad-live-{c}-{a}-{n}",
                                 status="active", headline=f"Offer {a}", prompt="pro render", recipe={}, seed=7,
                                 generator="procedural", model="procedural-v1", tier="pro", width=1080, height=1080,
                                 image_hash=pool[(c + n) % len(pool)], flags={}, created_at=at(decided + 1))  # fmt: skip
                        row["scaled_creative_id"] = live
                        mutation(camp, exp, f"cl:{exp}:scale", "ScaleWinner", decided + 1)
                        event("WinnerScaled", camp, exp, decided + 1, creative=live, replaced=cur)
                        by_id[cur]["status"] = "paused"
                        metrics(cur, detect + 1, decided + 1, ctr, onset, 4000)
                        rows.add("experiment", **row)
                        picks["experiments"].append(exp)
                        cur, start, ctr = live, decided + 1, float(true.max())
                        picks["creatives"].append(cur)
                        continue
                rows.add("experiment", **row)
                picks["experiments"].append(exp)
                metrics(cur, detect + 1, days, ctr, onset, 4000)
                break
    # Rows are in the order they were made, so a parent always precedes its children (foreign keys).
    engine = make_engine(url)
    migrate(engine)
    tables = [("campaign", Campaign), ("tickrun", TickRun), ("creative", Creative), ("experiment", Experiment),
              ("arm", Arm), ("dailymetric", DailyMetric), ("banditdecision", BanditDecision),
              ("auditevent", AuditEvent), ("ledgerentry", LedgerEntry), ("platformmutation", PlatformMutation)]  # fmt: skip
    counts = {}
    with engine.begin() as conn:
        for name, model in tables:
            batch = rows.t.get(name, [])
            keys = {k for r in batch for k in r}  # one statement needs one set of columns: absent ones are NULL
            batch = [{k: r.get(k) for k in keys} for r in batch]
            for i in range(0, len(batch), 20_000):
                conn.execute(insert(model), batch[i : i + 20_000])
            counts[name] = len(batch)
    engine.dispose()
    return {"counts": counts, "picks": picks}


# -- timing ------------------------------------------------------------------------------------------
def _ms(seconds: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    s = sorted(seconds)
    out = {
        "median_ms": round(1000 * statistics.median(s), 1),
        "p90_ms": round(1000 * s[min(len(s) - 1, int(0.9 * len(s)))], 1),
    }
    if cpu:
        out["cpu_median_ms"] = round(1000 * statistics.median(cpu), 1)
    return out


def time_pages(config: Path, picks: dict[str, list[str]], repeats: int) -> list[dict[str, Any]]:
    from starlette.testclient import TestClient

    from loop.config import load_config
    from loop.web import create_app

    cfg = load_config(config)
    app = create_app(cfg, default_actor="bench")
    out = []
    with TestClient(app, base_url="http://127.0.0.1") as client:

        def timed(path: str) -> tuple[float, float, int]:
            # Wall time, and this process's CPU time (the server runs in it): the second is what the page
            # costs on an idle core, whatever else the machine is doing.
            t0, c0 = time.perf_counter(), time.process_time()
            r = client.get(path)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert r.status_code == 200, (path, r.status_code)
            return elapsed, cpu, len(r.content)

        def row(name: str, runs: list[tuple[float, float, int]], first: tuple[float, float, int] | None) -> None:
            out.append({
                "page": name, "first_ms": round(1000 * first[0], 1) if first else None,
                **_ms([r[0] for r in runs], [r[1] for r in runs]), "kib": round(statistics.median(r[2] for r in runs) / 1024),
            })  # fmt: skip

        for name, path in (
            ("overview", "/"),
            ("approvals", "/approvals"),
            ("gallery (page 1)", "/gallery"),
            ("gallery (page 50)", "/gallery?page=50"),
            ("ledger", "/ledger"),
            ("ledger.csv", "/ledger.csv"),
            ("audit log", "/audit"),
        ):
            first = timed(path)
            row(name, [timed(path) for _ in range(repeats)], first)
        every = picks["experiments"]
        exps = [quote(e, safe="") for e in every[:: max(1, len(every) // repeats)][:repeats]]  # spread over the year
        row(f"experiment (cold, {len(exps)} ids)", [timed(f"/experiments/{e}") for e in exps], None)
        row("experiment (warm)", [timed(f"/experiments/{e}") for e in exps for _ in range(2)], None)
        creatives = [
            quote(c, safe="") for c in picks["creatives"][:: max(1, len(picks["creatives"]) // repeats)][:repeats]
        ]
        row(f"creative, a year (cold, {len(creatives)} ids)", [timed(f"/creatives/{c}") for c in creatives], None)
        row("creative, a year (warm)", [timed(f"/creatives/{c}") for c in creatives for _ in range(2)], None)
    app.state.dashboard.engine.dispose()
    return out


def _serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    import httpx

    env = {k: v for k, v in os.environ.items() if k != "CREATIVE_LOOP_DATABASE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop", "serve", "--config", str(config), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("creative-loop serve did not come up")


def live_server(config: Path, picks: dict[str, list[str]], parallel: int, repeats: int) -> dict[str, Any]:
    """Against a live server: parallel cold experiment pages; the overview while a report job runs."""
    import re
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = _serve(config, port)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            client.get("/")  # warm the process (imports, plans)
            exps = [quote(e, safe="") for e in picks["experiments"][: 2 * parallel]]

            def get(path: str) -> float:
                t0 = time.perf_counter()
                assert client.get(path).status_code == 200
                return time.perf_counter() - t0

            one = [get(f"/experiments/{e}") for e in exps[:parallel]]  # cold, one after another
            t0 = time.perf_counter()
            with ThreadPoolExecutor(parallel) as pool:
                each = list(pool.map(get, [f"/experiments/{e}" for e in exps[parallel:]]))  # cold, all at once
            out["sequential_cold_ms"] = round(1000 * sum(one), 1)
            out["parallel_cold_wall_ms"] = round(1000 * (time.perf_counter() - t0), 1)
            out["parallel_cold_each_ms"] = [round(1000 * x) for x in sorted(each)]
            # A report in the background: the overview meanwhile, and the job's own time.
            quiet = [get("/") for _ in range(repeats)]
            page = client.get("/reports").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            campaign = picks["experiments"][0].split(":", 1)[0]
            t_job = time.perf_counter()
            r = client.post("/reports", data={"csrf_token": token, "campaign": campaign},
                            headers={"origin": base}, follow_redirects=False)  # fmt: skip
            job = r.headers["location"].split("queued=")[1]
            during: list[float] = []
            while True:
                row = client.get("/reports").text
                row = row[row.index(f'data-job="{job}"') :]
                row = row[: row.index("</tr>")]
                if 'data-state="done"' in row or 'data-state="failed"' in row:
                    break
                during.append(get("/"))
            out["report_job_s"] = round(time.perf_counter() - t_job, 1)
            out["report_state"] = "done" if 'data-state="done"' in row else "failed"
            out["report_kib"] = re.search(r"([\d,]+) KiB", row).group(1) if "KiB" in row else None  # type: ignore[union-attr]
            out["overview_quiet"] = _ms(quiet)
            out["overview_during_report"] = _ms(during) if during else None
            out["report_campaign"] = campaign
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


def cli_report(config: Path, campaign: str) -> dict[str, Any]:
    """The ``report`` command for one campaign, timed from outside (wall and the child's CPU)."""
    import resource

    out = config.parent / "bench-report.html"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "loop", "report", "--config", str(config), "--campaign", campaign, "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"campaign": campaign, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "kib": out.stat().st_size // 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaigns", type=int, default=50)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--ads", type=int, default=6)
    ap.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="build the database here and keep it (default: a temporary folder)")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="cl-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.toml").write_text(scenario_text(args.campaigns, args.ads))
    with Schema(args.backend, folder) as url:
        config = folder / "creative-loop.toml"
        config.write_text(
            f'[loop]\ndatabase = "{url}"\ndata_dir = "{folder}"\napproval = "pro"\n'
            f'[simulated]\nscenario = "{folder / "scenario.toml"}"\n'
        )
        t0 = time.perf_counter()
        made = generate(url, folder, args.campaigns, args.days, args.ads)
        gen_s = time.perf_counter() - t0
        counts = made["counts"]
        print(
            f"dashboard bench: {args.backend}, {args.campaigns} campaigns x {args.ads} ad slots x {args.days} days; "
            f"generated in {gen_s:.0f} s: {counts['dailymetric']:,} metric rows, {counts['experiment']:,} experiments, "
            f"{counts['creative']:,} creatives, {counts['auditevent']:,} audit events, "
            f"{counts['ledgerentry']:,} ledger entries, {counts['banditdecision']:,} bandit decisions"
        )
        pages = time_pages(config, made["picks"], args.repeats)
        print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"\n{'page':34} {'first ms':>9} {'median ms':>10} {'p90 ms':>8} {'CPU median ms':>14} {'KiB':>6}")
        for p in pages:
            first = "" if p["first_ms"] is None else f"{p['first_ms']:.0f}"
            print(
                f"{p['page']:34} {first:>9} {p['median_ms']:>10.1f} {p['p90_ms']:>8.1f} "
                f"{p['cpu_median_ms']:>14.1f} {p['kib']:>6}"
            )
        report = cli_report(config, made["picks"]["experiments"][0].split(":", 1)[0])
        print(
            f"\ncreative-loop report --campaign {report['campaign']}: {report['wall_s']} s wall, "
            f"{report['cpu_s']} s CPU, {report['kib']:,} KiB"
        )
        live = live_server(config, made["picks"], args.parallel, args.repeats)
        print(
            f"\nlive server: {args.parallel} cold experiment pages one after another {live['sequential_cold_ms']:.0f} ms; "
            f"{args.parallel} others at once {live['parallel_cold_wall_ms']:.0f} ms wall "
            f"(each {live['parallel_cold_each_ms']} ms)"
        )
        during = live["overview_during_report"]
        print(
            f"report job ({live['report_campaign']}, in the background): {live['report_state']} in "
            f"{live['report_job_s']} s, {live['report_kib']} KiB; overview median {live['overview_quiet']['median_ms']} ms "
            f"before, {during['median_ms'] if during else '-'} ms while it ran"
        )
        print(f"peak RSS of this process: {peak_mb():.0f} MiB")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "backend": args.backend,
                        "generate_s": round(gen_s, 1),
                        "counts": counts,
                        "pages": pages,
                        "report": report,
                        "live": live,
                    },
                    indent=2,
                )  # fmt: skip
            )


if __name__ == "__main__":
    main()
