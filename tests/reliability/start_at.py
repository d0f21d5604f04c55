"""Run ``creative-loop ARGS...`` at a given wall-clock time, with every import done before it.

    python tests/reliability/start_at.py UNIX_TIME run --config CFG

Two of these given the same time start their commands within about a
millisecond of each other (the imports, which take seconds, are behind them),
for the tests of daemons started together on a new database.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import apscheduler.jobstores.sqlalchemy  # noqa: E402,F401  (what `run` imports lazily)
import apscheduler.schedulers.blocking  # noqa: E402,F401

import loop.daemon  # noqa: E402,F401
import loop.experiments  # noqa: E402,F401
from loop.cli import main  # noqa: E402

if __name__ == "__main__":
    at = float(sys.argv[1])
    while (left := at - time.time()) > 0.002:
        time.sleep(left - 0.002)
    while time.time() < at:
        pass  # the last two milliseconds: spin
    sys.exit(main(sys.argv[2:]))
