"""Meta's rate-limit usage headers, and a gate that slows down before the limit.

Every Graph response (errors and batch items included) may carry::

    X-Business-Use-Case-Usage  {"<id>": [{"type": "ads_management", "call_count": 95,
                                "total_cputime": 20, "total_time": 20,
                                "estimated_time_to_regain_access": 0}]}   (minutes)
    X-App-Usage                {"call_count": 28, "total_cputime": 25, "total_time": 25}
    X-Ad-Account-Usage         {"acc_id_util_pct": 9.67, "reset_time_duration": 0}  (seconds)
    X-FB-Ads-Insights-Throttle {"app_id_util_pct": 0, "acc_id_util_pct": 0}

Percentages run 0-100 and Meta throttles at 100.  :class:`UsageGate` keeps
the highest percentage of the last response and, before each request:

- below ``slow_at`` (75 %): sends at once;
- between ``slow_at`` and ``pause_at`` (90 %): sleeps up to ``max_slow_delay``
  seconds, growing linearly with the usage;
- at or above ``pause_at``, or after a throttling error: pauses for
  ``max(pause, estimated time to regain access)``.  A pause no longer than
  ``max_inline_wait`` is slept through; a longer one raises ``RateLimited``
  *without sending*, so the loop's retry policy (or the next tick) waits
  instead of hammering Meta.

:class:`MeteredAdapter` is the ``requests`` transport that applies the gate to
every HTTP request the SDK makes (paging and report polling included), counts
the calls and reads the headers of every response.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter

from policies.errors import RateLimited

USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-ad-account-usage", "x-fb-ads-insights-throttle")
_PCT_KEYS = ("call_count", "total_cputime", "total_time", "acc_id_util_pct", "app_id_util_pct")


@dataclass(frozen=True)
class Usage:
    """The highest usage percentage in one response, and when access comes back."""

    pct: float
    regain_seconds: float = 0.0
    source: str = ""  # e.g. "x-business-use-case-usage:ads_management"


def _lower_headers(headers: Mapping[str, Any] | list[Any] | None) -> dict[str, str]:
    if not headers:
        return {}
    if isinstance(headers, list):  # inside a batch: [{"name": ..., "value": ...}]
        return {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in headers if isinstance(h, dict)}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def parse_usage(headers: Mapping[str, Any] | list[Any] | None) -> Usage | None:
    """The worst usage the headers report, or None when there are none (or none parse)."""
    h = _lower_headers(headers)
    best: Usage | None = None

    def consider(entry: Mapping[str, Any], source: str, regain: float) -> None:
        nonlocal best
        pct = max((_num(entry.get(k)) for k in _PCT_KEYS), default=0.0)
        if best is None or pct > best.pct or (pct == best.pct and regain > best.regain_seconds):
            best = Usage(pct, max(regain, best.regain_seconds if best else 0.0), source)
        elif regain > best.regain_seconds:
            best = Usage(best.pct, regain, best.source)

    for name in USAGE_HEADERS:
        raw = h.get(name)
        if not raw:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if name == "x-business-use-case-usage":
            for entries in doc.values():
                for entry in entries if isinstance(entries, list) else []:
                    if isinstance(entry, dict):
                        regain = _num(entry.get("estimated_time_to_regain_access")) * 60.0
                        consider(entry, f"{name}:{entry.get('type', '')}", regain)
        elif name == "x-ad-account-usage":
            consider(doc, name, _num(doc.get("reset_time_duration")))
        else:
            consider(doc, name, 0.0)
    return best


@dataclass(frozen=True)
class GateSettings:
    slow_at: float = 75.0
    pause_at: float = 90.0
    max_slow_delay: float = 2.0
    pause: float = 60.0
    max_inline_wait: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.slow_at < self.pause_at <= 100:
            raise ValueError(f"expected 0 <= slow_at < pause_at <= 100, got {self.slow_at}, {self.pause_at}")
        if min(self.max_slow_delay, self.pause, self.max_inline_wait) < 0:
            raise ValueError("max_slow_delay, pause, max_inline_wait: expected >= 0")


class UsageGate:
    """Decides, before each request, whether to send now, after a short sleep, or not at all."""

    def __init__(
        self,
        settings: GateSettings = GateSettings(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait
        self.last: Usage | None = None
        self.last_at = 0.0  # when ``last`` was read
        self.blocked_until = 0.0
        self._lock = threading.Lock()

    def observe(self, usage: Usage | None) -> None:
        if usage is None:
            # An answer without usage headers is no reading: keep no stale one (a throttled
            # answer's 100 % would otherwise slow every later call until a header came back).
            with self._lock:
                self.last = None
            return
        with self._lock:
            self.last = usage
            self.last_at = self.clock()
            if usage.pct >= self.settings.pause_at or usage.regain_seconds > 0:
                self._block(max(self.settings.pause if usage.pct >= self.settings.pause_at else 0.0,
                                usage.regain_seconds))  # fmt: skip

    def throttled(self, retry_after: float | None) -> None:
        """Meta answered with a throttling error: stop sending for a while."""
        with self._lock:
            self._block(max(self.settings.pause, retry_after or 0.0))

    def _block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)

    def delay(self) -> float:
        """Seconds to wait before the next request (0 when free to send)."""
        with self._lock:
            now = self.clock()
            if now < self.blocked_until:
                return self.blocked_until - now
            if self.last is not None and self.last_at <= self.blocked_until:
                self.last = None  # a reading from before a pause that has run out is stale
            s = self.settings
            pct = self.last.pct if self.last else 0.0
            if pct <= s.slow_at:
                return 0.0
            return s.max_slow_delay * min(1.0, (pct - s.slow_at) / (s.pause_at - s.slow_at))

    def before_send(self) -> None:
        wait = self.delay()
        if wait <= 0:
            return
        paused = self.clock() < self.blocked_until
        if paused and wait > self.settings.max_inline_wait:
            if self.on_wait:
                self.on_wait("refused", wait)
            raise RateLimited(
                f"Meta usage gate: usage at {self.last.pct if self.last else 100:.0f}% "
                f"({self.last.source if self.last else 'throttled'}); pausing {wait:.0f}s before the next call",
                retry_after=wait,
                gate=True,
            )
        if self.on_wait:
            self.on_wait("paused" if paused else "slowed", wait)
        self.sleep(wait)
        if paused:
            with self._lock:
                # The pause is over: let one request through to take a fresh reading.
                self.last = None


class MeteredAdapter(HTTPAdapter):
    """A ``requests`` transport: gate, count and read usage headers on every request.

    It also remembers, per thread, the method, status and content type of the
    last answer: the SDK reads an HTML error page as a success and then fails
    to parse it, and the error should still say "HTTP 502 text/html".
    """

    def __init__(self, gate: UsageGate, on_call: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.on_call = on_call
        self._local = threading.local()

    def last_response(self) -> tuple[str, int, str] | None:
        return getattr(self._local, "last", None)

    def forget(self) -> None:
        """Start a new call: an error the SDK raises before sending must not be blamed on an old answer."""
        self._local.last = None

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.gate.before_send()
        if self.on_call:
            self.on_call(request.method or "GET")
        self._local.last = None
        response = super().send(request, *args, **kwargs)
        ctype = str(response.headers.get("content-type", "")).split(";")[0].strip()
        self._local.last = (request.method or "GET", response.status_code, ctype)
        self.gate.observe(parse_usage(response.headers))
        return response
