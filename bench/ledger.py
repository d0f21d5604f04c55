"""The period ledger's cost with a year of entries, on SQLite and PostgreSQL.

    python bench/ledger.py [--reservations 10000] [--calls 200] [--pg URL | --no-pg]

Two campaigns with monthly caps and an account-wide monthly cap; each
reservation is settled (reserve + actual + release) on a day of 2025.  Times
the three period reads and writes a tick makes: ``Ledger.state`` (one cap in
one period), ``Ledger.window_caps`` (every cap a 7-day window touches) and
``Ledger.reserve_window`` (a 7-day window, split per period).  Prints
figures; never judges them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sqlmodel import Session  # noqa: E402

from storage.db import make_engine, migrate  # noqa: E402
from storage.ledger import Ledger  # noqa: E402
from storage.models import AccountCap, Campaign, LedgerEntry  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = date(2025, 1, 1)


def run(url: str, label: str, reservations: int, calls: int) -> None:
    engine = make_engine(url)
    migrate(engine)
    with Session(engine) as s:
        for cid in ("a", "b"):
            s.add(Campaign(id=cid, test_spend_cap_minor=10**9, credit_cap_minor=10**9, cap_period="month"))
        s.merge(AccountCap(id="account", monthly_cap_minor=2 * 10**9))
        s.commit()
        for i in range(reservations):
            day, cid = START + timedelta(days=i % 365), "ab"[i % 2]
            for kind in ("reserve", "actual", "release"):
                s.add(LedgerEntry(campaign_id=cid, account="test", kind=kind, key=f"k{i}", amount_minor=100, day=day))
        s.commit()
        ledger = Ledger(s)
        days = [START + timedelta(days=k % 365) for k in range(calls)]
        figures = {}
        t = time.perf_counter()
        for d in days:
            ledger.state("a", "test", d)
        figures["state"] = time.perf_counter() - t
        t = time.perf_counter()
        for d in days:
            ledger.window_caps("a", "test", d, 7)
        figures["window_caps (7 days)"] = time.perf_counter() - t
        t = time.perf_counter()
        for k, d in enumerate(days):
            ledger.reserve_window("a", "test", f"w{k}", 10, d, 7)
        s.commit()
        figures["reserve_window (7 days)"] = time.perf_counter() - t
    engine.dispose()
    cells = ", ".join(f"{name} {1000 * secs / calls:.2f} ms" for name, secs in figures.items())
    print(f"{label:<11} {3 * reservations} entries: {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reservations", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--pg", default=PG_DEFAULT)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/ledger.db", "SQLite", args.reservations, args.calls)
    if not args.no_pg:
        from loop_helpers import pg_schema

        with pg_schema(args.pg) as url:
            run(url, "PostgreSQL", args.reservations, args.calls)


if __name__ == "__main__":
    main()
