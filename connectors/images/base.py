"""The image-generator seam: fast drafts for testing, a pro render for the winner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

TIERS = ("fast", "pro")


@dataclass(frozen=True)
class Brief:
    """What a variant must say: filled from the parent creative and the campaign."""

    headline: str
    message: str = ""
    brand_terms: tuple[str, ...] = ()
    prompt_template: str = ""
    # Options per attribute slot of the template (connectors.images.prompts); empty: the defaults.
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.attributes:
            from connectors.images.prompts import DEFAULT_ATTRIBUTES

            object.__setattr__(self, "attributes", dict(DEFAULT_ATTRIBUTES))


@dataclass
class Rendered:
    """A generated image and everything needed to render it again."""

    image: Image.Image
    tier: str
    seed: int
    recipe: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    model: str = ""
    generator: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class ImageGenerator(ABC):
    """A backend: ``ProceduralGenerator``, ``DiffusersGenerator``, ``GeminiGenerator``."""

    name: str = "generator"

    @abstractmethod
    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        """A fast-tier variant of ``source``; the same seed gives the same pixels."""

    @abstractmethod
    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        """The pro-tier render of a winning ``draft``: same composition, final size.

        Uses ``draft.seed`` and ``draft.recipe`` so it can be reproduced.
        """

    def model_for(self, tier: str) -> str:
        """The model name recorded on variants of ``tier``."""
        return self.name

    def traits(self, rendered: Rendered) -> dict[str, str]:
        """The named traits of a variant this backend made (``connectors.images.traits``)."""
        from connectors.images.traits import traits_for

        return traits_for(rendered.generator or self.name, rendered.recipe)
