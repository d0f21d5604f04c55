"""DiffusersGenerator through real diffusers code on a tiny random-weight pipeline (CPU, no download)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from images_helpers import tiny_model_dir_fixture  # noqa: F401 (the tiny_model_dir fixture)
from PIL import Image

from connectors.images.base import Brief
from connectors.images.diffusers import DiffusersGenerator, PipelineCache, TierSpec, resolve_device
from policies.errors import GenerationError

pytestmark = pytest.mark.diffusion

BRIEF = Brief(headline="Spring sale", message="Spring sale on running shoes", brand_terms=("Acme",))


def _source(size: int = 96) -> Image.Image:
    rng = np.random.default_rng(5)
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[: size // 2] = (37, 99, 235)
    arr[size // 2 :] = (250, 250, 250)
    arr[10:40, 20:70] = rng.integers(0, 256, size=3)
    return Image.fromarray(arr)


def _gen(model: Path, cache: PipelineCache | None = None, **fast: object) -> DiffusersGenerator:
    fast_kw = {"model": str(model), "steps": 2, "width": 64, "height": 64, "strength": 0.5, **fast}
    return DiffusersGenerator(
        fast=TierSpec(**fast_kw),  # type: ignore[arg-type]
        pro=TierSpec(model=str(model), steps=2, width=128, height=128, strength=0.5),
        cache=cache or PipelineCache(),
    )


def _digest(img: Image.Image) -> str:
    return hashlib.sha256(np.asarray(img).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def gen(tiny_model_dir: Path) -> DiffusersGenerator:
    return _gen(tiny_model_dir)


def test_draft_img2img_is_deterministic_per_seed(gen: DiffusersGenerator, tiny_model_dir: Path) -> None:
    a = gen.draft(_source(), BRIEF, seed=5)
    assert a.size == (64, 64) and a.tier == "fast" and a.seed == 5 and a.generator == "diffusers"
    assert a.model == str(tiny_model_dir)
    assert a.recipe["mode"] == "img2img" and a.recipe["strength"] == 0.5 and a.recipe["device"] == "cpu"
    assert "Spring sale on running shoes" in a.prompt and "Acme" in a.prompt
    # the same seed in another generator (its own pipelines) gives the same pixels
    again = _gen(tiny_model_dir).draft(_source(), BRIEF, seed=5)
    assert _digest(again.image) == _digest(a.image)
    assert _digest(gen.draft(_source(), BRIEF, seed=6).image) != _digest(a.image)


def test_draft_text2img(tiny_model_dir: Path) -> None:
    g = _gen(tiny_model_dir, mode="text2img", width=72, height=64)
    r = g.draft(_source(), BRIEF, seed=1)
    assert r.size == (72, 64) and r.recipe["mode"] == "text2img"
    assert _digest(g.draft(_source(), BRIEF, seed=1).image) == _digest(r.image)


def test_render_pro_uplevels_the_draft_with_its_seed(gen: DiffusersGenerator) -> None:
    draft = gen.draft(_source(), BRIEF, seed=9)
    pro = gen.render_pro(_source(), draft, BRIEF)
    assert pro.size == (128, 128) and pro.tier == "pro" and pro.seed == 9
    assert pro.recipe["mode"] == "uplevel" and pro.recipe["strength"] == 0.5
    assert _digest(gen.render_pro(_source(), draft, BRIEF).image) == _digest(pro.image)
    # the loop lowers the strength through the recipe; steps grow so one step still runs
    draft.recipe["pro_strength"] = 0.2
    lower = gen.render_pro(_source(), draft, BRIEF)
    assert lower.recipe["strength"] == 0.2 and lower.recipe["steps"] == 5
    draft.recipe["pro_strength"] = 1.5
    with pytest.raises(GenerationError, match="pro_strength"):
        gen.render_pro(_source(), draft, BRIEF)


@pytest.mark.parametrize("size", [(128, 128), (100, 76)])
def test_inpaint_keeps_pixels_outside_the_mask_bit_exact(gen: DiffusersGenerator, size: tuple[int, int]) -> None:
    image = _source(128).resize(size)
    mask = Image.new("L", size, 0)
    mask.paste(255, (20, 16, 60, 50))
    fixed = gen.inpaint(image, mask, "a red sneaker", seed=3)
    assert fixed.size == size and fixed.recipe["mode"] == "inpaint"
    before, after, outside = np.asarray(image), np.asarray(fixed.image), np.asarray(mask) == 0
    np.testing.assert_array_equal(after[outside], before[outside])
    assert not np.array_equal(after[~outside], before[~outside])
    assert _digest(gen.inpaint(image, mask, "a red sneaker", seed=3).image) == _digest(fixed.image)


def test_inpaint_checks_its_inputs(gen: DiffusersGenerator) -> None:
    image = _source(64)
    with pytest.raises(ValueError, match="expected the image's size 64x64, got 32x32"):
        gen.inpaint(image, Image.new("L", (32, 32), 255), "x", seed=1)
    with pytest.raises(ValueError, match="all-black"):
        gen.inpaint(image, Image.new("L", (64, 64), 0), "x", seed=1)


def test_pipelines_load_once_and_share_modules(tiny_model_dir: Path) -> None:
    cache = PipelineCache()
    g = _gen(tiny_model_dir, cache=cache)
    g.draft(_source(), BRIEF, seed=1)
    g.render_pro(_source(), g.draft(_source(), BRIEF, seed=2), BRIEF)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 24, 24))
    g.inpaint(_source(64), mask, "x", seed=1)
    assert cache.loads == 1
    base = cache.get(str(tiny_model_dir), "cpu", g.resolved_dtype_for_tests(), "text2img")
    i2i = cache.get(str(tiny_model_dir), "cpu", g.resolved_dtype_for_tests(), "img2img")
    inp = cache.get(str(tiny_model_dir), "cpu", g.resolved_dtype_for_tests(), "inpaint")
    assert i2i.unet is base.unet and inp.vae is base.vae


def test_offline_load_in_a_fresh_process(tiny_model_dir: Path, gen: DiffusersGenerator, tmp_path: Path) -> None:
    """A new process with HF_HUB_OFFLINE=1 loads the saved folder and draws the same pixels."""
    expected = _digest(gen.draft(_source(), BRIEF, seed=5).image)
    script = f"""
