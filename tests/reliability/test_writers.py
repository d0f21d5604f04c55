"""One writer per campaign, whoever writes (issue 15), in real processes on both backends.

- Daemons started in the same millisecond on a new database, each with its
  own data folder: the schema is migrated once, one daemon acts, the others
  wait, nobody crashes (the locks follow the database, not ``data_dir``).
- ``approve``, ``reject`` and ``tick`` race a running daemon (seeded
  interleavings, ``race_driver.py``): at the end the simulated platform, the
  database and the audit log agree, and no day was ticked twice.

Waits poll with generous safety limits; nothing asserts on timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from reliability_helpers import ROOT, assert_guarantees, start, subprocess_env, wait_for, write_config
from sqlmodel import select

from loop import events
from storage.db import current_revision, head_revision, make_engine
from storage.db import session as open_session
from storage.models import Arm, AuditEvent, Experiment, TickRun

INTERVAL_MINUTES = 0.2 / 60  # a tick every 0.2 s

# Three fatiguing creatives in two campaigns: three experiments wait for approval after 12 days.
# Test budgets the test plan can resolve two or more arms with in max_test_days = 5 (three experiments wait).
RACE_SCENARIO = """
seed = 5
days = 60
[variants]
lift_mu = 0.0
lift_sigma = 0.3
pro_lift = 0.10

[[campaigns]]
id = "shop"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 100.0
test_spend_cap = 2000.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "hero"
ctr = 0.02
fatigue_onset_day = 6
fatigue_decay_per_day = 0.08

[[campaigns.creatives]]
id = "side"
ctr = 0.015
fatigue_onset_day = 7
fatigue_decay_per_day = 0.08

