"""Traits: the named, documented properties of a variant, read from its recipe or its prompt.

A trait is a ``family = level`` pair with a small, fixed vocabulary per
family, so that variants can be compared by what they share ("every warm
grade", "every 4:5 crop").  Each generator has one extraction function,
named on the generator's registry line (``GeneratorEntry.traits``); it reads only what
the variant stores (``Creative.recipe``), so the traits of an old variant can
always be derived again.

Procedural variants (``connectors.images.procedural``), one level per family:

=============  =====================================================================
family         levels (how the recipe maps to them)
=============  =====================================================================
aspect         ``1:1`` ``4:5`` ``9:16`` ``1.91:1`` (the crop's aspect ratio)
zoom           ``wide`` (zoom < 1.1167) ``medium`` ``tight`` (zoom ≥ 1.2333): thirds
               of the recipe's 1.0–1.35 range
grade          ``none`` ``warm`` ``cool`` ``vivid`` ``muted`` (the colour grade)
brightness     ``dark`` (< 0.9833) ``neutral`` ``bright`` (≥ 1.0667): thirds of 0.9–1.15
contrast       ``low`` (< 1.0167) ``medium`` ``high`` (≥ 1.1333): thirds of 0.9–1.25
band           ``top`` ``bottom`` (where the headline band sits)
band_colour    ``dark`` ``white`` ``red`` ``blue`` ``green`` ``yellow`` (the band's colour)
cta            the call-to-action pill's text, e.g. ``Try it free``
=============  =====================================================================

Prompt-driven variants (``diffusers``, ``gemini``): the template's attribute
slots (``connectors.images.prompts``; by default ``palette``, ``setting``,
``subject`` and ``style``), one level per slot the template uses: the value
the variant's seed chose, as recorded in ``recipe["attributes"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.images.procedural import ASPECTS, CTAS, GRADES
from connectors.images.registry import GENERATORS

__all__ = [
    "PROCEDURAL_FAMILIES",
    "TraitFamily",
    "describe",
    "procedural_traits",
    "prompt_traits",
    "traits_for",
]

BAND_COLOURS = ("dark", "white", "red", "blue", "green", "yellow")  # procedural.BANDS, in order


@dataclass(frozen=True)
class TraitFamily:
    """A trait family: its levels and how a level reads in a sentence (``{value}`` is the level)."""

    name: str
    description: str
    levels: tuple[str, ...]
    phrase: str


def _thirds(value: float, lo: float, hi: float, names: tuple[str, str, str]) -> str:
    """The third of ``lo..hi`` that ``value`` falls in (the recipe draws it uniformly there)."""
    step = (hi - lo) / 3.0
    if value < lo + step:
        return names[0]
    return names[1] if value < lo + 2 * step else names[2]


PROCEDURAL_FAMILIES: dict[str, TraitFamily] = {
    f.name: f
    for f in (
        TraitFamily("aspect", "the crop's aspect ratio", tuple(ASPECTS), "{value} aspect"),
        TraitFamily("zoom", "how tightly the crop frames the artwork", ("wide", "medium", "tight"), "{value} crop"),
        TraitFamily("grade", "the colour grade", GRADES, "{value} grade"),
        TraitFamily("brightness", "the image's brightness", ("dark", "neutral", "bright"), "{value} image"),
        TraitFamily("contrast", "the image's contrast", ("low", "medium", "high"), "{value} contrast"),
        TraitFamily("band", "where the headline band sits", ("top", "bottom"), "headline band at the {value}"),
        TraitFamily("band_colour", "the headline band's colour", BAND_COLOURS, "{value} headline band"),
        TraitFamily("cta", "the call-to-action text", CTAS, "CTA “{value}”"),
    )
}


def procedural_traits(recipe: Mapping[str, Any]) -> dict[str, str]:
    """The traits of a procedural recipe (``procedural.make_recipe``); a recipe without a key lacks that trait."""
    out: dict[str, str] = {}
    if "aspect" in recipe:
        out["aspect"] = str(recipe["aspect"])
    if "zoom" in recipe:
        out["zoom"] = _thirds(float(recipe["zoom"]), 1.0, 1.35, ("wide", "medium", "tight"))
    if "grade" in recipe:
        out["grade"] = str(recipe["grade"])
    if "brightness" in recipe:
        out["brightness"] = _thirds(float(recipe["brightness"]), 0.9, 1.15, ("dark", "neutral", "bright"))
    if "contrast" in recipe:
        out["contrast"] = _thirds(float(recipe["contrast"]), 0.9, 1.25, ("low", "medium", "high"))
    if "band_at" in recipe:
        out["band"] = str(recipe["band_at"])
    if "band" in recipe and 0 <= int(recipe["band"]) < len(BAND_COLOURS):
        out["band_colour"] = BAND_COLOURS[int(recipe["band"])]
    if "cta" in recipe:
        out["cta"] = str(recipe["cta"])
    return out


def prompt_traits(recipe: Mapping[str, Any]) -> dict[str, str]:
    """The attribute slots a prompt-driven variant's seed filled (``recipe["attributes"]``)."""
    chosen = recipe.get("attributes")
    if not isinstance(chosen, Mapping):
        return {}
    return {str(k): str(v) for k, v in chosen.items()}


def traits_for(generator: str | None, recipe: Mapping[str, Any] | None) -> dict[str, str]:
    """The traits of a variant made by ``generator`` from ``recipe``; ``{}`` for an unknown generator.

    Every generator, built in or not, names its extractor on its registry line (``GeneratorEntry.traits``).
    """
    extract = GENERATORS.get(generator).traits_callable() if generator and generator in GENERATORS else None
    return extract(recipe or {}) if extract is not None else {}


def describe(family: str, value: str) -> str:
    """A trait as words: ``warm grade``, ``CTA “Try it free”``, ``palette “pastel colours”``."""
    known = PROCEDURAL_FAMILIES.get(family)
    if known is not None:
        if family == "grade" and value == "none":
            return "no colour grade"
        return known.phrase.format(value=value)
    return f"{family} “{value}”"
