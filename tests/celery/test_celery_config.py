"""The ``executor``/``[celery]`` settings: defaults, refusals, and the per-campaign simulated layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.ads.scenario import load_scenario
from connectors.ads.sharded import ShardedSimulatedAdPlatform
from loop.app import make_platform
from loop.config import load_config
from policies.errors import ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(body)
    return path


def test_inline_is_the_default():
    cfg = load_config(Path(__file__).resolve().parents[2] / "config.example.toml")
    assert cfg.loop.executor == "inline"
    assert cfg.model.simulated.layout == "scenario"
    assert cfg.model.celery.generation_queue_limit > 0


def test_celery_on_the_simulated_platform_needs_per_campaign_state(tmp_path):
    with pytest.raises(ConfigError, match="per-campaign"):
        load_config(_write(tmp_path, '[loop]\nexecutor = "celery"\n'))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[celery]\nbogus = 1\n", "celery.bogus"),
        ("[celery]\ngeneration_queue_limit = 0\n", "celery.generation_queue_limit"),
        ('[celery]\nqueue_prefix = "a b"\n', "celery.queue_prefix"),
        ('[loop]\nexecutor = "dask"\n', "loop.executor"),
        ('[simulated]\nlayout = "sharded"\n', "simulated.layout"),
    ],
)
def test_invalid_celery_settings_name_the_key(tmp_path, body, key):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, body))
    assert key in str(err.value)


def test_per_campaign_state_is_independent_of_the_order_campaigns_run_in(tmp_path):
    """Two campaigns' days in either order give the same platform state, file by file."""
    scenario = load_scenario(Path(__file__).resolve().parents[2] / "loop" / "data" / "example-scenario.toml")
    ids = [c.id for c in scenario.campaigns]
    assert len(ids) >= 2
    outcomes = []
    for order in (ids, list(reversed(ids))):
        state = tmp_path / "-".join(order)
        for _ in range(3):
            for cid in order:
                ShardedSimulatedAdPlatform(scenario, state_dir=state).run_day(cid)  # a fresh object, as a worker has
        outcomes.append({cid: (state / f"{cid}.json").read_text() for cid in ids})
    assert outcomes[0] == outcomes[1]
    cfg = load_config(_write(tmp_path, f'[loop]\ndata_dir = "{tmp_path}"\n[simulated]\nlayout = "per-campaign"\n'))
    assert isinstance(make_platform(cfg, scenario), ShardedSimulatedAdPlatform)
