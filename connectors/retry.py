"""Retries, declared once.

A frozen :class:`RetrySettings` says how often and how patiently to retry;
each backend says which of its exceptions are temporary (by raising our
``RateLimited``/``TransientError``, whose ``temporary`` flag is True).  A
``RateLimited`` error's ``retry_after`` wins over the computed backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from policies.errors import ConnectorError, RateLimited

T = TypeVar("T")


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 5
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    jitter: float = 0.5  # up to this many extra seconds, uniformly
    deadline: float = 300.0  # give up after this many seconds in total

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts: expected >= 1, got {self.attempts}")
        if min(self.backoff, self.max_backoff, self.jitter, self.deadline) < 0:
            raise ValueError("backoff, max_backoff, jitter, deadline: expected >= 0")


NO_WAIT = RetrySettings(backoff=0.0, max_backoff=0.0, jitter=0.0)


def _is_temporary(exc: BaseException) -> bool:
    return isinstance(exc, ConnectorError) and exc.temporary


def call_with_retry(
    fn: Callable[[], T],
    settings: RetrySettings = RetrySettings(),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Call ``fn``, retrying temporary connector errors per ``settings``."""
    backoff = tenacity.wait_exponential(multiplier=settings.backoff, max=settings.max_backoff)
    jitter = tenacity.wait_random(0, settings.jitter)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(float(exc.retry_after), settings.max_backoff or float(exc.retry_after))
        return float(backoff(state) + jitter(state))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            on_retry(state.outcome.exception(), state.upcoming_sleep)  # type: ignore[arg-type]

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.attempts) | tenacity.stop_after_delay(settings.deadline),
        wait=wait,
        retry=tenacity.retry_if_exception(_is_temporary),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
    return retrying(fn)
