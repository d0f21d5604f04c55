"""The ImageGenerator contract, run against every registered generator (connectors/images/base.py states it).

Each test gets a :class:`GeneratorHarness` for one backend (``gen_harness``, parametrised over
``connectors.images.registry.GENERATORS``), built through its registry line.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from contract_harness import GeneratorHarness
from PIL import Image

from connectors.images.base import TIERS, Brief, ImageGenerator, Rendered
from connectors.images.registry import GENERATORS
from policies.errors import GenerationError

BRIEF = Brief(headline="Spring sale", message="Spring sale on running shoes", brand_terms=("Acme",))


def _source(size: int = 96) -> Image.Image:
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[: size // 2] = (37, 99, 235)
    arr[size // 2 :] = (250, 250, 250)
    arr[10:40, 20:70] = (220, 38, 38)
    return Image.fromarray(arr)


def _digest(img: Image.Image) -> str:
    return hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).hexdigest()


def _check(r: Rendered, gen: ImageGenerator, tier: str, seed: int) -> None:
    assert isinstance(r, Rendered) and isinstance(r.image, Image.Image)
    assert r.tier == tier and r.seed == seed and r.generator == gen.name
    assert r.model == gen.model_for(tier) and isinstance(r.prompt, str)
    assert r.image.width >= 64 and r.image.height >= 64
    json.dumps(r.recipe)  # stored with the variant: plain JSON, so it can be rendered again


def test_the_registry_line_names_the_backend(generator_name: str, gen_harness: GeneratorHarness) -> None:
    entry = GENERATORS.get(generator_name)
    gen = gen_harness.generator
    assert isinstance(gen, ImageGenerator) and gen.name == generator_name
    assert isinstance(gen_harness.settings, entry.settings) and entry.missing() == ""
    assert gen.can_inpaint == entry.inpaint  # fix chooses by the entry, calls through the interface


def test_fast_and_pro_renders_record_how_to_render_them_again(gen_harness: GeneratorHarness) -> None:
    gen = gen_harness.generator
    draft = gen.draft(_source(), BRIEF, seed=5)
    _check(draft, gen, "fast", 5)
    pro = gen.render_pro(_source(), draft, BRIEF)
    _check(pro, gen, "pro", 5)  # the pro render keeps the draft's seed


def test_the_same_seed_gives_the_same_pixels(gen_harness: GeneratorHarness) -> None:
    gen = gen_harness.generator
    a, b = gen.draft(_source(), BRIEF, seed=11), gen.draft(_source(), BRIEF, seed=11)
    assert _digest(a.image) == _digest(b.image) and a.recipe == b.recipe
    assert _digest(gen.render_pro(_source(), a, BRIEF).image) == _digest(gen.render_pro(_source(), b, BRIEF).image)


def test_tier_strengths_are_declared_and_match_the_settings(gen_harness: GeneratorHarness) -> None:
    gen = gen_harness.generator
    declared = gen_harness.settings.tier_strengths()
    for tier in TIERS:
        s = gen.strength(tier)
        assert s is None or 0.0 < s <= 1.0
        assert s == declared.get(tier)  # what a queued job knows without the backend is what it does


def test_inpaint_works_or_refuses_as_declared(gen_harness: GeneratorHarness) -> None:
    gen = gen_harness.generator
    image = _source(64)
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (16, 16, 48, 48))
    if not gen.can_inpaint:
        with pytest.raises(GenerationError, match="cannot inpaint") as err:
            gen.inpaint(image, mask, "a red sneaker", seed=3)
        assert err.value.refused
        return
    fixed = gen.inpaint(image, mask, "a red sneaker", seed=3)
    assert fixed.size == image.size and fixed.seed == 3 and fixed.generator == gen.name
    outside = np.asarray(mask) == 0
    assert (np.asarray(fixed.image.convert("RGB"))[outside] == np.asarray(image)[outside]).all()
    with pytest.raises(ValueError, match="mask"):
        gen.inpaint(image, Image.new("L", (32, 32), 255), "x", seed=1)  # check_inputs: expected vs got


def test_a_failure_is_a_generation_error(gen_harness: GeneratorHarness) -> None:
    if gen_harness.broken is None:
        pytest.skip(f"{gen_harness.generator.name} has no way to fail (no model, no service)")
    with pytest.raises(GenerationError):
        gen_harness.broken().draft(_source(), BRIEF, seed=1)


def test_a_variant_has_traits_and_its_pro_render_keeps_them(gen_harness: GeneratorHarness) -> None:
    """Every backend's variants carry traits (issue 17): ``connectors.images.traits`` reads them from the
    recipe by the generator's name, so a backend without an extractor there would have none."""
    from connectors.images.traits import traits_for

    gen = gen_harness.generator
    draft = gen.draft(_source(), BRIEF, seed=5)
    traits = traits_for(draft.generator, draft.recipe)
    assert traits and all(isinstance(k, str) and isinstance(v, str) and v for k, v in traits.items())
    pro = gen.render_pro(_source(), draft, BRIEF)
    assert traits_for(pro.generator, pro.recipe) == traits  # the winner is scaled as what was tested
