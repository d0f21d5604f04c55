"""Prompt templates: a per-campaign prompt library filled from the parent creative.

A template is a ``str.format`` string with these placeholders (all optional):

    {headline}     the parent creative's headline
    {message}      what the ad says (the parent's message)
    {brand_terms}  the campaign's brand terms, comma-separated
    {tier}         "fast" or "pro"

Templates live in the config (``prompt_template`` / ``pro_prompt_template``)
so a team can re-calibrate them when a model changes; every variant stores
the exact prompt it was made from.
"""

from __future__ import annotations

import string

from connectors.images.base import Brief

PLACEHOLDERS = ("headline", "message", "brand_terms", "tier")

DEFAULT_TEMPLATES = {
    "fast": "advertising photograph, {message}, {brand_terms}, clean composition, bold colours, sharp focus",
    "pro": "award-winning advertising photograph, {message}, {brand_terms}, studio lighting, "
    "highly detailed, crisp, professional colour grade",
}
DEFAULT_NEGATIVE = "blurry, low quality, distorted text, watermark, extra fingers"


def validate(template: str) -> str:
    """Return ``template`` if every placeholder is known; ValueError naming the bad one otherwise."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"prompt template {template!r}: {exc}") from None
    for name in fields:
        if name not in PLACEHOLDERS:
            raise ValueError(
                f"prompt template: unknown placeholder {{{name}}} (allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
    return template


def fill(brief: Brief, tier: str, template: str = "") -> str:
    """The prompt for ``brief`` at ``tier``: ``template``, else the brief's, else the tier's default."""
    if tier not in DEFAULT_TEMPLATES:
        raise ValueError(f"tier: expected one of {', '.join(DEFAULT_TEMPLATES)}, got {tier!r}")
    chosen = validate(template or brief.prompt_template or DEFAULT_TEMPLATES[tier])
    values = {
        "headline": brief.headline.strip(),
        "message": (brief.message or brief.headline).strip(),
        "brand_terms": ", ".join(t.strip() for t in brief.brand_terms if t.strip()),
        "tier": tier,
    }
    text = chosen.format(**values)
    # Empty fields leave ", ," runs behind: tidy them so the stored prompt reads cleanly.
    parts = [p.strip() for p in text.split(",")]
    return ", ".join(p for p in parts if p)
