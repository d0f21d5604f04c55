"""Fixtures: a fake Graph API server on loopback and a ``MetaAdPlatform`` pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_graph import FakeGraph, seed_account
from meta_helpers import FakeClock, make_platform

from connectors.meta import MetaAdPlatform


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as g:
        yield g


@pytest.fixture
def ids(graph: FakeGraph) -> dict[str, Any]:
    return seed_account(graph)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def platform(graph: FakeGraph, ids: dict[str, Any], clock: FakeClock) -> Iterator[MetaAdPlatform]:
    p = make_platform(graph, ids, clock)
    yield p
    p.close()
