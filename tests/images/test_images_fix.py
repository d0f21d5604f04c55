"""`creative-loop fix`: inpaint a region through the CLI, bit-exact outside the mask, credits reserved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from images_helpers import (
    SCENARIO,
    tiny_model_dir_fixture,  # noqa: F401 (the tiny_model_dir fixture)
)
from PIL import Image
from sqlmodel import select

from loop.cli import main
from storage.db import make_engine, migrate
from storage.db import session as open_session
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import AuditEvent, Campaign, Creative, LedgerEntry

VARIANT = "shop:exp1:v3"


def _setup(tmp_path: Path, model: Path | None, credit_cap_minor: int = 500, generator: str = "diffusers") -> Path:
    """A config, a database with one campaign and one 96x80 variant, and its image in the store."""
    data = tmp_path / "data"
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    db = tmp_path / "loop.db"
    cfg = tmp_path / "creative-loop.toml"
    cfg.write_text(
        f"""
[loop]
database = "sqlite:///{db}"
data_dir = "{data}"
[simulated]
scenario = "{tmp_path / "scenario.toml"}"
[defaults]
generator = "{generator}"
brand_palette = ["#2563eb"]
[diffusers]
device = "cpu"
fast_model = "{model}"
pro_model = "{model}"
fast_size = [64, 64]
pro_size = [64, 64]
pro_steps = 2
pro_guidance = 0.0
pro_strength = 0.5
inpaint_steps = 2
"""
    )
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(80, 96, 3), dtype=np.uint8))
    digest = ImageStore(data / "images").put(image)
    with open_session(engine) as s:
        s.add(Campaign(id="shop", credit_cap_minor=credit_cap_minor, test_spend_cap_minor=50000))
        s.add(
            Creative(
                id=VARIANT,
                campaign_id="shop",
                role="draft",
                experiment_id="exp1",
                label="v3",
                tier="fast",
                seed=7,
                image_hash=digest,
                width=96,
                height=80,
                headline="Fresh deals",
            )  # fmt: skip
        )
        s.commit()
    engine.dispose()
    return cfg


def _mask(tmp_path: Path, size: tuple[int, int] = (96, 80), box: tuple[int, ...] = (20, 10, 60, 50)) -> Path:
    mask = Image.new("L", size, 0)
    if box:
        mask.paste(255, box)
    path = tmp_path / "mask.png"
    mask.save(path)
    return path


def _db(cfg: Path):  # type: ignore[no-untyped-def]
    return make_engine(f"sqlite:///{cfg.parent / 'loop.db'}")


pytestmark = pytest.mark.diffusion


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREATIVE_LOOP_DATABASE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_fix_repaints_the_mask_only_and_records_a_new_variant(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = _setup(tmp_path, tiny_model_dir)
    mask = _mask(tmp_path)
    rc = main(["fix", VARIANT, "--mask", str(mask), "--prompt", "a red sneaker", "--config", str(cfg)])
    assert rc == 0, capsys.readouterr().err
    assert f"fixed {VARIANT} -> {VARIANT}:fix1" in capsys.readouterr().out
    engine = _db(cfg)
    store = ImageStore(tmp_path / "data" / "images")
    with open_session(engine) as s:
        old, new = s.get(Creative, VARIANT), s.get(Creative, f"{VARIANT}:fix1")
        assert new.parent_id == VARIANT and new.role == "fix" and new.experiment_id == "exp1"
        assert new.generator == "diffusers" and new.model == str(tiny_model_dir) and new.tier == "fast"
        assert new.prompt == "a red sneaker" and new.seed is not None
        assert new.recipe["inpaint"]["source"] == old.image_hash and new.recipe["inpaint"]["mask"] in store
        assert "brand" in new.flags  # the campaign's palette is checked on fixes too
        before = np.asarray(store.open(old.image_hash).convert("RGB"))
        after = np.asarray(store.open(new.image_hash).convert("RGB"))
        outside = np.asarray(Image.open(mask)) == 0
        np.testing.assert_array_equal(after[outside], before[outside])
        assert not np.array_equal(after[~outside], before[~outside])
        ledger = Ledger(s)
        assert ledger.spent("shop", "credit") == 2  # a fast-tier fix costs a fast variant
        assert ledger.open_reservations("shop", "credit") == []
        (event,) = s.exec(select(AuditEvent).where(AuditEvent.name == "VariantFixed")).all()
        assert event.data["creative"] == f"{VARIANT}:fix1"
    # a second fix of the same variant is fix2, and the same seed option repaints identically
    assert main(["fix", VARIANT, "--mask", str(mask), "--prompt", "x", "--seed", "3", "--config", str(cfg)]) == 0
    assert main(["fix", VARIANT, "--mask", str(mask), "--prompt", "x", "--seed", "3", "--config", str(cfg)]) == 0
    with open_session(engine) as s:
        a, b = s.get(Creative, f"{VARIANT}:fix2"), s.get(Creative, f"{VARIANT}:fix3")
        assert a.image_hash == b.image_hash and a.seed == b.seed == 3
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope:v1"], "no creative 'nope:v1'"),
        ([VARIANT, "--size", "64x64"], "mask.png: size: expected 96x80 (the variant's size), got 64x64"),
        ([VARIANT, "--box", ""], "mask.png: mask: expected some white (repaint) pixels"),
        ([VARIANT, "--prompt", " "], "--prompt: prompt: expected a description"),
    ],
)
def test_fix_bad_input_is_one_line_exit_2(tmp_path: Path, tiny_model_dir: Path, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    cfg = _setup(tmp_path, tiny_model_dir)
    size, box, prompt = (96, 80), (20, 10, 60, 50), "a red sneaker"
    if "--size" in args:
        size = (64, 64)
    if "--box" in args:
        box = ()
    if "--prompt" in args:
        prompt = " "
    mask = _mask(tmp_path, size, box)
    rc = main(["fix", args[0], "--mask", str(mask), "--prompt", prompt, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    engine = _db(cfg)
    with open_session(engine) as s:  # nothing left reserved, nothing spent
        assert Ledger(s).open_reservations("shop", "credit") == []
        assert Ledger(s).spent("shop", "credit") == 0
        if "--box" in args:  # the failed generation reserved, then released
            kinds = sorted(e.kind for e in s.exec(select(LedgerEntry)).all())
            assert kinds == ["release", "reserve"]
    engine.dispose()


def test_fix_needs_a_generator_that_can_inpaint(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = _setup(tmp_path, Path("unused"), generator="procedural")
    rc = main(["fix", VARIANT, "--mask", str(_mask(tmp_path)), "--prompt", "x", "--config", str(cfg)])
    assert rc == 2
    assert "generator 'procedural' cannot inpaint" in capsys.readouterr().err


def test_fix_respects_the_credit_cap(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = _setup(tmp_path, tiny_model_dir, credit_cap_minor=1)
    rc = main(["fix", VARIANT, "--mask", str(_mask(tmp_path)), "--prompt", "x", "--config", str(cfg)])
    assert rc == 1 and "credit cap" in capsys.readouterr().err
    engine = _db(cfg)
    with open_session(engine) as s:
        assert s.exec(select(LedgerEntry)).all() == []
        assert s.get(Creative, f"{VARIANT}:fix1") is None
    engine.dispose()
