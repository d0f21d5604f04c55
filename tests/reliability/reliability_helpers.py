"""Helpers for the reliability tests: configs, PostgreSQL schemas, end-state snapshots and invariants.

(Its own module name: two ``conftest`` modules cannot both be imported by name.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import (
    Arm,
    AuditEvent,
    Campaign,
    Creative,
    DailyMetric,
    Experiment,
    LedgerEntry,
    PlatformMutation,
    TickRun,
)

import loop_helpers
from loop_helpers import SMALL_SCENARIO

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "config.example.toml"

# A small run that reaches both kinds of end: one experiment scaled, one abandoned at the test cap.
SCENARIO = SMALL_SCENARIO  # the shared small scenario (tests/loop_helpers.py)


def write_scenario(folder: Path, text_: str = SCENARIO) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scenario.toml"
    path.write_text(text_)
    return path


def write_config(folder: Path, db_url: str, scenario: Path, **loop: Any) -> Path:
    """A config for a daemon or tick subprocess, its data in ``folder / "data"``."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"database": db_url, "data_dir": str(folder / "data"), "approval": "none", **loop}
    lines = ["[loop]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["[simulated]", f"scenario = {json.dumps(str(scenario))}"]
    path = folder / "creative-loop.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CREATIVE_LOOP_DATABASE", "CREATIVE_LOOP_KILL_AT") and not k.startswith("PYTEST_")
    }
    env.update({"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **extra})
    return env


# -- PostgreSQL ------------------------------------------------------------------
pg_schema = loop_helpers.pg_schema  # one schema-per-test helper for every suite


def second_url(db_url: str, folder: Path) -> Iterator[str]:
    """Another database on the same backend as ``db_url`` (for a reference run)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{folder / 'reference.db'}"
        return
    base = db_url.split("?", 1)[0]
    with pg_schema(base) as url:
        yield url


# -- end state -------------------------------------------------------------------
def platform_state(state_path: Path) -> dict[str, Any]:
    return json.loads(state_path.read_text())


def snapshot(engine: Engine, state_path: Path) -> dict[str, Any]:
    """Everything a run leaves behind that must not depend on crashes or retries."""
    plat = platform_state(state_path)
    with open_session(engine) as s:
        ledger = Ledger(s)
        campaigns = [c.id for c in s.exec(select(Campaign)).all()]
        return {
            "experiments": sorted(
                (e.id, e.state, e.winner_creative_id, e.reason) for e in s.exec(select(Experiment)).all()
            ),
            "creatives": sorted(
                (c.id, c.role, c.status, c.image_hash, c.platform_ad_id) for c in s.exec(select(Creative)).all()
            ),
            "arms": sorted(
                (a.creative_id, a.platform_ad_id, a.platform_adset_id, a.status, a.daily_budget_minor)
                for a in s.exec(select(Arm)).all()
            ),
            "ledger": sorted((e.key, e.kind, e.account, e.amount_minor) for e in s.exec(select(LedgerEntry)).all()),
            "accounts": sorted(
                (c, a, ledger.state(c, a).spent, ledger.state(c, a).reserved)
                for c in campaigns
                for a in ("test", "credit")
            ),
            "mutations": sorted(
                (m.key, m.kind, m.status, json.dumps(m.result)) for m in s.exec(select(PlatformMutation))
            ),
            "metrics": sorted(
                (m.creative_id, m.day.isoformat(), m.impressions, m.clicks, m.spend_minor)
                for m in s.exec(select(DailyMetric)).all()
            ),
            "events": sorted(
                Tally(
                    (e.name, e.experiment_id or "")
                    for e in s.exec(select(AuditEvent)).all()
                    if e.name not in ("MutationFailed",)
                ).items()
            ),
            "platform_ads": sorted((a["name"], a["ad_id"], a["status"]) for a in plat["ads"]),
            "platform_adsets": sorted((a["name"], a["adset_id"], a["status"]) for a in plat["adsets"]),
            "platform_day": plat["day"],
        }


def assert_guarantees(engine: Engine, state_path: Path, days: int) -> dict[str, Any]:
    """The invariants that hold after any run, crashed or not; returns a few figures."""
    plat = platform_state(state_path)
    # no duplicate platform objects: every name that carries an idempotency key is unique
    ads = Tally(a["name"] for a in plat["ads"])
    adsets = Tally(s["name"] for s in plat["adsets"])
    dupes = {n: k for names in (ads, adsets) for n, k in names.items() if k > 1}
    assert not dupes, f"duplicate platform objects: {dupes}"
    with open_session(engine) as s:
        by_ad = {c.platform_ad_id: c.id for c in s.exec(select(Creative)).all() if c.platform_ad_id}
        stored = {
            (m.creative_id, m.day.isoformat()): (m.impressions, m.clicks, m.spend_minor)
            for m in s.exec(select(DailyMetric))
        }
        # no lost metric day: every day the platform delivered before the last tick is stored, same numbers
        last_ingested = plat["day"] - 2  # the last tick ingests up to the day before it; the last day is not ticked
        lost = []
        for r in plat["rows"]:
            if r["d"] > last_ingested:
                continue
            assert r["ad_id"] in by_ad, f"platform ad {r['ad_id']} unknown to the loop"
            got = stored.get((by_ad[r["ad_id"]], r["day"]))
            if got != (r["impressions"], r["clicks"], r["spend_minor"]):
                lost.append((r["ad_id"], r["day"], got))
        assert not lost, f"metric days lost or wrong: {lost[:5]} ({len(lost)} in all)"
        # every mutation finished; no intent left dangling
        pending = [(m.key, m.status) for m in s.exec(select(PlatformMutation)) if m.status != "done"]
        assert not pending, f"mutations not done: {pending}"
        ledger = Ledger(s)
        exps = {e.id: e for e in s.exec(select(Experiment)).all()}
        for c in s.exec(select(Campaign)).all():
            for account in ("test", "credit"):
                st = ledger.state(c.id, account)
                # no cap crossed
                assert st.spent + st.reserved <= st.cap, (c.id, account, st)
                # no reservation leaked: an open one belongs to an experiment still open
                for res in ledger.open_reservations(c.id, account):
                    exp = exps.get(res.experiment_id or "")
                    assert exp is not None and exp.state not in ("scaled", "abandoned"), (
                        f"reservation {res.key} left open by {exp.state if exp else 'no experiment'}"
                    )
        keys = Tally((e.key, e.kind) for e in s.exec(select(LedgerEntry)).all())
        assert max(keys.values(), default=1) == 1, "a ledger key written twice"
        return {
            "experiments": sorted((e.id, e.state) for e in exps.values()),
            "ticks": len(s.exec(select(TickRun)).all()),
        }


# -- processes -------------------------------------------------------------------
def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` (a safety net, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(every)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, *args], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- in-process runs ---------------------------------------------------------------
def make_runtime(engine: Engine, folder: Path, scenario_path: Path, *, faults: Any = None, **runtime: Any) -> Any:
    """A Runtime over the simulated platform (state in ``folder``), procedural images, no real waits."""
    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.images.procedural import ProceduralGenerator
    from connectors.retry import NO_WAIT
    from loop.config import load_config
    from loop.plans import campaign_plans
    from loop.runtime import Runtime
    from storage.images import ImageStore

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.toml").touch()
    scenario = load_scenario(scenario_path)
    platform = SimulatedAdPlatform(scenario, state_path=folder / "platform.json", faults=faults)
    options: dict[str, Any] = {"approval": "none", "backfill_days": 2, "retry": NO_WAIT, "sleep": lambda s: None}
    return Runtime(
        engine=engine,
        platform=platform,
        generators={"procedural": ProceduralGenerator(draft_width=128, pro_width=256)},
        images=ImageStore(folder / "images"),
        plans=campaign_plans(load_config(folder / "policy.toml"), scenario),
        **{**options, **runtime},
    )


def run_days(rt: Any, days: int) -> list[str]:
    """Tick and deliver ``days`` simulated days; returns the errors the ticks reported."""
    from loop.tick import tick

    errors: list[str] = []
    for _ in range(days):
        errors += tick(rt, rt.platform.today()).errors
        rt.platform.run_day()
    return errors
