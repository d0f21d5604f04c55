"""Prompt templates: a per-campaign prompt library filled from the parent creative.

A template is a ``str.format`` string with these placeholders (all optional):

    {headline}     the parent creative's headline
    {message}      what the ad says (the parent's message)
    {brand_terms}  the campaign's brand terms, comma-separated
    {tier}         "fast" or "pro"

and *attribute slots*: a slot such as ``{palette}`` is filled with one of its
options (``prompt_attributes`` in the config; :data:`DEFAULT_ATTRIBUTES`
otherwise), chosen by the variant's seed.  The chosen options are recorded in
the variant's recipe (``recipe["attributes"]``), the pro render of a winner
reuses them, and they are the variant's traits (``connectors.images.traits``):
what the loop learns from ("pastel colours win for this account").

Templates live in the config (``prompt_template`` / ``pro_prompt_template``)
so a team can re-calibrate them when a model changes; every variant stores
the exact prompt it was made from.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Mapping, Sequence

from connectors.images.base import Brief

PLACEHOLDERS = ("headline", "message", "brand_terms", "tier")

# Attribute slots and their options: each option is a phrase that reads on its own in a prompt.
DEFAULT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "subject": ("product close-up", "person using the product", "flat lay of the product"),
    "setting": ("studio backdrop", "outdoors in daylight", "cosy home interior", "city street"),
    "palette": ("warm colour palette", "cool colour palette", "pastel colours", "bold primary colours", "monochrome"),
    "style": ("photorealistic", "flat illustration", "minimalist", "cinematic lighting"),
}

DEFAULT_TEMPLATES = {
    "fast": "advertising photograph, {message}, {brand_terms}, {subject}, {setting}, {palette}, {style}, "
    "clean composition, sharp focus",
    "pro": "award-winning advertising photograph, {message}, {brand_terms}, {subject}, {setting}, {palette}, "
    "{style}, studio lighting, highly detailed, crisp, professional colour grade",
}
DEFAULT_NEGATIVE = "blurry, low quality, distorted text, watermark, extra fingers"


def _fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"prompt template {template!r}: {exc}") from None


def validate(template: str, slots: Sequence[str] | None = None) -> str:
    """Return ``template`` if every placeholder is known; ValueError naming the bad one otherwise.

    ``slots`` are the attribute slots that may appear (default: :data:`DEFAULT_ATTRIBUTES`).
    """
    allowed = (*PLACEHOLDERS, *(DEFAULT_ATTRIBUTES if slots is None else slots))
    for name in _fields(template):
        if name not in allowed:
            raise ValueError(
                f"prompt template: unknown placeholder {{{name}}} (allowed: {', '.join('{' + p + '}' for p in allowed)})"
            )
    return template


def slots_in(template: str) -> list[str]:
    """The attribute slots ``template`` uses, in order (placeholders that are not fixed ones)."""
    return list(dict.fromkeys(f for f in _fields(template) if f not in PLACEHOLDERS))


def template_for(brief: Brief, tier: str, template: str = "") -> str:
    """``template``, else the brief's, else the tier's default."""
    if tier not in DEFAULT_TEMPLATES:
        raise ValueError(f"tier: expected one of {', '.join(DEFAULT_TEMPLATES)}, got {tier!r}")
    return template or brief.prompt_template or DEFAULT_TEMPLATES[tier]


def choose_attributes(brief: Brief, seed: int, template: str = "", tier: str = "fast") -> dict[str, str]:
    """One option per attribute slot the template uses, chosen by ``seed`` (each slot on its own hash).

    A slot without options in the brief is left out (it fills as empty); a brief
    without attributes takes :data:`DEFAULT_ATTRIBUTES`.
    """
    options: Mapping[str, Sequence[str]] = brief.attributes or DEFAULT_ATTRIBUTES
    chosen: dict[str, str] = {}
    for slot in slots_in(template_for(brief, tier, template)):
        values = list(options.get(slot) or ())
        if values:
            # Per slot, so that adding a slot to the template leaves the others' choices alone.
            chosen[slot] = str(values[zlib.crc32(repr(("attribute", int(seed), slot)).encode()) % len(values)])
    return chosen


def fill(brief: Brief, tier: str, template: str = "", attributes: Mapping[str, str] | None = None) -> str:
    """The prompt for ``brief`` at ``tier``: ``template``, else the brief's, else the tier's default.

    ``attributes`` fill the template's attribute slots (:func:`choose_attributes`); a slot
    without a value fills as empty.
    """
    chosen = template_for(brief, tier, template)
    validate(chosen, [*DEFAULT_ATTRIBUTES, *brief.attributes, *(attributes or {})])
    values = {slot: str((attributes or {}).get(slot, "")).strip() for slot in slots_in(chosen)}
    values.update(
        headline=brief.headline.strip(),
        message=(brief.message or brief.headline).strip(),
        brand_terms=", ".join(t.strip() for t in brief.brand_terms if t.strip()),
        tier=tier,
    )
    text = chosen.format(**values)
    # Empty fields leave ", ," runs behind: tidy them so the stored prompt reads cleanly.
    parts = [p.strip() for p in text.split(",")]
    return ", ".join(p for p in parts if p)
