"""Invalid arguments to the image backends, each with its clear error (no torch needed)."""

from __future__ import annotations

import pytest

from connectors.images import prompts
from connectors.images.base import Brief
from connectors.images.diffusers import DiffusersGenerator, TierSpec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ""}, "model: expected"),
        ({"steps": 0}, r"steps: expected >= 1, got 0"),
        ({"guidance": -1.0}, "guidance"),
        ({"width": 100}, r"size: expected multiples of 8, at least 64, got 100x512"),
        ({"height": 32}, "size"),
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.2}, "strength"),
        ({"mode": "video"}, "mode: expected one of img2img, text2img, got 'video'"),
        ({"steps": 1, "strength": 0.5}, r"steps x strength: expected >= 1 .* got 1 x 0.5"),
    ],
)
def test_tier_spec_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TierSpec(**{"model": "m", **kwargs})


def test_text2img_ignores_the_img2img_step_rule() -> None:
    assert TierSpec(model="m", steps=1, strength=0.3, mode="text2img").steps == 1


@pytest.mark.parametrize(("kwargs", "match"), [({"device": "tpu"}, "device"), ({"dtype": "int8"}, "dtype")])
def test_generator_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiffusersGenerator(fast=TierSpec(model="m"), pro=TierSpec(model="m"), **kwargs)


def test_prompt_fill_and_defaults() -> None:
    brief = Brief(headline="Hi", message="Big sale", brand_terms=("Acme", " shoes "))
    assert prompts.fill(brief, "fast", "{message} by {brand_terms} ({tier})") == "Big sale by Acme, shoes (fast)"
    # empty fields leave no dangling commas
    assert prompts.fill(Brief(headline="Hi"), "pro", "{headline}, {brand_terms}, studio") == "Hi, studio"
    assert prompts.fill(brief, "pro").startswith("award-winning advertising photograph, Big sale, Acme, shoes")
    # the brief's own template wins over the default
    assert prompts.fill(Brief(headline="Hi", prompt_template="{headline}!"), "fast") == "Hi!"


@pytest.mark.parametrize(
    ("template", "match"),
    [("{colour}", r"unknown placeholder \{colour\}"), ("{message", "prompt template"), ("{0}", "unknown placeholder")],
)
def test_prompt_template_rejects(template: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prompts.validate(template)


def test_prompt_unknown_tier() -> None:
    with pytest.raises(ValueError, match="tier"):
        prompts.fill(Brief(headline="x"), "ultra")
