"""Image settings in the config: validation errors name the key; backends are built only when asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.app import make_generators
from loop.config import load_config
from policies.errors import ConfigError


def _cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "creative-loop.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[defaults]\nbrand_palette = ["#12345"]', "defaults.brand_palette", "hex code"),
        ('[defaults]\nbrand_action = "paint"', "defaults.brand_action", "flag"),
        ('[defaults]\nprompt_template = "{colour} ad"', "defaults.prompt_template", "unknown placeholder {colour}"),
        ("[defaults]\nfidelity_threshold = 2", "defaults.fidelity_threshold", "less than or equal to 1"),
        ("[diffusers]\nfast_steps = 1\nfast_strength = 0.5", "diffusers", "steps x strength: expected >= 1"),
        ("[diffusers]\npro_size = [1000, 1001]", "diffusers", "multiples of 8"),
        ('[gemini]\napi_key = "secret"', "gemini.api_key", "unknown key"),
        ('[[campaigns]]\nid = "a"\nbrand_tolerance = 0', "campaigns[0].brand_tolerance", "greater than 0"),
    ],
)
def test_bad_image_settings_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = _cfg(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and problem in info.value.problem and info.value.file == str(path)


def test_only_procedural_by_default() -> None:
    assert set(make_generators(load_config())) == {"procedural"}


def test_gemini_needs_its_key_from_the_named_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.genai")
    path = _cfg(tmp_path, '[[campaigns]]\nid = "a"\ngenerator = "gemini"\n[gemini]\napi_key_env = "MY_GEMINI_KEY"\n')
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_GEMINI_KEY is not set"):
        make_generators(load_config(path))
    monkeypatch.setenv("MY_GEMINI_KEY", "k")
    gens = make_generators(load_config(path))
    assert gens["gemini"].model_for("pro") == "gemini-3-pro-image-preview"


def test_diffusers_backend_is_built_lazily(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    path = _cfg(tmp_path, '[defaults]\ngenerator = "diffusers"\n[diffusers]\nfast_model = "/nowhere/model"\n')
    gen = make_generators(load_config(path))["diffusers"]
    assert gen.model_for("fast") == "/nowhere/model"  # nothing loaded until the first generation
    assert gen.inpaint_spec.model == "stabilityai/stable-diffusion-xl-base-1.0"  # inpaint follows the pro model
