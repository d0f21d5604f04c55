"""The content-addressed image store: what ``open`` returns and how often it decodes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import storage.images
from policies.errors import NotFound
from storage.images import ImageStore


def _noise(seed: int, size: tuple[int, int] = (23, 17)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the PNG decodes the store does (Pillow's ``Image.open`` as storage.images calls it)."""
    calls: list[int] = []
    real = Image.open

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(storage.images.Image, "open", counting)
    return calls


def test_an_image_reads_back_pixel_for_pixel_and_each_caller_gets_its_own_copy(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    original = _noise(1)
    digest = store.put(original)
    first = store.open(digest)
    assert first.tobytes() == original.tobytes() and first.size == original.size and first.mode == "RGB"
    first.paste((255, 0, 0), (0, 0, 10, 10))  # a caller drawing on its image (the report's thumbnails shrink theirs)
    first.thumbnail((4, 4))
    assert store.open(digest).tobytes() == original.tobytes()


def test_an_image_read_again_is_not_decoded_again(tmp_path: Path, decodes: list[int]) -> None:
    store = ImageStore(tmp_path, decoded=2)
    a, b, c = (store.put(_noise(seed)) for seed in (1, 2, 3))
    for digest in (a, b, a, b, a):
        store.open(digest)
    assert len(decodes) == 2
    store.open(c)  # a third image: the least recently read (b) makes room
    store.open(a)
    assert len(decodes) == 3
    store.open(b)
    assert len(decodes) == 4


def test_a_missing_image_is_not_found_until_it_is_stored(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image = _noise(4)
    png = store.encode(image)
    name = hashlib.sha256(png).hexdigest()
    with pytest.raises(NotFound, match="no image"):
        store.open(name)
    assert store.put_bytes(png) == name
    assert store.open(name).tobytes() == image.tobytes()  # the miss was not remembered
    with pytest.raises(NotFound, match="not an image hash"):
        store.open("../" + name[3:])
