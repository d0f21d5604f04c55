"""The image generators the loop can use, by name: one line per backend.

``generator = "<name>"`` in ``[defaults]`` or a ``[[campaigns]]`` entry picks
one; its ``[<name>]`` section is validated with the entry's settings model,
and ``loop.app.make_generators`` builds it (``factory(GeneratorContext)``)
only when a campaign asks for it.  Adding a backend::

    GENERATORS.register(GeneratorEntry(
        "mygen", MyGenSettings, "connectors.images.mygen:MyGenGenerator.from_context",
        secrets=("api_key_env",), extra="mygen", requires=("mygen_sdk",), inpaint=False,
        traits="connectors.images.traits:prompt_traits",
    ))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.images.base import GeneratorContext, GeneratorSettings, ImageGenerator
from connectors.images.diffusers import DiffusersSettings
from connectors.images.gemini import GeminiSettings
from connectors.registry import Entry, Registry, load


@dataclass(frozen=True)
class GeneratorEntry(Entry):
    """A generator's registry line; ``inpaint`` says whether it can repaint a region (``creative-loop fix``).

    ``traits``: what reads its variants' traits from their stored recipe
    (``"module:attr"``, imported when first asked, or the function;
    ``connectors.images.traits.traits_for``); None: its variants have no traits.
    """

    inpaint: bool = False
    traits: str | Callable[[Mapping[str, Any]], dict[str, str]] | None = None

    def traits_callable(self) -> Callable[[Mapping[str, Any]], dict[str, str]] | None:
        return load(self.traits) if isinstance(self.traits, str) else self.traits

    def build(self, ctx: GeneratorContext) -> ImageGenerator:
        return self._build(ctx, ImageGenerator)


GENERATORS: Registry[GeneratorEntry] = Registry("generator")
GENERATORS.register(
    GeneratorEntry(
        "procedural", GeneratorSettings, "connectors.images.procedural:ProceduralGenerator.from_context",
        traits="connectors.images.traits:procedural_traits",
        doc="Pillow-only variants: free, deterministic per seed (always available)",
    )
)  # fmt: skip
GENERATORS.register(
    GeneratorEntry(
        "diffusers", DiffusersSettings, "connectors.images.diffusers:DiffusersGenerator.from_context",
        extra="diffusion", requires=("torch", "diffusers"), inpaint=True,
        traits="connectors.images.traits:prompt_traits",
        doc="local diffusion models: a turbo model drafts, a stronger one up-levels the winner",
    )
)  # fmt: skip
GENERATORS.register(
    GeneratorEntry(
        "gemini", GeminiSettings, "connectors.images.gemini:GeminiGenerator.from_context",
        secrets=("api_key_env",), extra="gemini", requires=("google.genai",), inpaint=True,
        traits="connectors.images.traits:prompt_traits",
        doc="Gemini image models (the Nano Banana tiers)",
    )
)  # fmt: skip

__all__ = ["GENERATORS", "GeneratorContext", "GeneratorEntry"]
