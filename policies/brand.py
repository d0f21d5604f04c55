"""Brand-colour guard: CIEDE2000 ΔE between an image's dominant colours and a palette.

Pure numpy.  Images are ``(H, W, 3)`` uint8 sRGB arrays; the caller converts
from Pillow.  The three steps a campaign can take on an off-brand image:

- ``flag``: keep it and record the verdict (worst ΔE, off-brand share);
- ``reject``: drop it;
- ``correct``: :func:`correct` moves each off-brand dominant colour onto its
  nearest palette colour (pixels keep their offset from the cluster's mean, so
  texture survives), then the verdict is taken again.

A dominant colour is *on brand* when its ΔE00 to the nearest palette colour is
at most ``tolerance``; an image *passes* when the share of its pixels in
off-brand dominant colours is at most ``max_off_share``.  Near-neutral colours
(chroma below ``neutral_chroma``: whites, greys, blacks of type and backdrops)
never count against a palette.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ACTIONS = ("flag", "reject", "correct")

# sRGB (D65) to CIE XYZ, IEC 61966-2-1.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = (6.0 / 29.0) ** 3
_K = 3.0 * (6.0 / 29.0) ** 2


# -- colour spaces ----------------------------------------------------------------
def parse_hex(colour: str) -> tuple[int, int, int]:
    """``"#1A2B3C"`` (or ``"1a2b3c"``, ``"#abc"``) to an RGB triple; ValueError otherwise."""
    text = colour.strip().removeprefix("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise ValueError(f"colour: expected a hex code like '#1a2b3c', got {colour!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def to_hex(rgb: np.ndarray | tuple[int, int, int]) -> str:
    r, g, b = (int(round(float(v))) for v in np.clip(np.asarray(rgb, dtype=np.float64), 0, 255))
    return f"#{r:02x}{g:02x}{b:02x}"


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any shape ending in 3) to CIE L*a*b* (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz / _K + 4.0 / 29.0)
    lab: np.ndarray = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) to sRGB floats in 0..255, clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 6.0 / 29.0, f**3, _K * (f - 4.0 / 29.0)) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1.0 / 2.4) - 0.055)
    srgb: np.ndarray = np.clip(c * 255.0, 0.0, 255.0)
    return srgb


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1), broadcast over leading axes.

    Follows Sharma, Wu and Dalal (2005), including their notes on the hue
    mean and difference when a chroma is zero.
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0) ** 7
    g = 0.5 * (1.0 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    both = (c1p * c2p) != 0.0

    dl = L2 - L1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(both, dh, 0.0)
    d_hue = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    l_bar = (L1 + L2) / 2.0
    c_bar = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180.0, h_sum / 2.0, np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0)
    )
    h_bar = np.where(both, h_bar, h_sum)
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c_bar7p = c_bar**7
    r_c = 2.0 * np.sqrt(c_bar7p / (c_bar7p + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_bar
    s_h = 1.0 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    tl, tc, th = dl / s_l, dc / s_c, d_hue / s_h
    delta_e: np.ndarray = np.sqrt(np.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0))
    return delta_e


# -- dominant colours ---------------------------------------------------------------
@dataclass(frozen=True)
class DominantColour:
    rgb: tuple[int, int, int]
    share: float  # of the image's pixels
    nearest: str = ""  # the nearest palette colour (hex)
    delta_e: float = 0.0  # ΔE00 to it
    neutral: bool = False

    @property
    def hex(self) -> str:
        return to_hex(self.rgb)


def _thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """A strided thumbnail of at most ``side`` px on the longer edge (no resampling library)."""
    pixels = _as_rgb(pixels)
    step = max(1, int(np.ceil(max(pixels.shape[:2]) / side)))
    return pixels[::step, ::step]


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {arr.shape}")
    return arr[..., :3]


def _clusters(pixels: np.ndarray, k: int, merge_delta_e: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour clusters (mean Lab, pixel count) of ``pixels`` (N, 3) uint8, largest first.

    Deterministic: pixels are binned at 16 levels a channel, then the most
    populous bins absorb their neighbours closer than ``merge_delta_e``.
    """
    q = (pixels.astype(np.int64) // 16) @ np.array([256, 16, 1])
    bins, inverse, counts = np.unique(q, return_inverse=True, return_counts=True)
    sums = np.zeros((bins.size, 3))
    np.add.at(sums, inverse, pixels.astype(np.float64))
    means = srgb_to_lab(sums / counts[:, None])
    order = np.argsort(-counts, kind="stable")
    means, counts = means[order], counts[order].astype(np.float64)
    centres: list[np.ndarray] = []
    weights: list[float] = []
    for lab, n in zip(means, counts, strict=True):
        if centres:
            d = ciede2000(np.array(centres), lab)
            j = int(np.argmin(d))
            if d[j] < merge_delta_e or len(centres) >= k:
                w = weights[j]
                centres[j] = (centres[j] * w + lab * n) / (w + n)
                weights[j] = w + n
                continue
        centres.append(lab.copy())
        weights.append(float(n))
    return np.array(centres), np.array(weights)


def dominant_colours(
    pixels: np.ndarray, k: int = 6, min_share: float = 0.02, merge_delta_e: float = 12.0, side: int = 128
) -> list[DominantColour]:
    """Up to ``k`` dominant colours with their pixel shares (largest first)."""
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    thumb = _thumbnail(pixels, side).reshape(-1, 3)
    centres, weights = _clusters(thumb, k, merge_delta_e)
    shares = weights / weights.sum()
    rgb = lab_to_srgb(centres)
    out = []
    for i in np.argsort(-shares, kind="stable"):
        if shares[i] >= min_share:
            out.append(DominantColour(tuple(int(round(v)) for v in rgb[i]), float(shares[i])))  # type: ignore[arg-type]
    return out


# -- the check --------------------------------------------------------------------
@dataclass(frozen=True)
class BrandVerdict:
    ok: bool
    off_brand_share: float
    worst_delta_e: float  # ΔE00 of the worst non-neutral dominant colour to its nearest palette colour
    tolerance: float
    max_off_share: float
    colours: tuple[DominantColour, ...]

    def as_flags(self) -> dict[str, object]:
        """A JSON-ready summary (stored in ``Creative.flags['brand']``)."""
        return {
            "ok": self.ok,
            "off_brand_share": round(self.off_brand_share, 4),
            "worst_delta_e": round(self.worst_delta_e, 2),
            "tolerance": self.tolerance,
            "max_off_share": self.max_off_share,
            "colours": [
                {**asdict(c), "rgb": c.hex, "share": round(c.share, 4), "delta_e": round(c.delta_e, 2)}
                for c in self.colours
            ],
        }


def _palette_lab(palette: list[str] | tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    if not palette:
        raise ValueError("palette: expected at least one hex colour, got none")
    rgb = np.array([parse_hex(c) for c in palette], dtype=np.float64)
    return srgb_to_lab(rgb), [to_hex(c) for c in rgb]


def _chroma(lab: np.ndarray) -> np.ndarray:
    chroma: np.ndarray = np.hypot(lab[..., 1], lab[..., 2])
    return chroma


def check(
    pixels: np.ndarray,
    palette: list[str] | tuple[str, ...],
    tolerance: float = 10.0,
    max_off_share: float = 0.35,
    neutral_chroma: float = 8.0,
    k: int = 6,
    min_share: float = 0.02,
) -> BrandVerdict:
    """How far ``pixels``' dominant colours are from ``palette`` (see the module docstring)."""
    if tolerance <= 0:
        raise ValueError(f"tolerance: expected > 0 (ΔE00), got {tolerance}")
    if not 0.0 <= max_off_share <= 1.0:
        raise ValueError(f"max_off_share: expected 0..1, got {max_off_share}")
    pal_lab, pal_hex = _palette_lab(palette)
    colours = []
    for c in dominant_colours(pixels, k=k, min_share=min_share):
        lab = srgb_to_lab(np.array(c.rgb, dtype=np.float64))
        d = ciede2000(pal_lab, lab)
        j = int(np.argmin(d))
        neutral = bool(_chroma(lab) < neutral_chroma)
        colours.append(DominantColour(c.rgb, c.share, pal_hex[j], float(d[j]), neutral))
    counted = [c for c in colours if not c.neutral]
    off = sum(c.share for c in counted if c.delta_e > tolerance)
    worst = max((c.delta_e for c in counted), default=0.0)
    return BrandVerdict(off <= max_off_share, float(off), float(worst), tolerance, max_off_share, tuple(colours))


def correct(
    pixels: np.ndarray,
    palette: list[str] | tuple[str, ...],
    tolerance: float = 10.0,
    strength: float = 1.0,
    neutral_chroma: float = 8.0,
    k: int = 6,
) -> np.ndarray:
    """Shift the off-brand dominant colours of ``pixels`` toward their nearest palette colour.

    Each pixel belongs to its nearest dominant colour (Euclidean in Lab); the
    pixels of an off-brand, non-neutral colour move by ``strength`` times the
    difference between the palette colour and that colour's mean, so at
    ``strength=1`` the cluster's mean lands on the palette.  Returns a new
    uint8 array of the same shape; on-brand and neutral pixels are unchanged.
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength: expected 0 < strength <= 1, got {strength}")
    rgb = _as_rgb(pixels)
    pal_lab, _ = _palette_lab(palette)
    centres, _ = _clusters(_thumbnail(rgb, 128).reshape(-1, 3), k, 12.0)
    d = ciede2000(pal_lab[None, :, :], centres[:, None, :])  # (clusters, palette)
    nearest = pal_lab[np.argmin(d, axis=1)]
    shift = (nearest - centres) * strength
    move = (d.min(axis=1) > tolerance) & (_chroma(centres) >= neutral_chroma)
    if not move.any():
        return np.array(rgb, dtype=np.uint8, copy=True)
    lab = srgb_to_lab(rgb)
    flat = lab.reshape(-1, 3)
    # Nearest centre per pixel, in chunks to bound memory on large images.
    owner = np.empty(flat.shape[0], dtype=np.int64)
    for start in range(0, flat.shape[0], 1 << 18):
        chunk = flat[start : start + (1 << 18)]
        owner[start : start + chunk.shape[0]] = np.argmin(
            ((chunk[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1), axis=1
        )
    shifted = flat + np.where(move[owner][:, None], shift[owner], 0.0)
    out = lab_to_srgb(shifted.reshape(lab.shape))
    result: np.ndarray = np.rint(out).astype(np.uint8)
    # Pixels whose cluster did not move keep their exact values (no round-trip drift).
    keep = ~move[owner].reshape(rgb.shape[:2])
    result[keep] = rgb[keep]
    return result
