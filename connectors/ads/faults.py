"""Injected platform faults, for the simulated platform (and any fake that wants them).

A :class:`FaultPlan` says how often a call fails and how: a timeout, a 5xx,
throttling (``RateLimited`` with a ``retry_after``), a slow response (the
call sleeps, then succeeds), and for mutations a partial batch (part of the
change applied, then an error) or a lost response (all of it applied, the
answer lost).  Draws come from the caller's seeded generator, so a run with
faults is as reproducible as one without.

    queue(*kinds)       script the next calls' faults (before any drawn at random)
    before(rng, what)   at the start of every call: may raise or sleep
    after(rng, what)    after a mutation was applied: may raise "lost response"
    partial(rng, n)     how many of a batch's n parts to apply before failing, or None
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from policies.errors import RateLimited, TransientError

KINDS = ("timeout", "5xx", "throttle", "slow", "partial", "lost")


@dataclass
class FaultPlan:
    """How often (``rate``, per call) and which faults (``kinds``, equally likely) to inject."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    slow_seconds: float = 0.05
    retry_after: float = 0.01
    sleep: Callable[[float], None] = time.sleep
    injected: Counter[str] = field(default_factory=Counter)
    _pending: str | None = field(default=None, init=False, repr=False)
    _queued: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"fault_rate: expected in [0, 1), got {self.rate}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds: expected some of {', '.join(KINDS)}, got {', '.join(self.kinds) or 'none'}")
        if self.slow_seconds < 0 or self.retry_after < 0:
            raise ValueError("slow_seconds, retry_after: expected >= 0")

    def queue(self, *kinds: str) -> None:
        """Script faults: the next calls that allow them fail with ``kinds``, in order, before any drawn one."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"fault kinds: expected some of {', '.join(KINDS)}, got {', '.join(sorted(unknown))}")
        self._queued.extend(kinds)

    def _draw(self, rng: np.random.Generator, allowed: tuple[str, ...]) -> str | None:
        if self._queued and self._queued[0] in allowed:
            kind = self._queued.pop(0)
            self.injected[kind] += 1
            return kind
        if not self.rate:
            return None
        kinds = [k for k in self.kinds if k in allowed]
        if rng.random() >= self.rate or not kinds:
            return None
        kind = kinds[int(rng.integers(len(kinds)))]
        self.injected[kind] += 1
        return kind

    def before(self, rng: np.random.Generator, what: str, mutation: bool = False) -> None:
        allowed = ("timeout", "5xx", "throttle", "slow") + (("partial", "lost") if mutation else ())
        kind = self._draw(rng, allowed)
        self._pending = kind if kind in ("partial", "lost") else None
        if kind == "timeout":
            raise TransientError(f"simulated platform: {what} timed out (injected)", kind="timeout")
        if kind == "5xx":
            raise TransientError(f"simulated platform: {what}: HTTP 503 (injected)", kind="5xx", status=503)
        if kind == "throttle":
            raise RateLimited(f"simulated platform: {what} throttled (injected)", retry_after=self.retry_after)
        if kind == "slow":
            self.sleep(self.slow_seconds)

    def partial(self, n: int) -> int | None:
        """For a batch of ``n`` parts whose call drew "partial": how many to apply first, else None."""
        if self._pending != "partial" or n < 1:
            return None
        return n // 2  # the call still fails (in after())

    def after(self, what: str) -> None:
        """After a mutation was applied: raise if its call drew "lost" (or "partial" with nothing to split)."""
        kind, self._pending = self._pending, None
        if kind == "lost":
            raise TransientError(f"simulated platform: {what}: response lost after it was applied (injected)")
        if kind == "partial":
            raise TransientError(f"simulated platform: {what}: failed part-way (injected)")
