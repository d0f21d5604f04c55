"""Image slots of a Demand Gen image ad, and fitting a draft into one.

A ``DemandGenMultiAssetAdInfo`` takes landscape (1.91:1, at least 600x314),
square (1:1, 300x300), portrait (4:5, 480x600) and tall portrait (9:16,
600x1067) marketing images; Google refuses an image whose ratio is more than
1 % off its slot or that is smaller than the slot's minimum.  A variant goes
into the slot nearest its own aspect ratio: it is centre-cropped to the slot's
ratio when it is further off than 1 %, and scaled up to the slot's minimum
when it is smaller (a cheap draft is 512 px wide; the pro render is larger).
An ad needs a landscape or a square image: a portrait variant also goes in as
a centre-cropped square of itself (:func:`ad_images`), so the arm still shows
only the variant.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

from policies.errors import PlatformError


@dataclass(frozen=True)
class Slot:
    field: str  # the DemandGenMultiAssetAdInfo field
    field_type: str  # the AssetFieldType the asset view reports
    ratio: float  # width / height
    min_width: int
    min_height: int


SLOTS = (
    Slot("marketing_images", "MARKETING_IMAGE", 1.91, 600, 314),
    Slot("square_marketing_images", "SQUARE_MARKETING_IMAGE", 1.0, 300, 300),
    Slot("portrait_marketing_images", "PORTRAIT_MARKETING_IMAGE", 0.8, 480, 600),
    Slot("tall_portrait_marketing_images", "TALL_PORTRAIT_MARKETING_IMAGE", 9 / 16, 600, 1067),
)
SLOT_BY_FIELD = {s.field: s for s in SLOTS}
TOLERANCE = 0.01
MAX_PIXELS = 40_000_000


def nearest_slot(width: int, height: int) -> Slot:
    r = width / height
    return min(SLOTS, key=lambda s: abs(math.log(r / s.ratio)))


def fits(slot: Slot, width: int, height: int) -> bool:
    """Google's rule: ratio within 1 % of the slot's, and at least its minimum size."""
    return abs(width / height / slot.ratio - 1) <= TOLERANCE and width >= slot.min_width and height >= slot.min_height


@dataclass(frozen=True)
class Fitted:
    data: bytes
    slot: Slot
    width: int
    height: int


REQUIRED = ("marketing_images", "square_marketing_images")  # an ad needs one of these


def ad_images(data: bytes, *, campaign: str | None = None, key: str | None = None) -> list[Fitted]:
    """The images an ad of this variant carries: it in its own slot, plus a square of it when that slot is a portrait one."""
    first = Fitted(*fit_image(data, campaign=campaign, key=key))
    if first.slot.field in REQUIRED:
        return [first]
    w, h = first.width, first.height
    side = min(w, h)
    with Image.open(io.BytesIO(first.data)) as img:
        square = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        buf = io.BytesIO()
        square.save(buf, format="PNG")
    return [first, Fitted(*fit_image(buf.getvalue(), campaign=campaign, key=key))]


def fit_image(data: bytes, *, campaign: str | None = None, key: str | None = None) -> tuple[bytes, Slot, int, int]:
    """The image as Google will take it, its slot and its size (unchanged bytes when it already fits)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise PlatformError(f"image {w}x{h} exceeds {MAX_PIXELS} pixels", campaign=campaign, key=key)
            img.load()
    except PlatformError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PlatformError(f"not a readable image ({exc})", campaign=campaign, key=key) from exc
    slot = nearest_slot(w, h)
    if fits(slot, w, h) and img.format in ("PNG", "JPEG", "GIF"):
        return data, slot, w, h
    out = img.convert("RGB") if img.mode not in ("RGB", "RGBA") else img
    if abs(w / h / slot.ratio - 1) > TOLERANCE:
        # 1. centre-crop to the slot's ratio
        if w / h > slot.ratio:
            cw, ch = round(h * slot.ratio), h
        else:
            cw, ch = w, round(w / slot.ratio)
        left, top = (w - cw) // 2, (h - ch) // 2
        out = out.crop((left, top, left + cw, top + ch))
    # 2. up to the slot's minimum size
    scale = max(1.0, slot.min_width / out.width, slot.min_height / out.height)
    if scale > 1.0:
        out = out.resize((math.ceil(out.width * scale), math.ceil(out.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue(), slot, out.width, out.height
