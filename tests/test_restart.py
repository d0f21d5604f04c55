"""Restart safety: stop the loop between any two steps of a tick and run it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter as Tally
from pathlib import Path

import pytest
from sqlmodel import select

from loop.tick import StopTick, tick
from storage.db import make_engine, migrate
from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import Arm, Experiment, LedgerEntry, PlatformMutation

from loop_helpers import make_runtime, run_days

DAYS = 30


def end_state(rt) -> dict:  # type: ignore[no-untyped-def]
    with open_session(rt.engine) as s:
        ledger = Ledger(s)
        return {
            "experiments": sorted(
                (e.id, e.state, e.winner_creative_id, e.reason) for e in s.exec(select(Experiment)).all()
            ),
            "test": ledger.state("shop", "test"),
            "credit": ledger.state("shop", "credit"),
            "arms": sorted((a.creative_id, a.platform_ad_id) for a in s.exec(select(Arm)).all()),
            "mutations": sorted((m.key, m.status) for m in s.exec(select(PlatformMutation)).all()),
            "platform_ads": sorted(a.name for a in rt.platform.ads.values()),
        }


def step_points(engine, tmp_path, scenario_file) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    rt = make_runtime(engine, tmp_path / "ref", scenario_file)
    rt.on_step = seen.append
    run_days(rt, DAYS)
    return sorted(set(seen)), end_state(rt)


def test_stopping_between_any_two_steps_changes_nothing(sqlite_engine, tmp_path, scenario_file):
    points, reference = step_points(sqlite_engine, tmp_path, scenario_file)
    assert {"sync", "ingest", "reconcile", "detect", "advance", "intent:LaunchTestArm", "sent:ScaleWinner"} <= set(
        points
    )

    for point in points:
        engine = make_engine(f"sqlite:///{tmp_path / (point.replace(':', '_') + '.db')}")
        migrate(engine)
        rt = make_runtime(engine, tmp_path / point.replace(":", "_"), scenario_file)
        crashes = 0

        def hook(step: str, point: str = point) -> None:
            nonlocal crashes
            if step == point and crashes < 3:
                crashes += 1
                raise StopTick(step)

        rt.on_step = hook
        for _ in range(DAYS):
            today = rt.platform.today()
            while True:
                try:
                    tick(rt, today)  # a restart runs the same day's tick again
                    break
                except StopTick:
                    continue
            rt.platform.run_day()
        assert crashes >= 1, point
        state = end_state(rt)
        assert state == reference, point
        names = Tally(state["platform_ads"])
        assert all(n == 1 for n in names.values()), f"duplicate platform objects after a stop at {point}"


def test_reservation_keys_are_never_duplicated(sqlite_engine, tmp_path, scenario_file):
    rt = make_runtime(sqlite_engine, tmp_path, scenario_file)
    run_days(rt, 30)
    with open_session(sqlite_engine) as s:
        keys = Tally((e.key, e.kind) for e in s.exec(select(LedgerEntry)).all())
        assert keys and max(keys.values()) == 1


TICKS_UNTIL = """
import json, sys
from pathlib import Path
from loop.config import load_config
from loop.daemon import run_one_tick
cfg = load_config(sys.argv[1])
state = Path(cfg.data_dir) / "simulated-platform.json"
while not state.exists() or json.loads(state.read_text())["day"] < int(sys.argv[2]):
    run_one_tick(cfg)
"""


@pytest.mark.parametrize("kill_at", ["sent:LaunchTestArm#3", "generated#2"])  # tests/reliability covers 200+ points
def test_hard_kill_of_the_tick_process(tmp_path: Path, scenario_file: Path, kill_at: str):
    """SIGKILL a real tick process mid-step; the next process repairs it."""
    config = tmp_path / "creative-loop.toml"
    config.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\napproval = "none"\n'
        f'[simulated]\nscenario = "{scenario_file}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CREATIVE_LOOP_DATABASE", "CREATIVE_LOOP_KILL_AT")}
    cmd = [sys.executable, "-c", TICKS_UNTIL, str(config), str(DAYS)]
    first = subprocess.run(cmd, env={**env, "CREATIVE_LOOP_KILL_AT": kill_at}, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr[-2000:]  # it really died at the kill point
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with open_session(engine) as s:
        muts = s.exec(select(PlatformMutation)).all()
        assert muts and all(m.status == "done" for m in muts)
        exps = s.exec(select(Experiment)).all()
        assert any(e.state == "scaled" for e in exps), [(e.id, e.state, e.reason) for e in exps]
        ledger = Ledger(s)
        for account in ("test", "credit"):
            st = ledger.state("shop", account)
            assert st.spent + st.reserved <= st.cap
        arms = s.exec(select(Arm)).all()
        assert len({a.platform_ad_id for a in arms}) == len(arms)
    engine.dispose()
    state = json.loads((tmp_path / "data" / "simulated-platform.json").read_text())
    names = Tally(a["name"] for a in state["ads"])
    assert all(n == 1 for n in names.values()), names
