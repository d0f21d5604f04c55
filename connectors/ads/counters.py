"""API counters a platform keeps in process until the loop stores them.

A connector counts what it sends (calls by method, rows read, throttling,
waits) with :meth:`ApiCounters.add`.  The tick drains the counts that are not
stored yet and writes them through its own session (``storage.counters``), so
no second connection ever writes to the database; counts it could not store
go back with :meth:`ApiCounters.restore` and come out of the next drain.
:meth:`ApiCounters.store_leftovers` writes what is left when a platform is
closed outside a tick.  Counters are telemetry: storing them never fails a call.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

log = logging.getLogger("creative_loop.platform")

CounterKey = tuple[str, tuple[tuple[str, str], ...]]
Counts = list[tuple[str, dict[str, str], float]]


def _key(name: str, labels: dict[str, str]) -> CounterKey:
    return name, tuple(sorted(labels.items()))


class ApiCounters:
    """Totals since the platform was made, and the part of them the loop has not stored yet (thread-safe)."""

    def __init__(self, platform: str, engine: Any = None) -> None:
        self.platform = platform  # the ``platform`` label of every stored count
        self.engine = engine  # only for store_leftovers(): the tick stores counts itself
        self.totals: defaultdict[CounterKey, float] = defaultdict(float)
        self._unflushed: defaultdict[CounterKey, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = _key(name, labels)
        with self._lock:
            self.totals[key] += amount
            self._unflushed[key] += amount

    def total(self, name: str, **labels: str) -> float:
        """The in-process total of one counter, over every label value not given."""
        with self._lock:
            return sum(
                v
                for (n, lbl), v in self.totals.items()
                if n == name and all(dict(lbl).get(k) == x for k, x in labels.items())
            )

    def drain(self) -> Counts:
        """The counts since the last drain, as ``(name, labels, amount)``, sorted."""
        with self._lock:
            pending, self._unflushed = self._unflushed, defaultdict(float)
        return [(name, dict(labels), amount) for (name, labels), amount in sorted(pending.items())]

    def restore(self, counts: Counts) -> None:
        """Take back drained counts that could not be stored: the next drain returns them again."""
        with self._lock:
            for name, labels, amount in counts:
                self._unflushed[_key(name, labels)] += amount

    def store_leftovers(self) -> None:
        """Store what no tick drained, when given an engine (a platform closed outside a tick)."""
        if self.engine is None:
            return
        pending = self.drain()
        if not pending:
            return
        from storage.counters import increment
        from storage.db import session as open_session

        try:
            with open_session(self.engine) as s:
                for name, labels, amount in pending:
                    increment(s, name, amount, platform=self.platform, **labels)
                s.commit()
        except Exception as exc:  # counters are telemetry: never fail over them
            self.restore(pending)
            log.warning("could not store the %s platform's API counters: %s", self.platform, exc)
