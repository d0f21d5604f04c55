"""Fixtures: a fake Google Ads API (gRPC over TLS) on loopback and a ``GoogleAdsPlatform`` pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ads_helpers import make_platform
from fake_ads import FakeGoogleAds, seed_account
from google_tls import trusted_pair

from connectors.google_ads import GoogleAdsPlatform


def pytest_configure(config: pytest.Config) -> None:
    # gRPC reads its trusted roots once per process, at the first TLS channel: trust the fake's certificate first.
    trusted_pair()


@pytest.fixture
def fake() -> Iterator[FakeGoogleAds]:
    with FakeGoogleAds() as f:
        yield f


@pytest.fixture
def ids(fake: FakeGoogleAds) -> dict[str, Any]:
    return seed_account(fake)


@pytest.fixture
def platform(fake: FakeGoogleAds, ids: dict[str, Any]) -> Iterator[GoogleAdsPlatform]:
    p = make_platform(fake, ids)
    yield p
    p.close()
