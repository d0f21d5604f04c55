"""The API counters every counting platform shares (connectors.ads.counters)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from connectors.ads.counters import ApiCounters
from storage.counters import read_all
from storage.db import make_engine
from storage.db import session as open_session


def test_totals_by_label_drain_and_restore() -> None:
    c = ApiCounters("toy")
    c.add("calls", method="GET")
    c.add("calls", method="GET")
    c.add("calls", method="POST")
    c.add("rows", 40.0)
    assert c.total("calls") == 3 and c.total("calls", method="GET") == 2 and c.total("rows") == 40
    assert c.total("calls", method="PUT") == 0 and c.total("nothing") == 0
    drained = c.drain()
    assert drained == [("calls", {"method": "GET"}, 2.0), ("calls", {"method": "POST"}, 1.0), ("rows", {}, 40.0)]
    assert c.drain() == []
    c.restore(drained[:1])  # a tick that could not store them hands them back
    c.add("calls", method="GET")
    assert c.drain() == [("calls", {"method": "GET"}, 3.0)]
    assert c.total("calls", method="GET") == 3  # totals are never drained


def test_counts_from_many_threads_are_all_kept() -> None:
    c = ApiCounters("toy")

    def work() -> None:
        for _ in range(2000):
            c.add("calls", method="GET")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.total("calls") == 8000 and c.drain() == [("calls", {"method": "GET"}, 8000.0)]


def test_leftovers_are_stored_with_the_platform_label(sqlite_engine: Any) -> None:
    c = ApiCounters("toy", sqlite_engine)
    c.store_leftovers()  # nothing to store: nothing written
    c.add("calls", method="GET")
    c.store_leftovers()
    c.store_leftovers()  # drained: stored once
    with open_session(sqlite_engine) as s:
        assert [(r.name, r.labels, r.value) for r in read_all(s)] == [("calls", 'method="GET",platform="toy"', 1.0)]


def test_leftovers_that_cannot_be_stored_are_kept_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'not-migrated.db'}")  # no counter table
    c = ApiCounters("toy", engine)
    c.add("calls", method="GET")
    with caplog.at_level(logging.WARNING, logger="creative_loop.platform"):
        c.store_leftovers()  # never raises: counters are telemetry
    assert "could not store the toy platform's API counters" in caplog.text
    assert c.drain() == [("calls", {"method": "GET"}, 1.0)]
    engine.dispose()
