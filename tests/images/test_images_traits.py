"""Traits from each generator's recipe or prompt (connectors.images.traits, prompts' attribute slots)."""

from __future__ import annotations

import pytest
from PIL import Image

from connectors.images.base import Brief
from connectors.images.procedural import ProceduralGenerator, make_recipe
from connectors.images.prompts import DEFAULT_ATTRIBUTES, choose_attributes, fill, validate
from connectors.images.traits import PROCEDURAL_FAMILIES, describe, procedural_traits, prompt_traits, traits_for


def test_every_procedural_recipe_has_one_documented_level_per_family() -> None:
    seen: dict[str, set[str]] = {f: set() for f in PROCEDURAL_FAMILIES}
    for seed in range(400):
        traits = procedural_traits(make_recipe(seed))
        assert set(traits) == set(PROCEDURAL_FAMILIES)
        for family, level in traits.items():
            assert level in PROCEDURAL_FAMILIES[family].levels, (family, level)
            seen[family].add(level)
    # Levels are spread over the recipe's ranges: 400 seeds reach every one of them.
    assert all(seen[f] == set(PROCEDURAL_FAMILIES[f].levels) for f in seen), seen


@pytest.mark.parametrize(
    ("key", "value", "family", "level"),
    [
        ("zoom", 1.0, "zoom", "wide"),
        ("zoom", 1.1166, "zoom", "wide"),
        ("zoom", 1.1167, "zoom", "medium"),
        ("zoom", 1.35, "zoom", "tight"),
        ("brightness", 0.98, "brightness", "dark"),
        ("brightness", 1.07, "brightness", "bright"),
        ("contrast", 1.0, "contrast", "low"),
        ("contrast", 1.2, "contrast", "high"),
        ("band", 2, "band_colour", "red"),
        ("band_at", "top", "band", "top"),
    ],
)
def test_procedural_buckets(key: str, value: object, family: str, level: str) -> None:
    assert procedural_traits({key: value})[family] == level


def test_the_procedural_generator_stores_its_traits_and_the_pro_render_keeps_them() -> None:
    gen = ProceduralGenerator(draft_width=64, pro_width=96)
    source = Image.new("RGB", (120, 120), (30, 60, 90))
    draft = gen.draft(source, Brief(headline="Hi"), seed=12)
    pro = gen.render_pro(source, draft, Brief(headline="Hi"))
    assert draft.generator == pro.generator == "procedural"
    assert traits_for(draft.generator, draft.recipe) == procedural_traits(make_recipe(12))
    assert traits_for(pro.generator, pro.recipe) == procedural_traits(make_recipe(12))


def test_prompt_traits_are_the_attributes_the_seed_chose() -> None:
    brief = Brief(headline="Sale")
    chosen = choose_attributes(brief, seed=3)
    assert set(chosen) == {"subject", "setting", "palette", "style"}
    assert all(chosen[s] in DEFAULT_ATTRIBUTES[s] for s in chosen)
    assert choose_attributes(brief, seed=3) == chosen  # deterministic
    prompt = fill(brief, "fast", attributes=chosen)
    assert all(value in prompt for value in chosen.values())
    assert prompt_traits({"attributes": chosen}) == chosen == traits_for("diffusers", {"attributes": chosen})
    assert traits_for("gemini", {"mode": "edit"}) == {} and traits_for("someone-else", {"attributes": chosen}) == {}


def test_each_slot_is_chosen_on_its_own() -> None:
    """Adding a slot to a template leaves the other slots' choices as they were."""
    narrow = Brief(headline="x", prompt_template="{palette} ad")
    wide = Brief(headline="x", prompt_template="{palette} ad, {style}")
    for seed in range(20):
        assert choose_attributes(narrow, seed)["palette"] == choose_attributes(wide, seed)["palette"]
    assert set(choose_attributes(narrow, 1)) == {"palette"}


def test_custom_attribute_slots() -> None:
    brief = Brief(headline="x", prompt_template="{mood} photo of {message}", attributes={"mood": ("calm", "bold $x$")})
    chosen = choose_attributes(brief, seed=5)
    assert set(chosen) == {"mood"} and chosen["mood"] in ("calm", "bold $x$")
    assert fill(brief, "fast", attributes=chosen) == f"{chosen['mood']} photo of x"
    assert validate("{mood}", ["mood"]) == "{mood}"
    with pytest.raises(ValueError, match=r"unknown placeholder \{mood\}"):
        validate("{mood}")
    # A template without slots has no attributes, so its variants carry no prompt traits.
    assert choose_attributes(Brief(headline="x", prompt_template="{message}"), seed=1) == {}


def test_trait_sentences() -> None:
    assert describe("grade", "warm") == "warm grade"
    assert describe("grade", "none") == "no colour grade"
    assert describe("cta", "Try it free") == "CTA “Try it free”"
    assert describe("band", "top") == "headline band at the top"
    assert describe("palette", "pastel colours") == "palette “pastel colours”"


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[defaults]\nprompt_attributes = { Mood = ["x"] }\n', "defaults.prompt_attributes", "lower-case name"),
        ("[defaults]\nprompt_attributes = { mood = [] }\n", "defaults.prompt_attributes", "1 to 50 options"),
        ('[defaults]\nprompt_attributes = { mood = ["{x}"] }\n', "defaults.prompt_attributes", "without braces"),
        ('[defaults]\nprompt_attributes = { mood = ["a", "a"] }\n', "defaults.prompt_attributes", "unique"),
        ('[defaults]\nprompt_attributes = { message = ["a"] }\n', "defaults.prompt_attributes", "other than"),
        ('[defaults]\nprompt_template = "{mood} ad"\n', "defaults.prompt_template", "unknown placeholder {mood}"),
        ('[defaults]\nselection = "best"\n', "defaults.selection", "model"),
        ("[defaults]\ndrafts = 1\n", "defaults.drafts", "greater than or equal to 2"),
    ],
)
def test_config_rejects_bad_attributes_and_selection(tmp_path, toml: str, key: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    from loop.config import load_config
    from policies.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and problem in info.value.problem, (info.value.key, info.value.problem)


def test_config_accepts_a_custom_slot_in_its_template(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from loop.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[defaults]\nprompt_attributes = { mood = ["calm", "bold"] }\nprompt_template = "{mood} ad"\n')
    s = load_config(path).campaign_settings("x")
    assert s.prompt_attributes == {"mood": ("calm", "bold")} and s.prompt_template == "{mood} ad"


def test_a_generator_names_its_traits_on_its_registry_line() -> None:
    """A new backend is a folder and one registry line: its extractor is named there, not added to traits.py."""
    from connectors.images.base import GeneratorSettings
    from connectors.images.registry import GENERATORS, GeneratorEntry

    chosen = {"colour": "red"}
    entry = GeneratorEntry("lined", GeneratorSettings, "x.y:z", traits="connectors.images.traits:prompt_traits")
    with GENERATORS.registered(entry):
        assert traits_for("lined", {"attributes": chosen}) == chosen
        direct = GeneratorEntry("direct", GeneratorSettings, "x.y:z", traits=lambda recipe: {"shape": recipe["shape"]})
        with GENERATORS.registered(direct):
            assert traits_for("direct", {"shape": "round"}) == {"shape": "round"}
    assert traits_for("lined", {"attributes": chosen}) == {}  # unregistered: no traits
