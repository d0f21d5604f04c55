"""The image-generator seam: fast drafts for testing, a pro render for the winner.

``ImageGenerator`` is the one interface the loop asks: ``draft``, ``render_pro``,
``model_for``, ``strength`` (a tier's img2img strength) and ``inpaint`` (which
refuses unless the backend says ``can_inpaint``).  ``GeneratorSettings`` is the
base of a backend's config section (``connectors.images.registry``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from connectors.registry import no_secrets
from connectors.settings import Settings
from policies.errors import GenerationError

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


class GeneratorSettings(Settings):
    """A generator's section of the config file (``[diffusers]``, ``[gemini]``); every key has a default."""

    def tier_strengths(self) -> dict[str, float]:
        """The img2img strength of each tier these settings give the backend (none by default).

        Known without building the backend, so a process that only queues
        generation jobs (``loop.tasks``) can still lower a strength on retry.
        """
        return {}


class ImageGenerator(ABC):
    """A backend: ``ProceduralGenerator``, ``DiffusersGenerator``, ``GeminiGenerator``."""

    name: str = "generator"
    # Whether inpaint() repaints (True) or refuses with a GenerationError (the default).
    can_inpaint: bool = False
    # How many drafts the loop may ask for at once, from as many threads (1: one at a time, the default).
    # Only a backend whose draft() and render_pro() are safe to call from several threads raises it.
    concurrency: int = 1

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

    def strength(self, tier: str) -> float | None:
        """How far a render of ``tier`` may move from its input image (img2img strength, in (0, 1]).

        None: the backend has no such setting (nothing to lower when a pro
        render strays from its draft).  A render honours a lower one passed in
        ``draft.recipe["pro_strength"]``.
        """
        return None

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int, tier: str = "pro") -> Rendered:
        """Repaint the white part of ``mask`` in ``image``; every pixel outside it stays bit-exact.

        ``mask`` has ``image``'s size (``ValueError`` otherwise).  The default
        refuses: a backend that can repaint sets ``can_inpaint`` and overrides this.
        """
        raise GenerationError(f"generator {self.name!r} cannot inpaint", refused=True, generator=self.name)


@dataclass(frozen=True)
class GeneratorContext:
    """What the loop hands a generator's factory: its settings and a way to read its secrets."""

    settings: Any  # the entry's settings model, validated from the backend's config section
    # secret("api_key_env") -> the value of the environment variable that field names (connectors.registry.EnvSecrets)
    secret: Callable[..., str] = no_secrets
    source: str = "config"  # the config file, for ConfigError lines
