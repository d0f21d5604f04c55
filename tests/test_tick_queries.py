"""The tick's reads: a steady campaign tick reads each row it needs once (issue 14: small queries batched).

Counts statements through SQLAlchemy's ``before_cursor_execute`` on the real
loop over the simulated platform; nothing here measures time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from connectors.ads.scenario import Scenario
from loop.config import load_config
from loop.simulate import run_simulation

# One campaign, four live ads, no fatigue onset: every day after the first is a steady tick.
DAYS = 10
SCENARIO = {
    "seed": 3, "days": DAYS,
    "campaigns": [{
        "id": "steady", "daily_impressions": 8000, "cpm": 8.0, "test_daily_budget": 20.0,
        "test_spend_cap": 300.0, "fast_credit_cost": 0.02, "pro_credit_cost": 0.6, "credit_cap": 50.0,
        "creatives": [{"id": f"steady-a{a}", "ctr": 0.01 + 0.0005 * a} for a in range(4)],
    }],
}  # fmt: skip


def test_a_steady_campaign_tick_runs_no_select_twice(tmp_path: Path) -> None:
    statements: list[tuple[int, str, str]] = []
    day = [0]

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((day[0], " ".join(statement.split()), repr(parameters)))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        run_simulation(
            load_config(None), Scenario.model_validate(SCENARIO), out_dir=tmp_path,
            on_day=lambda i, n: day.__setitem__(0, i + 1),
        )  # fmt: skip
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    steady = range(3, DAYS)
    for d in steady:
        selects = Counter((s, p) for dd, s, p in statements if dd == d and s.startswith("SELECT"))
        assert selects, f"day {d}: no reads recorded"
        twice = [(s[-90:], p) for (s, p), n in selects.items() if n > 1]
        assert twice == [], f"day {d}: read more than once: {twice}"
    # and the campaign row in particular: once a day (the currency check and the sync share it)
    per_day = Counter(dd for dd, s, _ in statements if s.startswith("SELECT") and "FROM campaign WHERE" in s)
    assert all(per_day[d] == 1 for d in steady), per_day