import hashlib, numpy as np, torch
torch.set_num_threads(1)
from test_images_diffusers import _gen, _source, BRIEF
r = _gen({str(tiny_model_dir)!r}).draft(_source(), BRIEF, seed=5)
print(hashlib.sha256(np.asarray(r.image).tobytes()).hexdigest())
"""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"), "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests" / "images")]),
    }  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected


def test_missing_model_says_where_to_put_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    hub = _gen(Path("stabilityai/sd-turbo"))
    with pytest.raises(
        GenerationError, match=r"not in the local Hugging Face cache .*hf download stabilityai/sd-turbo"
    ):
        hub.draft(_source(), BRIEF, seed=1)
    folder = _gen(tmp_path / "no-such-model")
    with pytest.raises(GenerationError, match="model folder .* not found"):
        folder.draft(_source(), BRIEF, seed=1)


def test_auto_device_is_cpu_here() -> None:
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


def test_draft_traits_are_the_prompt_attributes_and_the_pro_render_keeps_them(gen: DiffusersGenerator) -> None:
    """Trait extraction for the diffusers backend: the attribute slots the seed filled, recorded in the recipe."""
    from connectors.images.prompts import choose_attributes
    from connectors.images.traits import traits_for

    draft = gen.draft(_source(), BRIEF, seed=8)
    chosen = choose_attributes(BRIEF, 8)
    assert draft.recipe["attributes"] == chosen and set(chosen) == {"subject", "setting", "palette", "style"}
    assert traits_for(draft.generator, draft.recipe) == chosen
    assert all(value in draft.prompt for value in chosen.values())
    pro = gen.render_pro(_source(), draft, BRIEF)
    assert pro.recipe["attributes"] == chosen and all(value in pro.prompt for value in chosen.values())
    assert traits_for(pro.generator, pro.recipe) == chosen
