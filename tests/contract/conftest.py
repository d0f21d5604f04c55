"""The contract suite's fixtures: one harness per registered backend (see contract_harness.py).

The fakes live beside the tests of each connector (tests/meta, tests/google_ads,
tests/images); their folders join the import path here.  Importing
``contract_backends`` registers the built-in backends' harnesses, importing
``toy_platform`` and ``toy_generator`` registers a platform and a generator
(and their harnesses) the way a new backend would be registered: a harness
module that nothing here imports registers nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS, TESTS / "meta", TESTS / "google_ads", TESTS / "images"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import contract_backends  # noqa: E402, F401 (registers the built-in backends' harnesses)
import toy_generator  # noqa: E402, F401 (registers the toy generator and its harness)
import toy_platform  # noqa: E402, F401 (registers the toy platform and its harness)
from contract_harness import (  # noqa: E402
    GENERATOR_HARNESSES,
    PLATFORM_HARNESSES,
    GeneratorHarness,
    PlatformHarness,
    open_harness,
    params,
)
from images_helpers import tiny_model_dir_fixture  # noqa: E402, F401 (the tiny_model_dir fixture)

from connectors.ads.registry import PLATFORMS  # noqa: E402
from connectors.images.registry import GENERATORS  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    try:
        from google_tls import trusted_pair
    except ImportError:  # no cryptography/grpc: the Google Ads harness skips
        return
    # gRPC reads its trusted roots once per process, at the first TLS channel: trust the fake's certificate first.
    trusted_pair()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every registered backend, at collection time: a backend registered by a test module counts too.
    if "platform_name" in metafunc.fixturenames:
        metafunc.parametrize(("platform_name", "platform_variant"), params(PLATFORMS.names(), PLATFORM_HARNESSES))
    if "generator_name" in metafunc.fixturenames:
        metafunc.parametrize(("generator_name", "generator_variant"), params(GENERATORS.names(), GENERATOR_HARNESSES))


@pytest.fixture
def harness(
    platform_name: str, platform_variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[PlatformHarness]:
    yield from open_harness(platform_name, platform_variant, PLATFORM_HARNESSES, request, tmp_path)


@pytest.fixture
def gen_harness(
    generator_name: str, generator_variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[GeneratorHarness]:
    yield from open_harness(generator_name, generator_variant, GENERATOR_HARNESSES, request, tmp_path)
