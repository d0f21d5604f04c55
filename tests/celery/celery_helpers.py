"""Helpers for the Celery tests: configs, worker processes, end-state snapshots."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[2]

# Three campaigns whose hero creatives wear out early, so that a short run
# goes through detection, generation, testing, a decision and a pro render.
SCENARIO = """
seed = 23
days = 40
[variants]
lift_mu = 0.0
lift_sigma = 0.35
pro_lift = 0.10
"""
CAMPAIGN = """
[[campaigns]]
id = "{id}"
daily_impressions = 30000
cpm = 8.0
test_daily_budget = 80.0
test_spend_cap = {cap}
fast_credit_cost = 0.02
pro_credit_cost = 0.60
credit_cap = 5.0

[[campaigns.creatives]]
id = "{id}-hero"
ctr = 0.02
fatigue_onset_day = {onset}
fatigue_decay_per_day = 0.10
headline = "Fresh deals"

[[campaigns.creatives]]
id = "{id}-steady"
ctr = 0.012
"""


def scenario_text(campaigns: int) -> str:
    parts = [SCENARIO]
    for i in range(campaigns):
        # Test caps that fund a two-arm test plan within max_test_days.
        parts.append(CAMPAIGN.format(id=f"c{i}", onset=4 + i % 3, cap=600.0 + 100 * (i % 2)))
    return "".join(parts)


def write_config(
    path: Path, *, data_dir: Path, scenario: Path, executor: str, broker: str, backend: str, prefix: str, **celery: Any
) -> Path:
    extra = "".join(f"{k} = {v!r}\n" for k, v in celery.items())
    path.write_text(
        f"""
[loop]
database = "sqlite:///unused.db"
data_dir = "{data_dir}"
approval = "none"
executor = "{executor}"

[defaults]
variants = 4
drafts = 4
min_impressions_per_arm = 1000
burn_in_impressions = 500
max_test_days = 6

[simulated]
scenario = "{scenario}"
layout = "per-campaign"

[celery]
broker_url = "{broker}"
result_backend = "{backend}"
queue_prefix = "{prefix}"
{extra}"""
    )
    return path


def two_campaign_config(tmp_path: Path, *, data_dir: Path, broker: str, prefix: str, **celery: Any) -> Path:
    """A two-campaign scenario and a Celery config over it (Redis as broker and result backend)."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(scenario_text(2))
    return write_config(
        tmp_path / "celery.toml", data_dir=data_dir, scenario=scenario, executor="celery", broker=broker,
        backend=broker, prefix=prefix, **celery,
    )  # fmt: skip


class Worker:
    """A ``creative-loop worker`` subprocess in its own process group."""

    def __init__(
        self, config: Path, database: str, queues: str, pool: str, log: Path, env: dict[str, str] | None = None
    ):
        self.log = log
        self._out = log.open("ab")
        full_env = {**os.environ, "CREATIVE_LOOP_DATABASE": database, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loop", "worker", "--config", str(config), "--queues", queues,
             "--pool", pool, "--concurrency", "1", "--loglevel", "INFO"],
            cwd=ROOT, env=full_env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children of a prefork pool too
        self.proc.wait(timeout=10)
        self._out.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The decisions, money and platform effects of a run, without timestamps or row ids."""
    queries = {
        "experiments": "SELECT id, campaign_id, state, reason, winner_creative_id, pro_creative_id, "
        "scaled_creative_id, detected_on, testing_started_on, decided_on FROM experiment ORDER BY id",
        "decisions": "SELECT experiment_id, day, seed, weights, prob_best, budgets_minor FROM banditdecision "
        "ORDER BY experiment_id, day",
        "ledger": "SELECT campaign_id, account, kind, key, amount_minor FROM ledgerentry ORDER BY key, kind",
        "mutations": "SELECT key, kind, status, result FROM platformmutation ORDER BY key",
        "creatives": "SELECT id, role, status, platform_ad_id, image_hash, seed, tier FROM creative ORDER BY id",
        "metrics": "SELECT creative_id, day, impressions, clicks, spend_minor FROM dailymetric "
        "ORDER BY creative_id, day",
        "events": "SELECT campaign_id, experiment_id, name, count(*) FROM auditevent "
        "GROUP BY campaign_id, experiment_id, name ORDER BY campaign_id, experiment_id, name",
    }
    out = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            out[name] = [tuple(str(v) for v in row) for row in conn.execute(text(sql)).all()]
    return out
