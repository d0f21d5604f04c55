"""Fatigue detection: decaying series detected, stable ones left alone, prefix consistency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.fatigue import (
    Verdict,
    calibrate_threshold,
    default_threshold,
    detect,
    detect_many,
    estimate_extra_variance,
    estimate_noise,
    estimate_overdispersion,
)


def decaying(rng, n=20_000, days=60, onset=20, decay=0.03, ctr=0.015, rows=None):
    t = np.arange(days)
    p = ctr * np.where(t < onset, 1.0, (1 - decay) ** (t - onset + 1))
    shape = (days,) if rows is None else (rows, days)
    return np.full(shape, n), rng.binomial(n, np.broadcast_to(p, shape))


def test_decaying_series_is_detected_soon_after_onset():
    n, c = decaying(np.random.default_rng(3))
    v = detect(n, c)
    assert isinstance(v, Verdict)
    assert v.fatigued and v.signal == "ctr"
    assert 20 <= v.day <= 27
    assert v.current_ctr < v.baseline_ctr
    assert v.statistic > v.threshold
    assert f"day {v.day}" in v.reason and "baseline" in v.reason


def test_stable_series_are_mostly_silent():
    rng = np.random.default_rng(5)
    n = np.full((400, 60), 20_000)
    c = rng.binomial(n, 0.015)
    verdicts = detect_many(n, c)
    alarms = sum(v.fatigued for v in verdicts)
    # calibrated to 1 per 1000 monitored ad-days: ~21 expected over 400 x 53 days
    assert alarms <= 45
    quiet = next(v for v in verdicts if not v.fatigued)
    assert quiet.day is None and quiet.signal == "" and quiet.statistic <= quiet.threshold
    assert quiet.reason.startswith("not fatigued")


def test_prefix_consistency_day_by_day():
    n, c = decaying(np.random.default_rng(8), n=5000)
    full = detect(n, c)
    assert full.fatigued
    for t in range(len(n)):
        v = detect(n[: t + 1], c[: t + 1])
        if t < full.day:
            assert not v.fatigued, t
        else:
            assert v.fatigued and v.day == full.day, t
            assert v.statistic == pytest.approx(full.statistic)


@given(seed=st.integers(0, 10_000), volume=st.sampled_from([2000, 5000, 20_000]), cut=st.integers(1, 59))
@settings(max_examples=30, deadline=None)
def test_prefix_consistency_property(seed, volume, cut):
    n, c = decaying(np.random.default_rng(seed), n=volume)
    full = detect(n, c, seasonality=[1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9], start_weekday=seed % 7)
    part = detect(n[:cut], c[:cut], seasonality=[1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9], start_weekday=seed % 7)
    if full.fatigued and full.day < cut:
        assert part.fatigued and part.day == full.day
    else:
        assert not part.fatigued


BINOMIAL = {"overdispersion": 1.0, "seasonality": None}  # main's default before issue 11


@pytest.mark.parametrize(
    "noise",
    [BINOMIAL, {"extra_variance": 0.004, "seasonality": [1.05, 1.05, 1.0, 1.0, 1.0, 0.95, 0.95]}],
    ids=["binomial", "given-noise"],
)
def test_detect_many_equals_detect_row_by_row(noise):
    # With the noise model given, rows are independent. (By default detect_many
    # estimates it across its rows, the portfolio, so a row's verdict can differ
    # from detect() on that row alone: that pooling is the point.)
    rng = np.random.default_rng(9)
    n, c = decaying(rng, rows=6)
    c[3] = rng.binomial(20_000, 0.015, size=60)
    many = detect_many(n, c, **noise)
    for r in range(6):
        assert many[r] == detect(n[r], c[r], **noise)


def test_overdispersion_per_row():
    # One φ per creative is each row's own fixed φ (the weekday factors are still pooled over the rows).
    rng = np.random.default_rng(10)
    n, c = decaying(rng, rows=4)
    phis = [1.0, 1.5, 2.0, 3.0]
    per_row = detect_many(n, c, overdispersion=np.array(phis))
    assert per_row == [detect_many(n, c, overdispersion=phi)[r] for r, phi in enumerate(phis)]
    assert per_row[0] != per_row[3]


def test_short_series_and_no_clicks_are_not_fatigued():
    v = detect(np.full(5, 1000), np.full(5, 10))
    assert not v.fatigued and "baseline not ready" in v.reason
    v = detect(np.full(30, 1000), np.zeros(30, dtype=int))
    assert not v.fatigued
    v = detect(np.zeros(30, dtype=int), np.zeros(30, dtype=int))
    assert not v.fatigued


@pytest.mark.parametrize("days", [0, 1, 2])
def test_a_series_of_no_or_few_days_is_a_verdict_not_an_error(days):
    """DESIGN.md: detect() takes one creative's daily series; a creative launched today has none yet."""
    n, c = np.full(days, 1000), np.full(days, 10)
    for kwargs in ({}, {"overdispersion": 1.0, "seasonality": None}):
        v = detect(n, c, **kwargs)
        assert isinstance(v, Verdict) and not v.fatigued and v.day is None
    signals = {"spend": np.full(days, 5.0), "conversions": np.ones(days), "frequency": np.full(days, 1.5)}
    assert detect(n, c, **signals).day is None
    assert [v.day for v in detect_many(np.full((3, days), 1000), np.full((3, days), 10))] == [None] * 3


