"""A toy image generator, registered from this test module the way a new backend is registered.

``SolidGenerator`` paints a flat colour (the seed's choice) with the brief's
headline; the pro render repaints the draft's colour at the final size.
Registering it is the whole integration: one registry line, which also names
its traits extractor (``traits=``), and a contract harness (``solid``).
Nothing in ``loop/`` or ``connectors/images/traits.py`` names it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_harness import GeneratorHarness, generator_harness
from PIL import Image, ImageDraw
from pydantic import Field

from connectors.images.base import Brief, GeneratorContext, GeneratorSettings, ImageGenerator, Rendered
from connectors.images.registry import GENERATORS, GeneratorEntry

COLOURS = {"red": (220, 38, 38), "blue": (37, 99, 235), "green": (22, 163, 74), "yellow": (234, 179, 8)}


class SolidSettings(GeneratorSettings):
    """The ``[solid]`` section."""

    draft_size: int = Field(128, ge=64, le=2048)  # pixels of a fast draft (square)
    pro_size: int = Field(512, ge=64, le=4096)  # pixels of the pro render


class SolidGenerator(ImageGenerator):
    name = "solid"

    def __init__(self, settings: SolidSettings) -> None:
        self.sizes = {"fast": settings.draft_size, "pro": settings.pro_size}

    @classmethod
    def from_context(cls, ctx: GeneratorContext) -> SolidGenerator:
        return cls(ctx.settings)

    def _render(self, brief: Brief, tier: str, seed: int, colour: str) -> Rendered:
        size = self.sizes[tier]
        image = Image.new("RGB", (size, size), COLOURS[colour])
        ImageDraw.Draw(image).text((size // 16, size // 2), brief.headline, fill=(255, 255, 255))
        return Rendered(image, tier, seed, {"attributes": {"colour": colour}}, brief.headline, self.model_for(tier),
                        self.name)  # fmt: skip

    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        return self._render(brief, "fast", seed, random.Random(seed).choice(sorted(COLOURS)))

    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        return self._render(brief, "pro", draft.seed, draft.recipe["attributes"]["colour"])


ENTRY = GENERATORS.register(
    GeneratorEntry(
        "solid", SolidSettings, SolidGenerator.from_context, traits="connectors.images.traits:prompt_traits",
        doc="tests/contract's toy generator",
    )
)  # fmt: skip


@generator_harness("solid")
def solid(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    settings = SolidSettings(draft_size=96, pro_size=160)
    yield GeneratorHarness(generator=ENTRY.build(GeneratorContext(settings=settings)), settings=settings)
