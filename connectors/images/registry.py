"""The image generators the loop can use, by name: one line per backend.

``generator = "<name>"`` in ``[defaults]`` or a ``[[campaigns]]`` entry picks
one; its ``[<name>]`` section is validated with the entry's settings model,
and ``loop.app.make_generators`` builds it (``factory(GeneratorContext)``)
only when a campaign asks for it.  Adding a backend::

    GENERATORS.register(GeneratorEntry(
        "mygen", MyGenSettings, "connectors.images.mygen:MyGenGenerator.from_context",
        secrets=("api_key_env",), extra="mygen", requires=("mygen_sdk",), inpaint=False,
    ))
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.images.base import GeneratorContext, GeneratorSettings, ImageGenerator
from connectors.images.diffusers import DiffusersSettings
from connectors.images.gemini import GeminiSettings
from connectors.registry import Entry, Registry


@dataclass(frozen=True)
class GeneratorEntry(Entry):
    """A generator's registry line; ``inpaint`` says whether it can repaint a region (``creative-loop fix``)."""

    inpaint: bool = False

    def build(self, ctx: GeneratorContext) -> ImageGenerator:
        return self._build(ctx, ImageGenerator)


GENERATORS: Registry[GeneratorEntry] = Registry("generator")
GENERATORS.register(
    GeneratorEntry(
        "procedural", GeneratorSettings, "connectors.images.procedural:ProceduralGenerator.from_context",
        doc="Pillow-only variants: free, deterministic per seed (always available)",
    )
)  # fmt: skip
GENERATORS.register(
    GeneratorEntry(
        "diffusers", DiffusersSettings, "connectors.images.diffusers:DiffusersGenerator.from_context",
        extra="diffusion", requires=("torch", "diffusers"), inpaint=True,
        doc="local diffusion models: a turbo model drafts, a stronger one up-levels the winner",
    )
)  # fmt: skip
GENERATORS.register(
    GeneratorEntry(
        "gemini", GeminiSettings, "connectors.images.gemini:GeminiGenerator.from_context",
        secrets=("api_key_env",), extra="gemini", requires=("google.genai",), inpaint=True,
        doc="Gemini image models (the Nano Banana tiers)",
    )
)  # fmt: skip

__all__ = ["GENERATORS", "GeneratorContext", "GeneratorEntry"]
