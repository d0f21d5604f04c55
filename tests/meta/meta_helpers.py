"""Helpers for the Meta connector tests: a fake clock and a platform pointed at the fake Graph server."""

from __future__ import annotations

from typing import Any

from fake_graph import APP_SECRET, TOKEN, FakeGraph

from connectors.meta import MetaAdPlatform, MetaCampaign, MetaOptions
from connectors.meta.usage import GateSettings, UsageGate


class FakeClock:
    """A clock whose ``sleep`` advances it (and records the sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_platform(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock, **options: Any) -> MetaAdPlatform:
    """A platform on the fake server; ``gate``, ``timeout`` and ``counter_engine`` are popped, the rest are options."""
    gate_settings = options.pop("gate", GateSettings())
    timeout = options.pop("timeout", 5)
    counter_engine = options.pop("counter_engine", None)
    return MetaAdPlatform.connect(
        access_token=TOKEN,
        app_secret=APP_SECRET,
        app_id="app",
        graph_url=graph.base_url,
        timeout=timeout,
        counter_engine=counter_engine,
        trust_env=False,
        campaigns={"lead-gen": MetaCampaign("lead-gen", graph.account, ids["main"], ids["test"])},
        options=MetaOptions(**{"page_id": "5550001", "poll_interval": 1.0, **options}),
        gate=UsageGate(gate_settings, clock=clock, sleep=clock.sleep),
        clock=clock,
        sleep=clock.sleep,
    )
