"""The backend registries: what registering costs, what the config and the loop read from them, old keys."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.ads.registry import PLATFORMS, PlatformEntry
from connectors.images.base import GeneratorSettings, ImageGenerator
from connectors.images.registry import GENERATORS, GeneratorEntry
from connectors.registry import EnvSecrets, Registry, load
from connectors.settings import Settings
from loop.app import make_generators
from loop.config import load_config
from policies.errors import ConfigError, GenerationError, NotFound

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[loop]\ndata_dir = "{tmp_path / "data"}"\n' + text)
    return path


# -- the registries ---------------------------------------------------------------------------------
def test_the_built_in_backends_are_registered() -> None:
    assert PLATFORMS.names()[:3] == ("simulated", "meta", "google_ads")
    assert GENERATORS.names()[:3] == ("procedural", "diffusers", "gemini")
    assert [e.name for e in PLATFORMS if e.scenario] == ["simulated"]
    assert PLATFORMS.get("google_ads").overspend == 2.0 and PLATFORMS.get("google_ads").extra == "google"
    assert [e.name for e in GENERATORS if e.inpaint][:2] == ["diffusers", "gemini"]


def test_registering_loads_no_sdk() -> None:
    """The config and the registries import the backends' settings, never their SDKs."""
    code = (
        "import sys\nimport loop.config, connectors.ads.registry, connectors.images.registry\n"
        "heavy = [m for m in ('facebook_business', 'google.ads', 'grpc', 'google.genai', 'torch', 'diffusers') "
        "if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_registry_refuses_what_it_cannot_serve() -> None:
    reg: Registry[PlatformEntry] = Registry("platform")
    entry = PlatformEntry("mine", Settings, "connectors.ads.sharded:simulated_platform")
    reg.register(entry)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(entry)
    with pytest.raises(ValueError, match=r"section \[mine\] is 'mine'"):
        reg.register(PlatformEntry("other", Settings, "x:y", section="mine"))
    with pytest.raises(NotFound, match=r"unknown platform 'nope' \(registered: mine\)"):
        reg.get("nope")
    with pytest.raises(ValueError, match="lower-case"):
        PlatformEntry("My-Platform", Settings, "x:y")
    with pytest.raises(ValueError, match="secret 'token_env' is not a text field"):
        PlatformEntry("mine", Settings, "x:y", secrets=("token_env",))
    with pytest.raises(ValueError, match="expected 'package.module:attribute'"):
        load("connectors.ads.sharded")
    assert load("connectors.ads.sharded:simulated_platform").__name__ == "simulated_platform"


def test_registered_for_a_block_then_gone() -> None:
    class Mine(ImageGenerator):
        name = "mine"

        def draft(self, source, brief, seed):  # type: ignore[no-untyped-def]
            raise GenerationError("never drafts")

        def render_pro(self, source, draft, brief):  # type: ignore[no-untyped-def]
            raise GenerationError("never renders")

    with GENERATORS.registered(GeneratorEntry("mine", GeneratorSettings, lambda ctx: Mine())):
        assert "mine" in GENERATORS
        cfg = load_config(ROOT / "config.example.toml")
        assert isinstance(cfg.section("mine"), GeneratorSettings)
        import pickle

        again = pickle.loads(pickle.dumps(cfg))  # process pools (simulate --compare) get the config pickled
        assert again.section("mine") == cfg.section("mine") and again.model == cfg.model
    assert "mine" not in GENERATORS
    with pytest.raises(GenerationError, match="generator 'mine' cannot inpaint") as err:
        Mine().inpaint(None, None, "x", 1)  # type: ignore[arg-type]
    assert err.value.refused and Mine().strength("pro") is None


def test_env_secrets_name_the_key_and_never_the_value() -> None:
    from connectors.meta.settings import MetaSettings

    secrets = EnvSecrets(MetaSettings(access_token_env="T_X"), "meta", "c.toml", {"T_X": "s3cret"})
    assert secrets("access_token_env") == "s3cret"
    assert secrets("app_secret_env", required=False) == ""
    with pytest.raises(ConfigError) as err:
        secrets("app_secret_env")
    assert (err.value.file, err.value.key) == ("c.toml", "meta.app_secret_env")
    assert "META_APP_SECRET is not set" in err.value.problem


# -- what the config reads from them ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('platform = "tiktok"\n', "loop.platform", "unknown platform 'tiktok' (registered: simulated, meta, google_ads"),
        ('[defaults]\ngenerator = "dalle"\n', "defaults.generator", "unknown generator 'dalle' (registered: procedural"),
        ('platform = "meta"\n[[campaigns]]\nid = "a"\nplatform = "simulated"\n', "campaigns[0].platform",
         "unknown platform 'simulated' (a campaign may name: meta, google_ads"),
        ('[[campaigns]]\nid = "a"\nplatform = "meta"\n', "campaigns[0].platform", "per-campaign platforms need"),
    ],
)  # fmt: skip
def test_names_are_checked_against_the_registries(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert f"{key}: " in str(err.value) and problem in err.value.problem, err.value


def test_a_missing_extra_names_the_key_that_asked_for_it(tmp_path: Path) -> None:
    with GENERATORS.registered(
        GeneratorEntry("absent", GeneratorSettings, "x:y", extra="absent", requires=("no_such_module_xyz",))
    ):
        cfg = load_config(write(tmp_path, '[[campaigns]]\nid = "a"\ngenerator = "absent"\n'))
        with pytest.raises(ConfigError) as err:
            make_generators(cfg)
    assert err.value.key == "campaigns[0].generator"
    assert err.value.problem == "the absent backend needs: pip install 'creative-loop[absent]'"


# -- backfill_days moved to [loop] ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "days", "deprecated"),
    [
        ("", 7, []),
        ("backfill_days = 12\n", 12, []),
        ("[meta]\nbackfill_days = 3\n", 3, ["meta.backfill_days"]),  # the simulator read [meta]'s
        ('platform = "google_ads"\n[meta]\nbackfill_days = 30\n', 7, ["meta.backfill_days"]),
        ('platform = "google_ads"\n[google_ads]\nbackfill_days = 20\n', 20, ["google_ads.backfill_days"]),
        ('platform = "meta"\n[[campaigns]]\nid = "m"\n[[campaigns]]\nid = "g"\nplatform = "google_ads"\n'
         "[meta]\nbackfill_days = 5\n[google_ads]\nbackfill_days = 9\n", 9,
         ["meta.backfill_days", "google_ads.backfill_days"]),  # the longest window of the platforms in use
        ("backfill_days = 4\n[meta]\nbackfill_days = 30\n", 4, ["meta.backfill_days"]),  # [loop] wins
    ],
)  # fmt: skip
def test_backfill_days_is_the_loops_and_the_old_keys_still_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, days: int, deprecated: list[str]
) -> None:
    from loop.app import backfill_days

    head, _, sections = text.partition("[")
    path = write(tmp_path, head + ("[" + sections if sections else ""))
    caplog.set_level(logging.WARNING, logger="creative_loop.config")
    cfg = load_config(path)
    assert cfg.loop.backfill_days == days == backfill_days(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "creative_loop.config"]
    assert lines == [f"{path}: {k} is deprecated; set backfill_days in [loop] instead" for k in deprecated]
    caplog.clear()
    assert load_config(path).loop.backfill_days == days  # a daemon reads its file every tick: said once
    assert not [r for r in caplog.records if r.name == "creative_loop.config"]


def test_an_old_backfill_key_is_still_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[meta]\nbackfill_days = 500\n"))
    assert err.value.key == "meta.backfill_days" and "less than or equal to 90" in err.value.problem


def test_queued_generators_know_each_backends_strengths_without_building_it(tmp_path: Path) -> None:
    """A Celery tick queues jobs for every registered generator, with the strengths its settings give."""
    from loop.tasks import make_queued_generators
    from storage.images import ImageStore

    cfg = load_config(write(tmp_path, "[diffusers]\npro_strength = 0.4\nfast_mode = 'text2img'\n"))
    queued = make_queued_generators(None, cfg, ImageStore(tmp_path / "images"))
    assert set(GENERATORS.names()) <= set(queued)
    assert queued["diffusers"].strength("pro") == 0.4 and queued["diffusers"].strength("fast") is None
    assert queued["procedural"].strength("pro") is None and queued["gemini"].strength("pro") is None
