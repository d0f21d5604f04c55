"""Fidelity guard: a pro render must still look like the draft that won the test.

Both images are brought to a common size (area-averaged, pure numpy), turned
to luma, and compared with SSIM (Wang et al. 2004, Gaussian window σ = 1.5).
A difference-hash distance (64 bits) is reported beside it for people to
read.  The verdict passes when SSIM is at least ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COMMON_SIZE = 128
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class FidelityVerdict:
    ok: bool
    ssim: float
    hash_distance: int  # differing bits of the two 64-bit difference hashes
    threshold: float

    def as_flags(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "ssim": round(self.ssim, 4),
            "hash_distance": self.hash_distance,
            "threshold": self.threshold,
        }


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average each output cell's share of the input (box filter)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
    weights: np.ndarray = overlap / overlap.sum(axis=1, keepdims=True)
    return weights


def resize_area(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaged resize of an (H, W) or (H, W, C) array to (height, width[, C]), float64."""
    arr = np.asarray(pixels, dtype=np.float64)
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 1:
        raise ValueError(f"image: expected an (H, W) or (H, W, C) array, got shape {arr.shape}")
    wy = _area_matrix(arr.shape[0], height)
    wx = _area_matrix(arr.shape[1], width)
    out = np.tensordot(wy, arr, axes=(1, 0))  # (height, W[, C])
    return np.moveaxis(np.tensordot(out, wx, axes=(1, 1)), -1, 1)  # (height, width[, C])


def luma(pixels: np.ndarray, size: int = COMMON_SIZE) -> np.ndarray:
    """The image as (size, size) luma in 0..255."""
    arr = np.asarray(pixels)
    if arr.ndim == 3:
        arr = _weighted(arr)
    return resize_area(arr, size, size)


def _weighted(arr: np.ndarray, rows: int = 128) -> np.ndarray:
    """``arr[..., :3] @ _LUMA`` a band of ``rows`` rows at a time: the product is taken row by row
    either way (the same numbers), without a float64 copy of a whole 1080 x 1920 render."""
    out = np.empty(arr.shape[:2])
    for top in range(0, arr.shape[0], rows):
        out[top : top + rows] = arr[top : top + rows, :, :3].astype(np.float64) @ _LUMA
    return out


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Mean structural similarity of two equally shaped 2-D arrays."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim: expected two equal 2-D arrays, got {a.shape} and {b.shape}")
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    var_a = gaussian_filter(a * a, sigma) - mu_a**2
    var_b = gaussian_filter(b * b, sigma) - mu_b**2
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def dhash(pixels: np.ndarray) -> np.ndarray:
    """64-bit difference hash: 8×9 luma thumbnail, is each cell brighter than its right neighbour."""
    return _dhash_of_luma(luma(pixels, COMMON_SIZE))


def _dhash_of_luma(small: np.ndarray) -> np.ndarray:
    cells = resize_area(small, 8, 9)
    return (cells[:, 1:] > cells[:, :-1]).ravel()


def compare(draft: np.ndarray, render: np.ndarray, threshold: float = 0.5, size: int = COMMON_SIZE) -> FidelityVerdict:
    """Does ``render`` keep ``draft``'s composition?  Sizes and aspects may differ."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected an SSIM in -1..1, got {threshold}")
    if size < 16:
        raise ValueError(f"size: expected >= 16, got {size}")
    a, b = luma(draft, size), luma(render, size)
    score = ssim(a, b)
    # At the hash's own size the lumas are those the hash would compute again: reuse them.
    ha, hb = (_dhash_of_luma(a), _dhash_of_luma(b)) if size == COMMON_SIZE else (dhash(draft), dhash(render))
    distance = int(np.count_nonzero(ha != hb))
    return FidelityVerdict(score >= threshold, score, distance, threshold)
