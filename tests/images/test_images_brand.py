"""The brand-colour guard: CIEDE2000 against Sharma (2005), dominant colours, check and correct."""

from __future__ import annotations

import numpy as np
import pytest

from policies import brand

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula:
# implementation notes, supplementary test data, and mathematical
# observations", Table 1: L1 a1 b1, L2 a2 b2, ΔE00.
SHARMA = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_sharma_table_has_34_pairs() -> None:
    assert len(SHARMA) == 34


@pytest.mark.parametrize("row", SHARMA, ids=[f"pair{i + 1}" for i in range(len(SHARMA))])
def test_ciede2000_matches_sharma(row: tuple[float, ...]) -> None:
    lab1, lab2, expected = np.array(row[0:3]), np.array(row[3:6]), row[6]
    assert brand.ciede2000(lab1, lab2) == pytest.approx(expected, abs=5e-5)
    # ΔE00 is symmetric
    assert brand.ciede2000(lab2, lab1) == pytest.approx(expected, abs=5e-5)


def test_ciede2000_vectorised_equals_pairwise() -> None:
    table = np.array(SHARMA)
    got = brand.ciede2000(table[:, 0:3], table[:, 3:6])
    np.testing.assert_allclose(got, table[:, 6], atol=5e-5)


def test_srgb_lab_round_trip_and_known_values() -> None:
    np.testing.assert_allclose(brand.srgb_to_lab(np.array([255, 255, 255])), [100.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(brand.srgb_to_lab(np.array([0, 0, 0])), [0.0, 0.0, 0.0], atol=1e-9)
    # sRGB red is L*a*b* (53.24, 80.09, 67.20)
    np.testing.assert_allclose(brand.srgb_to_lab(np.array([255, 0, 0])), [53.24, 80.09, 67.20], atol=0.02)
    rgb = np.random.default_rng(3).integers(0, 256, size=(500, 3))
    np.testing.assert_allclose(brand.lab_to_srgb(brand.srgb_to_lab(rgb)), rgb, atol=1e-6)


@pytest.mark.parametrize("bad", ["", "#12345", "zzzzzz", "#1234567", "red"])
def test_parse_hex_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="hex code"):
        brand.parse_hex(bad)


def test_parse_hex_short_and_long_forms() -> None:
    assert brand.parse_hex("#abc") == (170, 187, 204)
    assert brand.parse_hex("1A2B3C") == (26, 43, 60)
    assert brand.to_hex((26, 43, 60)) == "#1a2b3c"


def _two_tone(top: tuple[int, int, int], bottom: tuple[int, int, int], top_rows: int = 60) -> np.ndarray:
    img = np.zeros((100, 80, 3), dtype=np.uint8)
    img[:top_rows] = top
    img[top_rows:] = bottom
    return img


def test_dominant_colours_shares() -> None:
    img = _two_tone((37, 99, 235), (220, 38, 38))
    got = brand.dominant_colours(img)
    assert [c.hex for c in got] == ["#2563eb", "#dc2626"]
    assert [round(c.share, 2) for c in got] == [0.6, 0.4]


def test_check_on_brand_passes() -> None:
    img = _two_tone((37, 99, 235), (255, 255, 255))
    v = brand.check(img, ["#2563EB", "#111827"], tolerance=5.0, max_off_share=0.1)
    assert v.ok and v.off_brand_share == 0.0
    assert v.worst_delta_e < 0.5
    # white is neutral: it never counts against the palette
    assert any(c.neutral for c in v.colours)


def test_check_off_brand_fails_with_share_and_delta_e() -> None:
    img = _two_tone((37, 99, 235), (220, 38, 38))  # brand blue + an off-brand red
    v = brand.check(img, ["#2563eb"], tolerance=5.0, max_off_share=0.3)
    assert not v.ok
    assert v.off_brand_share == pytest.approx(0.4)
    assert v.worst_delta_e > 40
    flags = v.as_flags()
    assert flags["ok"] is False and flags["colours"][1]["rgb"] == "#dc2626"
    # a looser share threshold lets the same image pass
    assert brand.check(img, ["#2563eb"], tolerance=5.0, max_off_share=0.5).ok


def test_correct_moves_off_brand_colour_onto_palette() -> None:
    rng = np.random.default_rng(0)
    img = _two_tone((37, 99, 235), (200, 60, 40)).astype(np.int16)
    img += rng.integers(-3, 4, size=img.shape).astype(np.int16)  # a little texture
    img = np.clip(img, 0, 255).astype(np.uint8)
    palette = ["#2563eb", "#16a34a"]
    before = brand.check(img, palette, tolerance=8.0, max_off_share=0.1)
    assert not before.ok
    fixed = brand.correct(img, palette, tolerance=8.0)
    assert fixed.shape == img.shape and fixed.dtype == np.uint8
    after = brand.check(fixed, palette, tolerance=8.0, max_off_share=0.1)
    assert after.ok, after.as_flags()
    # the on-brand blue half is untouched, bit for bit
    np.testing.assert_array_equal(fixed[:60], img[:60])
    # texture survives: the corrected half is not flat
    assert fixed[60:].std(axis=(0, 1)).max() > 0.5


def test_correct_leaves_on_brand_image_unchanged() -> None:
    img = _two_tone((37, 99, 235), (255, 255, 255))
    np.testing.assert_array_equal(brand.correct(img, ["#2563eb"]), img)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"palette": []}, "at least one"),
        ({"palette": ["#2563eb"], "tolerance": 0}, "tolerance"),
        ({"palette": ["#2563eb"], "max_off_share": 1.5}, "max_off_share"),
    ],
)
def test_check_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        brand.check(_two_tone((1, 2, 3), (4, 5, 6)), **kwargs)


def test_invalid_image_shape() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        brand.dominant_colours(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="strength"):
        brand.correct(np.zeros((4, 4, 3), dtype=np.uint8), ["#000000"], strength=0)
