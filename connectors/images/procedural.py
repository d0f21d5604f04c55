"""Procedural variants with Pillow: crop/aspect, colour grade, tone, headline and CTA.

A seed picks a *recipe*; the draft tier renders the recipe at 512 px wide and
the pro tier renders the same recipe at 1080 px wide with finishing
(sharpening, vignette, larger type).  Everything is deterministic per seed.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from connectors.images.base import Brief, ImageGenerator, Rendered

if TYPE_CHECKING:
    from connectors.images.base import GeneratorContext

ASPECTS = {"1:1": (1, 1), "4:5": (4, 5), "9:16": (9, 16), "1.91:1": (191, 100)}
GRADES = ("none", "warm", "cool", "vivid", "muted")
CTAS = ("Learn more", "Get started", "Try it free", "See how", "Sign up")
BANDS = ((17, 24, 39), (255, 255, 255), (220, 38, 38), (37, 99, 235), (22, 163, 74), (234, 179, 8))
DRAFT_WIDTH = 512
PRO_WIDTH = 1080


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def source_image(creative_id: str, headline: str = "", size: int = 1080) -> Image.Image:
    """A deterministic stand-in for an existing ad's artwork (for the simulator)."""
    rng = _rng("source", creative_id)
    c1, c2 = rng.integers(30, 226, size=(2, 3))
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    grad = (c1[None, None, :] * (1 - t) + c2[None, None, :] * t).astype(np.uint8)
    img = Image.fromarray(np.repeat(grad, size, axis=1), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.integers(0, size, size=2)
        r = int(rng.integers(size // 12, size // 4))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    if headline:
        font = ImageFont.load_default(size=size // 14)
        draw.text((size // 20, size // 20), headline, fill=(255, 255, 255), font=font)
    return img


def make_recipe(seed: int) -> dict[str, Any]:
    """The recipe a seed stands for (pure function of the seed)."""
    rng = np.random.default_rng(seed)
    return {
        "aspect": str(rng.choice(list(ASPECTS))),
        "focus_x": round(float(rng.uniform(0.3, 0.7)), 4),
        "focus_y": round(float(rng.uniform(0.3, 0.7)), 4),
        "zoom": round(float(rng.uniform(1.0, 1.35)), 4),
        "grade": str(rng.choice(GRADES)),
        "grade_strength": round(float(rng.uniform(0.2, 0.6)), 4),
        "brightness": round(float(rng.uniform(0.9, 1.15)), 4),
        "contrast": round(float(rng.uniform(0.9, 1.25)), 4),
        "band": int(rng.integers(len(BANDS))),
        "band_at": str(rng.choice(["top", "bottom"])),
        "cta": str(rng.choice(CTAS)),
    }


def _tone_lut(brightness: float, contrast: float) -> list[int]:
    """Brightness and contrast as one 256-entry LUT."""
    x = np.arange(256, dtype=np.float64)
    y = ((x * brightness) - 128.0) * contrast + 128.0
    return [int(v) for v in np.clip(np.rint(y), 0, 255)]


def _grade_and_tone(img: Image.Image, grade: str, strength: float, tone: list[int]) -> Image.Image:
    """The colour grade, then the ``tone`` LUT.

    ``warm`` and ``cool`` scale red and blue (one channel up, the other down by ``0.25·strength``): with the
    tone after them each channel is one 256-entry LUT, so the image takes one pass of :meth:`Image.point`,
    the same bytes as grading and toning one after the other.  ``vivid`` and ``muted`` mix in the grey
    image (across channels), then tone.
    """
    if grade in ("vivid", "muted"):
        gray = ImageOps.grayscale(img).convert("RGB")
        graded = Image.blend(gray, img, 1 + strength) if grade == "vivid" else Image.blend(img, gray, strength)
        return graded.point(tone * 3)
    same = list(range(256))
    up = [min(255, int(v * (1 + 0.25 * strength))) for v in same]
    down = [int(v * (1 - 0.25 * strength)) for v in same]
    red, blue = {"warm": (up, down), "cool": (down, up)}.get(grade, (same, same))
    return img.point([tone[v] for v in red] + tone + [tone[v] for v in blue])


def render(source: Image.Image, recipe: dict[str, Any], headline: str, width: int, finish: bool) -> Image.Image:
    """Render ``recipe`` over ``source`` at ``width`` pixels wide."""
    # 1. crop to the aspect around the focus point, zoomed
    aw, ah = ASPECTS[recipe["aspect"]]
    height = round(width * ah / aw)
    src = source.convert("RGB")
    zoom = recipe["zoom"]
    crop_w = src.width / zoom
    crop_h = crop_w * ah / aw
    if crop_h > src.height / zoom:
        crop_h = src.height / zoom
        crop_w = crop_h * aw / ah
    cx, cy = recipe["focus_x"] * src.width, recipe["focus_y"] * src.height
    left = min(max(0.0, cx - crop_w / 2), src.width - crop_w)
    top = min(max(0.0, cy - crop_h / 2), src.height - crop_h)
    # reducing_gap: a crop more than three times the width first shrinks by whole factors (box filter), then
    # LANCZOS; below that, as at the 512 and 1080 px tiers from a 1080 px source, Pillow resizes exactly as without.
    img = src.resize(
        (width, height), Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h), reducing_gap=3.0
    )
    # 2. colour grade and tone
    img = _grade_and_tone(
        img, recipe["grade"], recipe["grade_strength"], _tone_lut(recipe["brightness"], recipe["contrast"])
    )
    # 3. headline band and CTA pill
    draw = ImageDraw.Draw(img)
    band_h = max(24, height // 7)
    y0 = 0 if recipe["band_at"] == "top" else height - band_h
    band = BANDS[recipe["band"]]
    draw.rectangle((0, y0, width, y0 + band_h), fill=band)
    ink = (17, 24, 39) if sum(band) > 500 else (255, 255, 255)
    font = ImageFont.load_default(size=max(10, band_h // 3))
    draw.text((width // 24, y0 + band_h // 3), headline[:60], fill=ink, font=font)
    pill_font = ImageFont.load_default(size=max(9, band_h // 4))
    tw = draw.textlength(recipe["cta"], font=pill_font)
    px, py = width - int(tw) - width // 12, (height - band_h - band_h // 2) if y0 == 0 else band_h // 3
    draw.rounded_rectangle((px - 10, py - 6, px + tw + 10, py + band_h // 4 + 8), radius=band_h // 6, fill=band)
    draw.text((px, py), recipe["cta"], fill=ink, font=pill_font)
    # 4. finishing (pro tier only)
    if finish:
        img = _finish(img)
    return img


_SHARPEN = ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2)
# Rows beyond a band's edge that its sharpening reads: the blur under the unsharp mask (three box passes
# of radius 2 for σ = 2) reaches 6 rows; a band sharpened with this many more rows on each side gives
# its own rows exactly as sharpening the whole image does.
_SHARPEN_MARGIN = 16


def _finish(img: Image.Image) -> Image.Image:
    """The pro tier's finishing: sharpen (unsharp mask), then darken the corners (:func:`_vignette`).

    The lower half is finished on a second thread while this one finishes the upper half (Pillow and
    numpy work outside the GIL); every pixel is the same as finishing the whole image in one piece.
    """
    pixels = np.empty((img.height, img.width, 3), dtype=np.uint8)
    middle = img.height // 2

    def half(top: int, bottom: int) -> None:
        lo, hi = max(0, top - _SHARPEN_MARGIN), min(img.height, bottom + _SHARPEN_MARGIN)
        sharp = np.asarray(img.crop((0, lo, img.width, hi)).filter(_SHARPEN))[top - lo : bottom - lo]
        _vignette(sharp, out=pixels[top:bottom], first_row=top, height=img.height)

    if middle < _SHARPEN_MARGIN:  # too small to be worth a thread
        half(0, img.height)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="creative-loop-finish") as pool:
            lower = pool.submit(half, middle, img.height)
            half(0, middle)
            lower.result()
    return Image.fromarray(pixels, "RGB")


def _vignette(
    pixels: np.ndarray, rows: int = 128, *, out: np.ndarray | None = None, first_row: int = 0, height: int | None = None
) -> np.ndarray:
    """Darken the corners: each pixel times ``clip(1 - 0.18·max(0, d - 0.6), 0, 1)``, ``d`` its normalised distance
    from the centre, rounded back to 8 bits.

    ``pixels`` may be the rows from ``first_row`` on of an image ``height`` rows tall (default: the whole
    image); the result goes to ``out`` when given.  Computed a band of ``rows`` rows at a time (every step
    is per pixel, so the bands give the same numbers as the whole image at once) to keep a 1080 x 1920
    render's float temporaries small.
    """
    count, width = pixels.shape[:2]
    height = count if height is None else height
    if out is None:
        out = np.empty_like(pixels)
    xs = (np.arange(width)[None, :] - width / 2) / (width / 2)
    for top in range(0, count, rows):
        row = first_row + top
        ys = (np.arange(row, row + min(rows, count - top))[:, None] - height / 2) / (height / 2)
        d = np.hypot(xs, ys)
        vignette = np.clip(1.0 - 0.18 * np.clip(d - 0.6, 0, None), 0.0, 1.0)
        band = pixels[top : top + rows].astype(np.float32) * vignette[..., None]
        out[top : top + rows] = np.clip(np.rint(band, out=band), 0, 255, out=band).astype(np.uint8)
    return out


class ProceduralGenerator(ImageGenerator):
    """Pillow-only variants: fast, free of model weights, deterministic per seed."""

    name = "procedural"
    # Pillow and numpy work outside the GIL and every call builds its own images: drafts render side by side.
    concurrency = max(1, min(4, os.cpu_count() or 1))

    def __init__(self, draft_width: int = DRAFT_WIDTH, pro_width: int = PRO_WIDTH) -> None:
        if draft_width < 64 or pro_width < draft_width:
            raise ValueError(f"widths: expected 64 <= draft_width <= pro_width, got {draft_width}, {pro_width}")
        self.draft_width = draft_width
        self.pro_width = pro_width

    @classmethod
    def from_context(cls, ctx: GeneratorContext) -> ProceduralGenerator:
        """The procedural backend has no settings: drafts 512 px wide, pro renders 1080 px."""
        return cls()

    def model_for(self, tier: str) -> str:
        return f"procedural-v1-{tier}"

    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        recipe = make_recipe(seed)
        image = render(source, recipe, brief.headline, self.draft_width, finish=False)
        return Rendered(image, "fast", seed, recipe, _describe(recipe, brief), self.model_for("fast"), self.name)

    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        recipe = dict(draft.recipe) or make_recipe(draft.seed)
        image = render(source, recipe, brief.headline, self.pro_width, finish=True)
        return Rendered(image, "pro", draft.seed, recipe, _describe(recipe, brief), self.model_for("pro"), self.name)


def _describe(recipe: dict[str, Any], brief: Brief) -> str:
    """The recipe as the human-readable 'prompt' stored on the variant."""
    return (
        f"{recipe['aspect']} crop zoom {recipe['zoom']}, {recipe['grade']} grade, "
        f"headline {brief.headline!r} band {recipe['band_at']}, CTA {recipe['cta']!r}"
    )


def stable_seed(*parts: object) -> int:
    """A 31-bit seed derived from names (stable across processes, unlike hash())."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF
