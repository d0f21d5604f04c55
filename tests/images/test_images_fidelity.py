"""The fidelity guard: SSIM and difference hash at a common size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from connectors.images.base import Brief
from connectors.images.procedural import ProceduralGenerator, source_image
from policies import fidelity


def _scene(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), dtype=np.uint8)
    for _ in range(8):
        y, x = rng.integers(0, size - 20, size=2)
        h, w = rng.integers(8, 30, size=2)
        img[y : y + h, x : x + w] = rng.integers(0, 256, size=3)
    return img


def test_identical_images_score_one() -> None:
    img = _scene(1)
    v = fidelity.compare(img, img)
    assert v.ok and v.ssim == pytest.approx(1.0) and v.hash_distance == 0


def test_resized_copy_is_faithful_and_other_scene_is_not() -> None:
    img = _scene(1, 96)
    bigger = np.asarray(Image.fromarray(img).resize((300, 300), Image.Resampling.LANCZOS))
    assert fidelity.compare(img, bigger, threshold=0.8).ok
    other = fidelity.compare(img, _scene(2, 96), threshold=0.8)
    assert not other.ok and other.ssim < 0.6
    assert other.as_flags()["ok"] is False


def test_more_noise_means_lower_ssim() -> None:
    img = _scene(3).astype(np.float64)
    rng = np.random.default_rng(0)
    scores = [fidelity.compare(img, np.clip(img + rng.normal(0, s, img.shape), 0, 255)).ssim for s in (5.0, 30.0, 90.0)]
    assert scores[0] > scores[1] > scores[2]


def test_procedural_pro_render_keeps_the_draft() -> None:
    gen = ProceduralGenerator(draft_width=128, pro_width=256)
    src = source_image("hero", "Hello", size=256)
    brief = Brief(headline="Hello")
    draft = gen.draft(src, brief, seed=11)
    pro = gen.render_pro(src, draft, brief)
    v = fidelity.compare(np.asarray(draft.image), np.asarray(pro.image), threshold=0.6)
    assert v.ok, v


def test_resize_area_preserves_mean_and_handles_grey() -> None:
    arr = np.random.default_rng(0).uniform(0, 255, size=(37, 53))
    small = fidelity.resize_area(arr, 8, 8)
    assert small.shape == (8, 8)
    assert small.mean() == pytest.approx(arr.mean())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": 2.0}, "threshold"), ({"size": 4}, "size")],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fidelity.compare(_scene(1), _scene(1), **kwargs)


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        fidelity.ssim(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="array"):
        fidelity.resize_area(np.zeros(5), 2, 2)