def test_day_of_week_seasonality_does_not_alarm():
    rng = np.random.default_rng(12)
    factors = np.array([1.1, 1.1, 1.05, 1.0, 1.0, 0.8, 0.75])
    days = 60
    weekday = (2 + np.arange(days)) % 7
    n = np.full((200, days), 20_000)
    c = rng.binomial(n, 0.015 * factors[weekday] / factors.mean())
    naive = sum(v.fatigued for v in detect_many(n, c, start_weekday=2, **BINOMIAL))
    given_ = sum(v.fatigued for v in detect_many(n, c, start_weekday=2, seasonality=factors))
    auto = sum(v.fatigued for v in detect_many(n, c, start_weekday=2, seasonality="auto"))
    default = sum(v.fatigued for v in detect_many(n, c, start_weekday=2))
    assert naive > 100
    assert given_ <= 25 and auto <= 25 and default <= 25


def test_confounders_are_ignored():
    rng = np.random.default_rng(13)
    days = 60
    n = np.full((100, days), 20_000)
    p = np.full(days, 0.015)
    p[30:33] = 0.008  # ad set back in learning after a budget change
    p[33:] = 0.012  # and a lower level afterwards
    c = rng.binomial(n, p)
    mask = np.zeros(days, dtype=bool)
    mask[30:33] = True
    unmasked = sum(v.fatigued for v in detect_many(n, c))
    rebaselined = sum(v.fatigued for v in detect_many(n, c, confounders=mask))
    skipped = detect_many(n, c, confounders=mask, confounder_policy="skip")
    assert unmasked > 90
    assert rebaselined <= 10
    assert sum(v.fatigued for v in skipped) > 50  # the level shift itself is still a drop


def test_overdispersion_reduces_false_alarms():
    rng = np.random.default_rng(14)
    n = np.full((400, 60), 20_000)
    p = 0.015 * np.exp(rng.normal(-0.005, 0.1, size=(400, 60)))
    c = rng.binomial(n, p)
    plain = sum(v.fatigued for v in detect_many(n, c, **BINOMIAL))
    auto = sum(v.fatigued for v in detect_many(n, c, overdispersion="auto"))
    default = sum(v.fatigued for v in detect_many(n, c))
    assert default <= 45
    tau2 = estimate_extra_variance(n, c)
    assert tau2 == pytest.approx(0.01, rel=0.3)
    assert estimate_overdispersion(n, c) == pytest.approx(1 + 300 * 0.01, rel=0.3)
    fixed = sum(v.fatigued for v in detect_many(n, c, extra_variance=tau2))
    assert plain > 100
    assert auto <= 45 and fixed <= 45


def test_overdispersed_decay_still_detected():
    rng = np.random.default_rng(15)
    t = np.arange(60)
    p = 0.015 * np.where(t < 20, 1.0, 0.97 ** (t - 19)) * np.exp(rng.normal(-0.005, 0.1, size=(200, 60)))
    n = np.full((200, 60), 20_000)
    c = rng.binomial(n, p)
    days = [v.day for v in detect_many(n, c, overdispersion="auto") if v.fatigued]
    assert len(days) > 190
    assert np.median(days) - 20 <= 9


def test_cpa_signal_fires_when_cpa_rises():
    rng = np.random.default_rng(16)
    days = 50
    n = np.full(days, 20_000)
    c = rng.binomial(n, 0.015)  # CTR stable
    spend = np.full(days, 160.0)
    rate = np.where(np.arange(days) < 25, 0.2, 0.2 / 1.6)  # CPA 5 -> 8
    conv = rng.poisson(spend * rate)
    v = detect(n, c, spend=spend, conversions=conv)
    assert v.fatigued and v.signal == "cpa" and v.day >= 25
    lagged = detect(n, c, spend=spend, conversions=conv, conversion_lag_days=3)
    assert lagged.fatigued and lagged.day >= v.day


def test_frequency_signal_fires_when_frequency_rises():
    rng = np.random.default_rng(17)
    days = 50
    n = np.full(days, 20_000)
    c = rng.binomial(n, 0.015)
    freq = np.where(np.arange(days) < 25, 1.5, 2.4) * np.exp(rng.normal(0, 0.03, days))
    v = detect(n, c, frequency=freq)
    assert v.fatigued and v.signal == "frequency" and v.day >= 25


