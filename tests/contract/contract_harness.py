"""How the contract suite meets a backend: one harness per registered platform or generator.

The suite (``test_platform_contract.py``, ``test_generator_contract.py``) is
parametrised over the registries (``connectors.ads.registry.PLATFORMS``,
``connectors.images.registry.GENERATORS``).  A test module registers, beside
the backend, a *harness factory*: a generator function that builds the
backend against its fake (a loopback server, a temporary folder) and yields a
:class:`PlatformHarness` or :class:`GeneratorHarness`.  A backend registered
without a harness fails the suite (it has no way to be tested), so a new
backend passes by being registered and given one.

    @platform_harness("toy")
    def toy(request, tmp_path):
        ...
        yield PlatformHarness(...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.ads.base import AdPlatform
from connectors.ads.registry import PlatformContext
from connectors.images.base import GeneratorSettings, ImageGenerator
from policies.errors import ConnectorError

HarnessFactory = Callable[[pytest.FixtureRequest, Path], Iterator[Any]]


@dataclass
class PlatformHarness:
    """A platform under test and the levers its fake gives the suite."""

    platform: AdPlatform  # the object under test
    campaign: str  # a campaign whose main ad set has at least two active ads
    first_day: date  # the first day ``deliver`` is called for (consecutive days after it)
    deliver: Callable[[date], None]  # one day of delivery, visible to insights afterwards
    state: Callable[[], Any]  # everything the platform holds (objects, statuses, budgets), comparable with ==
    reopen: Callable[[], AdPlatform]  # a second object over the same account, with no memory of the first
    # Arm the platform's own kind of failure for its next call; the error the connector must raise for it.
    faults: dict[type[ConnectorError], Callable[[], None]]
    image: bytes  # an image the platform accepts for a test arm and a scaled ad
    context: PlatformContext  # what its registry line builds it from (settings, campaigns, secrets)
    page_rows: int | None = None  # rows per page of insights, where the fake pages them (set small)
    wait: Callable[[float], None] = lambda seconds: None  # let time pass for the platform (its clock, if it has one)


@dataclass
class GeneratorHarness:
    """A generator under test, the settings it was built from, and how to make it fail."""

    generator: ImageGenerator
    settings: GeneratorSettings
    broken: Callable[[], ImageGenerator] | None = None  # the backend failing its own way (None: it cannot)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Harness:
    name: str  # the registered backend
    factory: HarnessFactory
    marks: tuple[Any, ...] = ()
    variant: str = ""  # a second way to set the same backend up (the simulator's per-campaign layout)

    @property
    def id(self) -> str:
        return f"{self.name}[{self.variant}]" if self.variant else self.name


# backend name -> its harnesses (a backend may be set up more than one way)
PLATFORM_HARNESSES: dict[str, list[Harness]] = {}
GENERATOR_HARNESSES: dict[str, list[Harness]] = {}


def _register(into: dict[str, list[Harness]], name: str, marks: tuple[Any, ...], variant: str) -> Callable[[HarnessFactory], HarnessFactory]:  # fmt: skip
    def register(factory: HarnessFactory) -> HarnessFactory:
        kept = [h for h in into.get(name, []) if h.variant != variant]
        into[name] = [*kept, Harness(name, factory, marks, variant)]
        return factory

    return register


def platform_harness(name: str, *marks: Any, variant: str = "") -> Callable[[HarnessFactory], HarnessFactory]:
    """Register a harness factory of the registered platform ``name`` (``marks``: pytest marks)."""
    return _register(PLATFORM_HARNESSES, name, marks, variant)


def generator_harness(name: str, *marks: Any, variant: str = "") -> Callable[[HarnessFactory], HarnessFactory]:
    """Register a harness factory of the registered generator ``name``."""
    return _register(GENERATOR_HARNESSES, name, marks, variant)


def params(names: tuple[str, ...], harnesses: dict[str, list[Harness]]) -> list[Any]:
    """One pytest param per harness of every registered backend (a backend without one: a param that fails)."""
    out = []
    for name in names:
        found = harnesses.get(name)
        if not found:  # open_harness fails it, naming what to register
            out.append(pytest.param(name, "", id=name))
        out += [pytest.param(name, h.variant, marks=h.marks, id=h.id) for h in found or ()]
    return out


def open_harness(
    name: str, variant: str, harnesses: dict[str, list[Harness]], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Any]:
    harness = next((h for h in harnesses.get(name, []) if h.variant == variant), None)
    if harness is None:
        # A harness registers when its module is imported, and only conftest.py imports harness modules.
        kind = "generator" if harnesses is GENERATOR_HARNESSES else "platform"
        pytest.fail(
            f"{kind} {name!r} is registered but has no contract harness: decorate its harness factory with "
            f"@{kind}_harness({name!r}) (contract_harness.py) in a module that tests/contract/conftest.py imports"
        )
    yield from harness.factory(request, tmp_path)
