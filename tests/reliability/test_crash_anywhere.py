"""Crash anywhere: SIGKILL the tick process at 200+ seeded points of a campaign run, restart, compare.

``crash_driver.py`` runs the reference (uninterrupted) and then the same run
in tick processes killed at every step point of every day (and, every fifth
restart, after a random delay wherever the process is).  The end state must
be the reference's, and the guarantees must hold on their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import ROOT, assert_guarantees, second_url, snapshot, subprocess_env, write_scenario
from sqlmodel import select

from storage.db import make_engine
from storage.db import session as open_session
from storage.models import TickRun

DAYS = 45
DRIVER = Path(__file__).with_name("crash_driver.py")


def test_sigkill_at_200_points_leaves_the_reference_end_state(db_url: str, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path)
    for ref_url in second_url(db_url, tmp_path):
        out = tmp_path / "result.json"
        proc = subprocess.run(
            [
                sys.executable, str(DRIVER), "--scenario", str(scenario), "--days", str(DAYS),
                "--ref-db", ref_url, "--ref-dir", str(tmp_path / "ref"),
                "--db", db_url, "--dir", str(tmp_path / "crash"),
                "--density", "1.0", "--timer-every", "5", "--seed", "2026", "--out", str(out),
            ],
            env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(out.read_text())
        # at least 200 distinct kill points, at every kind of step point the run has
        assert result["distinct_step_kills"] >= 200, result
        assert {"sync", "ingest", "reconcile", "detect", "advance", "generated"} <= set(result["kill_steps"]), result
        assert any(s.startswith("intent:") for s in result["kill_steps"]), result
        assert any(s.startswith("sent:") for s in result["kill_steps"]), result

        assert "day-end" in result["kill_steps"], result  # between the day's delivery and the tick's record
        ref_engine, crash_engine = make_engine(ref_url), make_engine(db_url)
        try:
            reference = snapshot(ref_engine, tmp_path / "ref" / "platform.json")
            crashed = snapshot(crash_engine, tmp_path / "crash" / "platform.json")
            ref_figures = assert_guarantees(ref_engine, tmp_path / "ref" / "platform.json", DAYS)
            figures = assert_guarantees(crash_engine, tmp_path / "crash" / "platform.json", DAYS)
            # one tick record per day however often its tick was killed, none left open
            with open_session(crash_engine) as s:
                runs = s.exec(select(TickRun)).all()
            assert len({r.day for r in runs}) == len(runs) == DAYS, sorted(r.day for r in runs)
            assert all(r.finished_at is not None for r in runs)
            assert sum(r.attempts for r in runs) > DAYS  # the killed days were retried on their own records
        finally:
            ref_engine.dispose()
            crash_engine.dispose()
        # the run really went somewhere: a winner scaled, and every experiment ended
        states = [state for _, state in ref_figures["experiments"]]
        assert "scaled" in states and set(states) <= {"scaled", "abandoned"}, ref_figures
        assert figures["experiments"] == ref_figures["experiments"]
        for key in reference:
            assert crashed[key] == reference[key], f"{key} differs from the uninterrupted run"


@pytest.mark.parametrize("fault_rate", [0.2])
def test_platform_faults_and_kills_together(tmp_path: Path, fault_rate: float) -> None:
    """20 % injected platform faults on top of kills (SQLite): the guarantees still hold."""
    scenario = write_scenario(tmp_path)
    out = tmp_path / "result.json"
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc = subprocess.run(
        [
            sys.executable, str(DRIVER), "--scenario", str(scenario), "--days", str(DAYS),
            "--db", url, "--dir", str(tmp_path / "crash"), "--fault-rate", str(fault_rate),
            "--density", "0.3", "--seed", "7", "--out", str(out),
        ],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["step_kills"] >= 30
    engine = make_engine(url)
    try:
        figures = assert_guarantees(engine, tmp_path / "crash" / "platform.json", DAYS)
    finally:
        engine.dispose()
    assert figures["experiments"] and all(state in ("scaled", "abandoned") for _, state in figures["experiments"])
