"""Delivery (sample-ratio) check."""

from __future__ import annotations

import numpy as np

from policies.delivery import check_delivery


def test_delivery_as_requested_is_no_mismatch():
    rng = np.random.default_rng(0)
    w = np.array([0.5, 0.3, 0.2])
    result = check_delivery(w, rng.multinomial(20_000, w))
    assert not result.mismatch
    assert result.p_value > 0.001


def test_skewed_delivery_is_a_mismatch():
    result = check_delivery([0.5, 0.3, 0.2], [12_000, 5_000, 3_000])
    assert result.mismatch
    assert result.p_value < 1e-6
    assert result.statistic > 0
    assert "arm 0" in result.reason


def test_unrequested_arm_and_empty_delivery():
    assert check_delivery([1.0, 0.0], [10, 5]).mismatch
    assert not check_delivery([0.5, 0.5], [0, 0]).mismatch


def test_false_alarm_rate_is_about_alpha():
    rng = np.random.default_rng(1)
    w = np.array([0.25, 0.25, 0.5])
    flags = [check_delivery(w, rng.multinomial(5000, w), alpha=0.05).mismatch for _ in range(2000)]
    assert 0.03 < np.mean(flags) < 0.07
