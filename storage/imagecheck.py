"""Checking images that come from outside (a platform's live creative) before the loop uses them.

:func:`load_image` decodes bytes into an RGB image or raises :class:`ImageRejected`
with one line naming the image and the problem:

* not an image, or a format other than PNG/JPEG/WebP/GIF;
* truncated or corrupt (every pixel is decoded here, not lazily later);
* a decompression bomb: more pixels than ``max_pixels`` (checked from the
  header, before anything is decoded), or a side longer than ``max_side``;
* modes: RGB passes; L, P, 1 and CMYK are converted; 16-bit and 32-bit
  greyscale (I;16, I, F) are scaled to 8 bits; an alpha channel (RGBA, LA,
  P with transparency) is flattened onto white; anything else is refused.
"""

from __future__ import annotations

import io
import warnings
from typing import cast

from PIL import Image, UnidentifiedImageError

from policies.errors import CreativeLoopError

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
MAX_PIXELS = 40_000_000  # a 6000 x 6000 photo passes; a 100k x 100k bomb does not
MAX_SIDE = 20_000


class ImageRejected(CreativeLoopError, ValueError):
    """An image from outside cannot be used (``where`` names it)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem, where=where or None)
        self.where, self.problem = where, problem


def load_image(
    data: bytes, where: str = "image", max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE
) -> Image.Image:
    """Decode ``data`` into a fully loaded 8-bit RGB image, or raise ImageRejected."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise ImageRejected(where, "empty, expected image bytes")
    # Pillow's own bomb guard warns or raises depending on the size; ours decides first, from the header.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except UnidentifiedImageError:
            raise ImageRejected(where, f"not an image (or not one of {', '.join(FORMATS)})") from None
        except Image.DecompressionBombError as exc:
            raise ImageRejected(where, f"decompression bomb refused: {exc}") from None
        except OSError as exc:
            raise ImageRejected(where, f"unreadable image: {exc}") from None
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageRejected(where, f"empty image ({width}x{height})")
        if width * height > max_pixels or max(width, height) > max_side:
            raise ImageRejected(
                where,
                f"decompression bomb refused: {width}x{height} = {width * height} pixels (limit {max_pixels}, side {max_side})",
            )
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageRejected(where, f"decompression bomb refused: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(where, f"truncated or corrupt {image.format} image: {exc}") from None
    return _to_rgb(image, where)


def _to_rgb(image: Image.Image, where: str) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit depth greyscale: scale its range to 8 bits (Pillow's plain convert clips at 255).
        values = image.convert("F")
        # One band: Pillow's (min, max) as floats (its stub also covers multi-band tuples).
        lo, hi = cast(tuple[float, float], values.getextrema())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return values.point(lambda v: (v - lo) * scale).convert("L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("L", "P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise ImageRejected(where, f"unsupported image mode {mode!r}")
