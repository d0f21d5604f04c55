"""The dashboard's Insights page: effects per trait, a chart, hostile trait text kept as text."""

from __future__ import annotations

import html as htmllib
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from loop.config import load_config
from storage.db import make_engine, migrate
from storage.db import session as open_session
from storage.images import ImageStore
from storage.models import Arm, Campaign, Creative, DailyMetric, Experiment

BASE_URL = "http://127.0.0.1"
HOSTILE = ["<script>alert(1)</script>", r"$x^$ 50% off", "calm"]


def test_insights_page_over_the_loops_database(client: TestClient) -> None:
    r = client.get("/insights")
    assert r.status_code == 200
    page = r.text
    assert '<a href="/insights" class="on">Insights</a>' in page
    assert page.count("data-account") == 1  # the example's campaigns share one (unnamed) account
    assert "tested variants from 2 decided experiment(s)" in page
    assert 'data-trait="grade=' in page and 'src="data:image/svg+xml;base64,' in page
    assert "% CTR [" in page  # the plain sentences
    one = client.get("/insights?campaign=retarget")
    assert one.status_code == 200 and "(retarget)" in one.text and "1 decided experiment(s)" in one.text
    assert client.get("/insights?campaign=nope").status_code == 404


def _hostile_db(folder: Path) -> Path:
    """A database holding two decided tests whose variants carry hostile trait values; returns a config."""
    scenario = folder / "s.toml"
    scenario.write_text(
        '[[campaigns]]\nid = "shop"\ndaily_impressions = 1000\ncpm = 8.0\ntest_daily_budget = 10.0\n'
        "test_spend_cap = 100.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.6\ncredit_cap = 5.0\n"
        '[[campaigns.creatives]]\nid = "hero"\nctr = 0.02\n'
    )
    url = f"sqlite:///{folder / 'db.sqlite'}"
    engine = make_engine(url)
    migrate(engine)
    rng = np.random.default_rng(3)
    with open_session(engine) as s:
        s.add(Campaign(id="shop"))
        s.add(Creative(id="shop:hero", campaign_id="shop", role="live", label="hero"))
        s.flush()  # foreign keys: the rows each later row points at go first
        for e in range(2):
            exp = Experiment(id=f"e{e}", campaign_id="shop", parent_creative_id="shop:hero", state="scaled",
                             decided_on=date(2026, 2, 1 + e), verdict={"baseline_ctr": 0.02})  # fmt: skip
            s.add(exp)
            s.flush()
            for i, mood in enumerate(HOSTILE):
                cid = f"e{e}:v{i}"
                s.add(Creative(id=cid, campaign_id="shop", role="draft", parent_id="shop:hero", experiment_id=exp.id,
                               label=f"v{i}", generator="gemini", traits={"mood": mood}))  # fmt: skip
                s.flush()
                s.add(Arm(experiment_id=exp.id, creative_id=cid, position=i))
                for d in range(3):
                    s.add(DailyMetric(creative_id=cid, day=date(2026, 1, 20 + d), impressions=5000,
                                      clicks=int(rng.binomial(5000, 0.02 * (1.4 if i == 0 else 1.0)))))  # fmt: skip
        s.commit()
    engine.dispose()
    config = folder / "creative-loop.toml"
    config.write_text(
        f'[loop]\ndatabase = "{url}"\ndata_dir = "{folder / "data"}"\n[simulated]\nscenario = "{scenario}"\n'
        '[defaults]\ngenerator = "gemini"\nprompt_template = "{mood} photo"\n'
        'prompt_attributes = { mood = ["<script>alert(1)</script>", "$x^$ 50% off", "calm"] }\n'
        '[gemini]\napi_key_env = "CL_TEST_GEMINI_KEY"\n'
    )
    return config


def test_hostile_trait_values_are_text_in_the_page_and_the_chart(tmp_path: Path) -> None:
    from loop.web import create_app

    cfg = load_config(_hostile_db(tmp_path))
    engine = make_engine(cfg.database_url)
    try:
        app = create_app(cfg, engine=engine, images=ImageStore(tmp_path / "images"))
        with TestClient(app, base_url=BASE_URL) as c:
            r = c.get("/insights")
    finally:
        engine.dispose()
    assert r.status_code == 200
    page = r.text
    assert "<script>alert(1)</script>" not in page
    assert htmllib.escape("mood “<script>alert(1)</script>”", quote=False) in page
    assert htmllib.escape(r"$x^$ 50% off", quote=False) in page
    assert page.count("data-trait=") == 3 and "6 tested variants from 2 decided experiment(s)" in page


def test_chart_draws_labels_without_math_text() -> None:
    """A ``$...$`` label would be parsed as math (and this one fails to parse) unless math text is off."""
    from loop.insights import AccountInsights
    from loop.web.insights_page import effects_chart
    from policies.traits import fit_traits

    traits = [{"mood": m} for m in HOSTILE] * 4
    post = fit_traits(traits, [0.1, -0.1, 0.0] * 4, [0.01] * 12, [g for g in range(4) for _ in range(3)],
                      np.random.default_rng(0))  # fmt: skip
    account = AccountInsights("", ["shop"], post, post.effects())
    svg = effects_chart(account)
    assert svg.startswith(b"<?xml") and b"<svg" in svg
    empty = fit_traits([], [], [], [], np.random.default_rng(0))
    assert b"<svg" in effects_chart(AccountInsights("", ["shop"], empty, []))


@pytest.mark.parametrize("label", [r"$x^$ 50% off", "$x^2$"])
def test_the_label_would_break_math_text(label: str) -> None:
    """The guard above is real: matplotlib's math text rejects or rewrites these labels."""
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    ax.text(0, 0, label)
    import io

    from matplotlib.backends.backend_svg import FigureCanvasSVG

    if label == r"$x^$ 50% off":
        with pytest.raises(ValueError):
            FigureCanvasSVG(fig).print_svg(io.BytesIO())
    else:
        FigureCanvasSVG(fig).print_svg(io.BytesIO())
        assert ax.texts[0].get_parse_math() is True
