"""Config and scenario errors: one line naming file, key and problem; exit code 2; no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loop.cli import main
from loop.config import BUNDLED_CONFIG, load_config, to_minor
from policies.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


BAD_CONFIGS = [
    ("[loop]\nplatfrom = 'simulated'\n", "loop.platfrom", "unknown key (allowed: database, data_dir, platform"),
    ("[loop]\ninterval_minutes = 'often'\n", "loop.interval_minutes", "valid number"),
    ("[loop]\napproval = 'sometimes'\n", "loop.approval", "'none', 'pro' or 'all'"),
    ("[loop]\ncron = '61 * * * *'\n", "loop.cron", "invalid cron expression"),
    ("[defaults]\npolicy = 'coin-flip'\n", "defaults.policy", "unknown policy 'coin-flip'"),
    ("[defaults]\nvariants = 1\n", "defaults.variants", "greater than or equal to 2"),
    ("[defaults]\nthompson_variance_scale = 0\n", "defaults.thompson_variance_scale", "greater than 0"),
    ("[[campaigns]]\nid = 'a'\ntest_spend_cap = -5.0\n", "campaigns[0].test_spend_cap", "greater than or equal to 0"),
    ("[[campaigns]]\nid = 'a'\ncredit_cap = 'lots'\n", "campaigns[0].credit_cap", "valid number"),
    (
        "[[campaigns]]\nid = 'a'\ntest_spend_cap = 10.0\ntest_daily_budget = 20.0\n",
        "campaigns[0]",
        "exceeds test_spend_cap 10.0: not even one day fits",
    ),
    ("[[campaigns]]\ntest_spend_cap = 10.0\n", "campaigns[0].id", "missing required key"),
    ("[[campaigns]]\nid = 'a'\n[[campaigns]]\nid = 'a'\n", "campaigns", "must be unique"),
    ("[loop\n", "", "invalid TOML"),
    ("[meta]\napi_version = '26'\n", "meta.api_version", "should match pattern"),
]


@pytest.mark.parametrize(("text", "key", "problem"), BAD_CONFIGS)
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, text, key, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, err = run_cli(["status", "--config", str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"creative-loop: {path}")
    assert key in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in err


def test_missing_config_file(tmp_path, capsys):
    code, err = run_cli(["spend", "--config", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and "nope.toml: file not found" in err


def test_meta_campaign_without_caps_is_refused(tmp_path, capsys):
    path = tmp_path / "meta.toml"
    path.write_text("[loop]\nplatform = 'meta'\n[[campaigns]]\nid = 'a'\n")
    cfg = load_config(path)
    from loop.plans import campaign_plans

    with pytest.raises(ConfigError, match=r"campaigns\[a\]\.test_spend_cap: missing required key"):
        campaign_plans(cfg)


def test_missing_secret_names_the_variable(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text("[meta]\naccess_token_env = 'CL_TEST_TOKEN'\n")
    cfg = load_config(path)
    monkeypatch.delenv("CL_TEST_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="environment variable CL_TEST_TOKEN is not set"):
        cfg.secret("CL_TEST_TOKEN", "meta.access_token_env")


def test_bad_scenario_exits_2(tmp_path, capsys):
    path = tmp_path / "scenario.toml"
    path.write_text("seed = 1\n[[campaigns]]\nid = 'x'\ndaily_impressions = -3\n")
    code, err = run_cli(["simulate", "--scenario", str(path), "--out", str(tmp_path / "out"), "-q"], capsys)
    assert code == 2
    assert f"{path}: campaigns[0].daily_impressions" in err and "greater than 0" in err


def test_bad_cli_option_exits_2(tmp_path, capsys):
    code, err = run_cli(["simulate", "--tiering", "gold", "--out", str(tmp_path), "-q"], capsys)
    assert code == 2 and "tiering" in err and "tiered, pro-only" in err


def test_bundled_config_loads_and_is_the_example():
    cfg = load_config(BUNDLED_CONFIG)
    assert cfg.loop.platform == "simulated" and cfg.loop.approval == "pro"
    assert BUNDLED_CONFIG.resolve() == (ROOT / "config.example.toml").resolve()


def test_config_is_frozen():
    cfg = load_config(BUNDLED_CONFIG)
    with pytest.raises(Exception, match="frozen"):
        cfg.loop.approval = "none"  # type: ignore[misc]


def _models(model, seen=None):  # type: ignore[no-untyped-def]
    """Every settings model reachable from ``model``."""
    from pydantic import BaseModel

    seen = seen if seen is not None else []
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        for t in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(t, type) and issubclass(t, BaseModel):
                _models(t, seen)
    return seen


def test_example_documents_every_key():
    """Every settings key appears in config.example.toml with a comment on its line."""
    from loop.config import ConfigModel

    text = (ROOT / "config.example.toml").read_text()
    missing = [
        f"{model.__name__}.{key}"
        for model in _models(ConfigModel)
        if model is not ConfigModel
        for key in model.model_fields
        if not re.search(rf"^#?\s*{key}\s*=.*#", text, re.M)
    ]
    assert not missing, f"not documented in config.example.toml: {missing}"


@pytest.mark.parametrize(("amount", "minor"), [(0.1, 10), (19.99, 1999), (0.005, 1), (300, 30000), (1e-9, 0)])
def test_money_becomes_integer_minor_units(amount, minor):
    assert to_minor(amount) == minor