[[campaigns]]
id = "blog"
daily_impressions = 20000
cpm = 6.0
test_daily_budget = 60.0
test_spend_cap = 1200.0
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "post"
ctr = 0.02
fatigue_onset_day = 6
fatigue_decay_per_day = 0.08
"""


def _finished_ticks(engine) -> int:  # type: ignore[no-untyped-def]
    try:
        with open_session(engine) as s:
            return len(s.exec(select(TickRun).where(TickRun.ok == True)).all())  # noqa: E712
    except Exception:  # the schema is not there yet
        return 0


# -- daemons started together --------------------------------------------------------------
def test_daemons_started_together_on_a_new_database(db_url: str, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(RACE_SCENARIO)
    urls = [db_url] * 3
    if db_url.startswith("sqlite"):
        # The lock follows the database file, whatever path names it.
        (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
        urls[1] = db_url.replace(str(tmp_path), str(tmp_path / "alias"))
    configs = [
        write_config(tmp_path / f"d{i}", url, scenario, interval_minutes=INTERVAL_MINUTES) for i, url in enumerate(urls)
    ]
    logs = [tmp_path / f"d{i}.log" for i in range(3)]
    at = time.time() + 8.0  # every process has imported everything well before this
    procs = [
        start(
            [str(ROOT / "tests/reliability/start_at.py"), f"{at:.6f}", "run", "--config", str(c)], subprocess_env(), log
        )
        for c, log in zip(configs, logs, strict=True)
    ]
    engine = make_engine(db_url)
    try:
        wait_for(lambda: _finished_ticks(engine) >= 3, 120, "ticks from the acting daemon")

        def said() -> list[str]:
            return [log.read_text(errors="replace") for log in logs]

        # A new database is ready in a blink: the first daemon may tick before a loaded machine has let the
        # others say anything, so wait for each to say it acts or waits.
        wait_for(lambda: all("daemon started" in t or "waiting to take over" in t for t in said()), 60, "each says")
        assert all(p.poll() is None for p in procs), said()
        texts = said()
        acting = [i for i, t in enumerate(texts) if "daemon started" in t]
        assert len(acting) == 1, texts
        waiting = [i for i, t in enumerate(texts) if "waiting to take over" in t]
        assert sorted(acting + waiting) == [0, 1, 2], texts
        assert current_revision(engine) == head_revision(engine)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
        engine.dispose()
    texts = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0, 0], texts
    for t in texts:
        assert "Traceback" not in t and "already exists" not in t and "UniqueViolation" not in t, t
        assert "cannot schedule new futures" not in t, t
    # Only the acting daemon's folder has a platform: the others never ticked.
    assert sum((tmp_path / f"d{i}" / "data" / "simulated-platform.json").exists() for i in range(3)) == 1


# -- commands racing a daemon ----------------------------------------------------------------
SEEDS = 3


def test_approve_reject_and_tick_race_a_running_daemon(db_url: str, tmp_path: Path) -> None:
    import contextlib

    from reliability_helpers import pg_schema

    scenario = tmp_path / "scenario.toml"
    scenario.write_text(RACE_SCENARIO)
    with contextlib.ExitStack() as stack:
        urls = [
            f"sqlite:///{tmp_path / f'race{i}' / 'db.sqlite'}"
            if db_url.startswith("sqlite")
            else stack.enter_context(pg_schema(db_url.split("?", 1)[0]))
            for i in range(SEEDS)
        ]
        configs = [
            write_config(tmp_path / f"race{i}", url, scenario, approval="all", interval_minutes=INTERVAL_MINUTES)
            for i, url in enumerate(urls)
        ]
        for config in configs:
            with config.open("a") as fh:
                fh.write("[defaults]\nvariants = 4\nmax_test_days = 5\n")
        out = tmp_path / "race.json"
        # 18 days: the fatigue test's default noise prior (8 %) detects the onsets of day 6-7 by day 15.
        args = [str(ROOT / "tests/reliability/race_driver.py"), "--seed", "15", "--prep-days", "18", "--out", str(out)]
        for config in configs:
            args += ["--config", str(config)]
        proc = subprocess.run(
            [sys.executable, *args], env=subprocess_env(), capture_output=True, text=True, timeout=240
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs = json.loads(out.read_text())
        for run, url, config in zip(runs, urls, configs, strict=True):
            engine = make_engine(url)
            try:
                assert_agreement(engine, config.parent / "data" / "simulated-platform.json", run)
            finally:
                engine.dispose()
    print(
        "race: "
        + "; ".join(
            f"seed {r['seed']}: {len(r['commands'])} commands in {r['seconds']} s "
            f"({Counter((c['argv'][0], c['code']) for c in r['commands'])})"
            for r in runs
        )
    )


def assert_agreement(engine, state_path: Path, run: dict) -> None:  # type: ignore[no-untyped-def]
    """The platform, the database and the audit log tell one story after the race."""
    assert run["daemon_code"] == 0, run["daemon_log"]
    assert len(run["waiting"]) == 3, run["waiting"]
    outputs = [run["daemon_log"]] + [c["output"] for c in run["commands"]]
    for text in outputs:
        assert "Traceback" not in text and "cannot schedule new futures" not in text, text
    for c in run["commands"]:
        if c["argv"][0] == "tick" or c["code"] == 0:
            assert c["code"] == 0, c
            continue
        # Refused: the experiment had moved on while the command waited for the lock.
        lines = c["output"].strip().splitlines()
        assert c["code"] == 1 and len(lines) == 1, c
        assert any(
            w in lines[0] for w in ("not awaiting approval", "already ended", "already rejected", "already approved")
        ), c

    plat = json.loads(state_path.read_text())
    adsets = {s["adset_id"]: s for s in plat["adsets"]}
    ads = {a["ad_id"]: a for a in plat["ads"]}
    with open_session(engine) as s:
        exps = {e.id: e for e in s.exec(select(Experiment)).all()}
        audit = s.exec(select(AuditEvent)).all()
        # 1. the platform and the database: every arm's ad set is active exactly when the loop thinks so
        for arm in s.exec(select(Arm)).all():
            if arm.platform_adset_id is None:
                continue
            on_platform = adsets[arm.platform_adset_id]["status"]
            assert (arm.status == "live") == (on_platform == "ACTIVE"), (arm, on_platform)
            if arm.platform_ad_id and arm.status != "live":
                assert ads[arm.platform_ad_id]["status"] == "PAUSED", (arm, ads[arm.platform_ad_id])
            if exps[arm.experiment_id].state in ("abandoned", "scaled"):
                assert on_platform == "PAUSED", (arm, exps[arm.experiment_id].state)
        # 2. the database and the audit: each accepted command left one event, and the state shows it
        said = Counter(
            (c["argv"][0], c["argv"][1]) for c in run["commands"] if c["argv"][0] != "tick" and c["code"] == 0
        )
        rejected = Counter(e.experiment_id for e in audit if e.name == events.REJECTED)
        approved = Counter(e.experiment_id for e in audit if e.name == events.APPROVED)
        for exp_id in run["waiting"]:
            assert rejected[exp_id] == said[("reject", exp_id)] <= 1, (exp_id, rejected, said)
            assert approved[exp_id] == said[("approve", exp_id)], (exp_id, approved, said)
            exp = exps[exp_id]
            if rejected[exp_id]:
                assert exp.state == "abandoned" and exp.reason.startswith("rejected by"), (exp.state, exp.reason)
        # 3. every day ticked once: one finished, successful record per simulated day, none left open
        runs = s.exec(select(TickRun)).all()
        bad = [(r.day, r.ok, r.attempts, r.error) for r in runs if r.finished_at is None or not r.ok]
        assert not bad, (
            bad,
            run["daemon_log"][-3000:],
            [c["output"] for c in run["commands"] if c["argv"][0] == "tick"],
        )
        days = sorted(r.day for r in runs)
        start = min(days)
        assert days == [start + timedelta(days=i) for i in range(plat["day"])], (days, plat["day"])
    # 4. and what holds after any run: no duplicate platform objects, no lost metric day, caps, ledger keys
    assert_guarantees(engine, state_path, plat["day"])
