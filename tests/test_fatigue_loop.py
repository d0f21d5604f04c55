"""The fatigue step of the tick: the stored noise model and retry-after-abandon on the platform's day."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from sqlmodel import select

from loop.tick import _estimate_campaign_noise, campaign_noise, detect, stored_noise
from storage.db import session as open_session
from storage.models import Campaign, Creative, DailyMetric, Experiment, FatigueNoise

from loop_helpers import make_runtime, plan_for, run_days

START = date(2026, 1, 5)


def _creative(s, cid: str, n: np.ndarray, c: np.ndarray, first: int = 0) -> None:  # type: ignore[no-untyped-def]
    s.add(Creative(id=f"shop:{cid}", campaign_id="shop", role="live", platform_ad_id=cid, status="active"))
    for d, (nn, cc) in enumerate(zip(n, c, strict=True)):
        s.add(
            DailyMetric(
                creative_id=f"shop:{cid}", day=START + timedelta(days=first + d), impressions=int(nn), clicks=int(cc)
            )
        )


def test_the_noise_model_is_stored_per_day_and_replayed(engine):
    rng = np.random.default_rng(4)
    n = np.full((4, 31), 20_000)
    c = rng.binomial(n, 0.015 * np.exp(rng.normal(-0.005, 0.1, n.shape)))  # 10 % over-dispersed
    with open_session(engine) as s:
        s.add(Campaign(id="shop"))
        for i in range(3):
            _creative(s, f"c{i}", n[i, :30], c[i, :30])
        s.commit()
        first = campaign_noise(s, "shop", START, START + timedelta(days=30))
        s.commit()
        assert len(s.exec(select(FatigueNoise)).all()) == 30
        # day d's model comes from the baseline days before d: the prior first, then the data
        assert first.df[0] == 0 and first.extra_variance[0] == pytest.approx(np.expm1(0.08**2))
        assert first.df[-1] > 30 and 0.05 < np.sqrt(first.extra_variance[-1]) < 0.15
        assert first.seasonality.shape == (30, 7)

        # A late revision of an old day and a newcomer: old days are re-tested as they were.
        row = s.exec(select(DailyMetric).where(DailyMetric.creative_id == "shop:c0", DailyMetric.day == START)).one()
        row.clicks = row.clicks * 3
        _creative(s, "c3", n[3, :20], c[3, :20], first=10)
        s.commit()
        fresh = _estimate_campaign_noise(s, "shop", START, START + timedelta(days=30))
        assert not np.allclose(fresh.extra_variance, first.extra_variance)  # recomputing would move them
        again = campaign_noise(s, "shop", START, START + timedelta(days=30))
        assert np.array_equal(again.extra_variance, first.extra_variance)
        assert np.array_equal(again.seasonality, first.seasonality)

        # The next day gets its own model, from the data as they are now.
        for i in range(3):
            s.add(DailyMetric(creative_id=f"shop:c{i}", day=START + timedelta(days=30), impressions=20_000, clicks=300))
        s.commit()
        longer = campaign_noise(s, "shop", START, START + timedelta(days=31))
        assert np.array_equal(longer.extra_variance[:30], first.extra_variance)
        now = _estimate_campaign_noise(s, "shop", START, START + timedelta(days=31))
        assert longer.extra_variance[30] == pytest.approx(now.extra_variance[30])
        assert longer.df[30] == now.df[30] > first.df[-1]  # the newcomer's baseline days count from now on
        s.commit()
        # What the dashboard reads (never writes): the stored model, or nothing if a day was never tested.
        seen = stored_noise(s, "shop", START, START + timedelta(days=31))
        assert seen is not None and np.array_equal(seen.extra_variance, longer.extra_variance)
        assert np.array_equal(seen.seasonality, longer.seasonality)
        assert stored_noise(s, "shop", START, START + timedelta(days=32)) is None


def test_a_rejection_outside_a_tick_is_dated_by_the_next_tick(sqlite_engine):
    rng = np.random.default_rng(5)
    n = np.full(20, 20_000)
    with open_session(sqlite_engine) as s:
        s.add(Campaign(id="shop"))
        _creative(s, "hero", n, rng.binomial(n, 0.015))
        s.add(
            Experiment(
                id="shop:shop:hero:x", campaign_id="shop", parent_creative_id="shop:hero", state="abandoned",
                reason="rejected by a person",
            )
        )  # fmt: skip
        s.commit()
        today = START + timedelta(days=20)
        assert detect(s, plan_for("shop"), today) == []
        s.commit()
        assert s.get(Experiment, "shop:shop:hero:x").abandoned_on == today


def test_retry_after_abandon_counts_platform_days(engine, tmp_path, scenario_file):
    # A credit cap too small for two variants: the hero's experiment is abandoned.
    # Seven simulated days later the still-tiring hero is tested again on what came
    # after, and a second experiment opens (the wall clock never moved that far).
    scenario_file.write_text(scenario_file.read_text().replace("credit_cap = 5.0", "credit_cap = 0.61"))
    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 40)
    with open_session(engine) as s:
        exps = s.exec(
            select(Experiment).where(Experiment.parent_creative_id == "shop:hero").order_by(Experiment.created_at)
        ).all()
        assert len(exps) >= 2, [(e.id, e.state, e.abandoned_on) for e in exps]
        first, second = exps[0], exps[1]
        assert first.state == "abandoned" and "credit cap" in first.reason
        assert first.abandoned_on is not None and first.detected_on <= first.abandoned_on < START + timedelta(days=40)
        assert second.detected_on >= first.abandoned_on + timedelta(days=7)
        # the second verdict was reached on data from the abandoned day on only
        assert date.fromisoformat(second.verdict["day"]) >= first.abandoned_on
