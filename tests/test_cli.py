"""The CLI over a persisted simulated platform: tick, dry run, status, spend, approve, reject, run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from loop.cli import main
from storage.db import make_engine
from storage.db import session as open_session
from storage.models import AuditEvent, Experiment, PlatformMutation, TickRun


@pytest.fixture
def config(tmp_path: Path, scenario_file: Path) -> Path:
    path = tmp_path / "creative-loop.toml"
    path.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'approval = "pro"\ninterval_minutes = 0.02\n'
        f'[simulated]\nscenario = "{scenario_file}"\n'
    )
    return path


def ticks(config: Path, n: int) -> None:
    for _ in range(n):
        assert main(["tick", "--config", str(config)]) == 0


def waiting(config: Path) -> list[Experiment]:
    engine = make_engine(f"sqlite:///{config.parent / 'db.sqlite'}")
    with open_session(engine) as s:
        return list(s.exec(select(Experiment).where(Experiment.state == "awaiting_approval")).all())


def test_pro_render_waits_for_approval_then_scales(config, capsys):
    ticks(config, 30)
    (exp,) = waiting(config)
    assert exp.waiting_for == "pro" and exp.pro_creative_id
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "awaiting_approval (pro)" in out and "last tick" in out
    assert main(["approve", exp.id, "--config", str(config), "--note", "looks on brand"]) == 0
    ticks(config, 1)
    engine = make_engine(f"sqlite:///{config.parent / 'db.sqlite'}")
    with open_session(engine) as s:
        assert s.get(Experiment, exp.id).state == "scaled"
        approved = s.exec(select(AuditEvent).where(AuditEvent.name == "Approved")).one()
        assert approved.data["note"] == "looks on brand" and approved.actor


def test_reject_abandons_with_the_reason(config, capsys):
    ticks(config, 30)
    (exp,) = waiting(config)
    assert main(["reject", exp.id, "--config", str(config), "--reason", "off brand"]) == 0
    engine = make_engine(f"sqlite:///{config.parent / 'db.sqlite'}")
    with open_session(engine) as s:
        got = s.get(Experiment, exp.id)
        assert got.state == "abandoned" and "off brand" in got.reason


def test_approving_an_unknown_experiment_exits_2(config, capsys):
    assert main(["approve", "nope", "--config", str(config)]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["simulate", "--days", "x"], "Invalid value for '--days'"),
        (["simulate", "--days", "0"], "Invalid value for '--days'"),
        (["spend", "--config"], "Option '--config' requires an argument"),
    ],
)
def test_a_usage_mistake_exits_2_without_a_traceback(argv, problem, capsys):
    """Whichever click typer runs on (typer 0.29 carries its own copy), a usage error is the usage and one line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err.splitlines()[-1] and "Traceback" not in err


def test_dry_run_plans_but_changes_nothing(config, capsys):
    ticks(config, 16)  # just before the variants are launched
    engine = make_engine(f"sqlite:///{config.parent / 'db.sqlite'}")
    state_file = config.parent / "data" / "simulated-platform.json"
    before_state = state_file.read_bytes()
    with open_session(engine) as s:
        before = (len(s.exec(select(PlatformMutation)).all()), len(s.exec(select(AuditEvent)).all()))
    for _ in range(3):
        assert main(["tick", "--dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "dry run:" in out
    assert state_file.read_bytes() == before_state  # the platform saw nothing
    with open_session(engine) as s:
        after = (len(s.exec(select(PlatformMutation)).all()), len(s.exec(select(AuditEvent)).all()))
    assert after == before


def test_dry_run_lists_the_mutations_it_would_make(config, capsys):
    for _ in range(40):
        capsys.readouterr()
        assert main(["tick", "--dry-run", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        if "would:" in out:
            break
        ticks(config, 1)
    assert "would: " in out


def test_spend_shows_the_ledger(config, capsys):
    ticks(config, 22)
    capsys.readouterr()
    assert main(["spend", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "shop" in out and "test" in out and "credit" in out and "500.00" in out


def test_simulate_writes_json_and_images(tmp_path, capsys, scenario_file):
    out = tmp_path / "out"
    assert main(["simulate", "--scenario", str(scenario_file), "--out", str(out), "--days", "30", "-q"]) == 0
    import json

    result = json.loads((out / "result.json").read_text())
    assert result["days"] == 30 and result["campaigns"][0]["id"] == "shop"
    assert list((out / "gallery").rglob("*.png"))


def test_run_daemon_ticks_and_stops_gracefully_on_sigterm(config):
    env = {k: v for k, v in os.environ.items() if k not in ("CREATIVE_LOOP_DATABASE", "CREATIVE_LOOP_KILL_AT")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop", "run", "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    engine = make_engine(f"sqlite:///{config.parent / 'db.sqlite'}")
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and done < 3:
            time.sleep(0.5)
            try:
                with open_session(engine) as s:
                    done = len(s.exec(select(TickRun).where(TickRun.ok.is_not(None))).all())  # type: ignore[union-attr]
            except Exception:
                continue  # the daemon may still be migrating
        assert done >= 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "daemon stopped" in out
    with open_session(engine) as s:
        runs = s.exec(select(TickRun)).all()
        assert all(r.finished_at is not None for r in runs)  # the last tick finished before the exit
        spans = sorted((r.started_at, r.finished_at) for r in runs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # never overlapping


@pytest.mark.parametrize("argv", [["tick"], ["approve", "nope"], ["status"]])
def test_a_command_leaves_its_sqlite_database_closed(config: Path, argv: list[str]) -> None:
    """``creative-loop`` exits without a last garbage collection (``loop.cli.entry``); the engines it opened are
    still closed at exit, so SQLite folds its write-ahead log back in and no -wal/-shm file stays behind."""
    env = {k: v for k, v in os.environ.items() if k not in ("CREATIVE_LOOP_DATABASE", "CREATIVE_LOOP_KILL_AT")}
    for args in (["tick"], argv):  # the first tick creates the database
        proc = subprocess.run(
            [sys.executable, "-m", "loop", *args, "--config", str(config)], env=env, capture_output=True, text=True
        )
        assert proc.returncode in (0, 2), proc.stderr[-2000:]
    assert [p.name for p in config.parent.glob("db.sqlite-*")] == []  # no db.sqlite-wal, db.sqlite-shm
