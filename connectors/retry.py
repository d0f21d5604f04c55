"""Retries, declared once.

A frozen :class:`RetrySettings` says how often and how patiently to retry;
each backend says which of its exceptions are temporary (by raising our
``RateLimited``/``TransientError``, whose ``temporary`` flag is True).  A
``RateLimited`` error's ``retry_after`` wins over the computed backoff.

Every retry logs one line (logger ``creative_loop.retry``): what is retried,
why (the error's code/subcode or HTTP status, and its message), the wait and
the attempt, e.g.::

    retrying LaunchTestArm cl:e1:v2 in 2.0 s (attempt 2 of 5): TransientError, HTTP 502: Meta create ad: ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from policies.errors import ConnectorError, RateLimited

T = TypeVar("T")

log = logging.getLogger("creative_loop.retry")


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


def describe(exc: BaseException) -> str:
    """Why a call failed, in one line: the class, Meta's code/subcode or the HTTP status, the message."""
    ctx = getattr(exc, "context", {}) or {}
    why = [type(exc).__name__]
    if ctx.get("code") is not None:
        why.append(f"code {ctx['code']}" + (f"/{ctx['subcode']}" if ctx.get("subcode") else ""))
    elif ctx.get("http_status"):
        why.append(f"HTTP {ctx['http_status']}")
    return f"{', '.join(why)}: {exc}"


def call_with_retry(
    fn: Callable[[], T],
    settings: RetrySettings = RetrySettings(),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[BaseException, float], None] | None = None,
    what: str = "",
) -> T:
    """Call ``fn``, retrying temporary connector errors per ``settings``; ``what`` names it in the log."""
    backoff = tenacity.wait_exponential(multiplier=settings.backoff, max=settings.max_backoff)
    jitter = tenacity.wait_random(0, settings.jitter)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(float(exc.retry_after), settings.max_backoff or float(exc.retry_after))
        return float(backoff(state) + jitter(state))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if state.outcome is None:
            return
        exc = state.outcome.exception()
        log.warning(
            "retrying %s in %.1f s (attempt %d of %d): %s",
            what or getattr(fn, "__qualname__", "call"), state.upcoming_sleep, state.attempt_number + 1,
            settings.attempts, describe(exc) if exc is not None else "no error",
        )  # fmt: skip
        if on_retry:
            on_retry(exc, state.upcoming_sleep)  # type: ignore[arg-type]

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.attempts) | tenacity.stop_after_delay(settings.deadline),
        wait=wait,
        retry=tenacity.retry_if_exception(_is_temporary),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
    return retrying(fn)
