"""Helpers for the image tests: a tiny random-weight SD pipeline (``dummy_diffusers``) saved to a folder.

Not a conftest.py: several test folders' conftest modules would clash under
one name; test modules import the fixture from here instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from connectors.images.base import ImageGenerator


@pytest.fixture(scope="session", name="tiny_model_dir")
def tiny_model_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~0.35 M-parameter SD pipeline in save_pretrained layout, built once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import torch
    from dummy_diffusers import random_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-sd")
    pipe = random_pipeline("tiny-sd", root / "tokenizer-src", seed=0)
    pipe.save_pretrained(root / "model")
    return root / "model"


# -- the loop on the simulated platform, with an injected generator ----------------------------
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: also when imported by a subprocess
from loop_helpers import SMALL_SCENARIO  # noqa: E402

SCENARIO = SMALL_SCENARIO  # the shared small scenario (tests/loop_helpers.py)


def make_runtime(
    engine, tmp_path: Path, backend, *, approval: str = "none", credit_cap: float | None = None, **settings
):  # type: ignore[no-untyped-def]
    """A Runtime over the simulated platform whose campaigns use ``backend`` (registered as ``generator``)."""
    from connectors.ads.scenario import load_scenario
    from connectors.ads.simulated import SimulatedAdPlatform
    from connectors.retry import NO_WAIT
    from loop.config import load_config
    from loop.plans import campaign_plans
    from loop.runtime import Runtime
    from storage.images import ImageStore

    text = SCENARIO if credit_cap is None else SCENARIO.replace("credit_cap = 5.0", f"credit_cap = {credit_cap}")
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    cfg = load_config(Path(__file__).resolve().parents[2] / "config.example.toml")
    scenario = load_scenario(path)
    name = settings.pop("generator", "procedural")
    # The guards' tests count the drafts of one experiment: six, tested first-come (issue 17's
    # model selection, with its 24 drafts, has tests of its own).
    settings.setdefault("selection", "first")
    return Runtime(
        engine=engine,
        platform=SimulatedAdPlatform(scenario),
        generators={name: backend},
        images=ImageStore(tmp_path / "images"),
        plans=campaign_plans(cfg, scenario, generator=name, **settings),
        approval=approval,
        tiering="tiered",
        backfill_days=2,
        retry=NO_WAIT,
    )


def run_until(rt, done, max_days: int = 45) -> None:  # type: ignore[no-untyped-def]
    """Tick day by day until ``done(session)`` holds (or ``max_days`` pass)."""
    from loop.tick import tick
    from storage.db import session as open_session

    for _ in range(max_days):
        tick(rt, rt.platform.today())
        rt.platform.run_day()
        with open_session(rt.engine) as s:
            if done(s):
                return


class ScriptedGenerator(ImageGenerator):
    """A fake backend behind the seam: drafts in scripted colours, pro renders that stray with strength.

    A draft is a flat ``colours[i]`` background with seeded grey blocks; the pro
    render is the draft at 2x blended with seeded noise in proportion to
    ``recipe['pro_strength']`` (default 0.2), so lower strength = more faithful.
    ``fail_pro`` lists pro attempts (0-based) that raise GenerationError.
    """

    name = "scripted"

    def __init__(self, colours, fail_pro=()):  # type: ignore[no-untyped-def]
        self.colours = list(colours)
        self.fail_pro = set(fail_pro)
        self.drafts = 0
        self.pros = 0

    def model_for(self, tier: str) -> str:
        return f"scripted-{tier}"

    def draft(self, source, brief, seed):  # type: ignore[no-untyped-def]
        import numpy as np
        from PIL import Image

        from connectors.images.base import Rendered

        colour = self.colours[self.drafts % len(self.colours)]
        self.drafts += 1
        rng = np.random.default_rng(1)  # same structure in every draft: only the colour differs
        img = np.zeros((64, 64, 3), np.uint8)
        img[:] = colour
        for _ in range(6):
            y, x = rng.integers(0, 44, 2)
            img[y : y + 20, x : x + 20] = rng.integers(0, 256)  # grey: neutral, never off brand
        return Rendered(Image.fromarray(img), "fast", seed, {"colour": list(colour)}, "p", "scripted-fast", self.name)

    def render_pro(self, source, draft, brief):  # type: ignore[no-untyped-def]
        import numpy as np
        from PIL import Image

        from connectors.images.base import Rendered
        from policies.errors import GenerationError

        attempt = self.pros
        self.pros += 1
        if attempt in self.fail_pro:
            raise GenerationError("scripted failure")
        strength = float(draft.recipe.get("pro_strength", 0.2))
        big = np.asarray(draft.image.resize((128, 128)), dtype=np.float64)
        noise = np.random.default_rng(0).integers(0, 256, big.shape)
        out = (big * (1 - strength) + noise * strength).astype(np.uint8)
        return Rendered(Image.fromarray(out), "pro", draft.seed, dict(draft.recipe), "p", "scripted-pro", self.name)