def test_start_monitors_afresh():
    n, c = decaying(np.random.default_rng(18), onset=20)
    first = detect(n, c)
    later = detect(n, c, start=first.day + 1)
    assert later.day is None or later.day > first.day


def test_threshold_keyword_and_table_shape():
    n, c = decaying(np.random.default_rng(19))
    assert detect(n, c, threshold=1e9).fatigued is False
    h = default_threshold(np.array([5.0, 75.0, 300.0]))
    assert h.shape == (3,) and np.all(h > 0)


def test_calibrate_threshold_is_seeded_and_sensible():
    a = calibrate_threshold(300, np.random.default_rng(0), series=500)
    b = calibrate_threshold(300, np.random.default_rng(0), series=500)
    assert a == b
    assert 2.0 < a < 12.0


def test_estimate_noise_recovers_the_portfolio_noise_day_by_day():
    rng = np.random.default_rng(21)
    weekly = 1.0 + 0.08 * np.cos(2 * np.pi * (np.arange(7) - 2) / 7)
    t = np.arange(42)
    n = np.full((2000, 42), 15_000)
    c = rng.binomial(n, 0.015 * weekly[t % 7] * np.exp(rng.normal(-0.0032, 0.08, n.shape)))
    model = estimate_noise(n, c)
    # day 0 has nothing before it: the prior alone (8 %)
    assert model.df[0] == 0 and model.extra_variance[0] == pytest.approx(np.expm1(0.08**2))
    assert np.sqrt(np.log1p(model.extra_variance[-1])) == pytest.approx(0.08, abs=0.008)
    assert model.seasonality[-1] == pytest.approx(weekly / weekly.mean(), abs=0.01)
    # day t's model uses only the days before t: a prefix has the same model
    head = estimate_noise(n[:, :20], c[:, :20])
    assert np.array_equal(head.extra_variance, model.extra_variance[:20])
    assert np.array_equal(head.seasonality, model.seasonality[:20])
    # binomial data, no cycle: the data soon outweigh the prior
    flat = estimate_noise(n, rng.binomial(n, 0.015))
    assert flat.extra_variance[-1] < 0.0005 and np.abs(flat.seasonality[-1] - 1).max() < 0.01


def test_the_default_call_is_the_estimated_model_passed_back():
    # What the loop relies on: storing estimate_noise's per-day model and passing it back changes nothing.
    rng = np.random.default_rng(22)
    n, c = decaying(rng, n=15_000, rows=300)
    c = rng.binomial(n, np.clip(c / n * np.exp(rng.normal(0, 0.08, n.shape)), 0, 1))
    learning = np.zeros(n.shape, dtype=bool)
    learning[:, :2] = True
    model = estimate_noise(n, c, start_weekday=3, confounders=learning)
    given = {"extra_variance": model.extra_variance, "seasonality": model.seasonality}
    default = detect_many(n, c, start_weekday=3, confounders=learning)
    assert default == detect_many(n, c, start_weekday=3, confounders=learning, **given)
    assert sum(v.fatigued for v in default) > 250


@pytest.mark.parametrize("seasonality", ["auto", None, "per-day"])
def test_from_day_gives_the_same_later_days_bit_for_bit(seasonality):
    # The loop stores each day's model once and asks only for the new days (from_day): those must be
    # the very numbers the whole calendar gives, whether day t's model was carried over or computed.
    rng = np.random.default_rng(23)
    rows, days = 12, 40
    n = rng.integers(2_000, 20_000, size=(rows, days))
    n[np.arange(rows)[:, None] < (np.arange(days)[None, :] // 3) - 2] = 0  # staggered starts, idle stretches
    n[:, 17:21] = 0  # days with no data: the model is carried over
    n[:, ::-1][np.arange(rows) % 3 == 0] = n[np.arange(rows) % 3 == 0]  # some rows only late
    c = rng.binomial(n, 0.02 * np.exp(rng.normal(0, 0.1, n.shape)))
    learning = np.zeros(n.shape, dtype=bool)
    learning[:, :2] = True
    season: object = seasonality
    if seasonality == "per-day":
        season = 1.0 + 0.05 * rng.random((days, 7))
        season[10:30] = season[10]  # runs of equal factors, as stored models have
    kw = {"start_weekday": 4, "confounders": learning, "seasonality": season}
    full = estimate_noise(n, c, **kw)
    assert np.isfinite(full.extra_variance).all() and full.df.max() > 0
    for day in range(days + 1):
        part = estimate_noise(n, c, from_day=day, **kw)
        assert np.isnan(part.extra_variance[:day]).all() and np.isnan(part.seasonality[:day]).all()
        assert np.array_equal(part.extra_variance[day:], full.extra_variance[day:])
        assert np.array_equal(part.seasonality[day:], full.seasonality[day:])
        assert np.array_equal(part.df[day:], full.df[day:])
    with pytest.raises(ValueError, match="from_day"):
        estimate_noise(n, c, from_day=-1)
