"""The image guards inside the loop: brand check on drafts, fidelity check on the pro render, credits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from images_helpers import (
    ScriptedGenerator,
    make_runtime,
    run_until,
    tiny_model_dir_fixture,  # noqa: F401 (the tiny_model_dir fixture)
)
from sqlmodel import select

from policies import brand
from storage.db import session as open_session
from storage.ledger import Ledger
from storage.models import AuditEvent, Creative, Experiment

BLUE, RED = (37, 99, 235), (220, 38, 38)
PALETTE = ("#2563eb",)


def _exp(s) -> Experiment | None:  # type: ignore[no-untyped-def]
    return s.exec(select(Experiment).where(Experiment.parent_creative_id == "shop:hero")).first()


def _left(state: str):  # type: ignore[no-untyped-def]
    def done(s) -> bool:  # type: ignore[no-untyped-def]
        exp = _exp(s)
        return exp is not None and exp.state not in ("detected", state)

    return done


def _events(s, name: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    return list(s.exec(select(AuditEvent).where(AuditEvent.name == name).order_by(AuditEvent.id)).all())


def _drafts(s, exp: Experiment) -> list[Creative]:  # type: ignore[no-untyped-def]
    return list(s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "draft")).all())


def _settle_keys(s, exp: Experiment) -> dict[str, tuple[int, bool]]:  # type: ignore[no-untyped-def]
    """key -> (actual spent, released) for the experiment's credit entries."""
    from storage.models import LedgerEntry

    out: dict[str, tuple[int, bool]] = {}
    for e in s.exec(select(LedgerEntry).where(LedgerEntry.experiment_id == exp.id, LedgerEntry.account == "credit")):
        spent, released = out.get(e.key, (0, False))
        out[e.key] = (spent + (e.amount_minor if e.kind == "actual" else 0), released or e.kind == "release")
    return out


BRAND = {"brand_palette": PALETTE, "brand_tolerance": 5.0, "brand_max_off_share": 0.3}


def test_brand_flag_keeps_the_draft_and_stores_delta_e(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path, ScriptedGenerator([BLUE, RED]), brand_action="flag", **BRAND)
    run_until(rt, _left("exploring"))
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        drafts = _drafts(s, exp)
        assert len(drafts) == 6
        flags = [d.flags["brand"] for d in drafts]
        assert [f["ok"] for f in flags] == [True, False] * 3
        assert all(f["worst_delta_e"] > 40 for f in flags if not f["ok"])
        failed = _events(s, "BrandCheckFailed")
        assert len(failed) == 3 and {e.data["action"] for e in failed} == {"flag"}
        assert Ledger(s).spent("shop", "credit", exp.id) == 6 * 2  # all six drafts were paid for


def test_brand_reject_drops_the_draft_and_releases_its_credit(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path, ScriptedGenerator([BLUE, RED]), brand_action="reject", **BRAND)
    run_until(rt, _left("exploring"))
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        drafts = _drafts(s, exp)
        assert [d.label for d in drafts] == ["v1", "v3", "v5"]  # the red ones never became variants
        assert all(d.flags["brand"]["ok"] for d in drafts)
        keys = _settle_keys(s, exp)
        for label in ("v2", "v4", "v6"):
            assert keys[f"credit:{exp.id}:{label}"] == (0, True)  # released, nothing spent
        assert keys[f"credit:{exp.id}:v1"] == (2, True)
        assert exp.state in ("testing", "decided", "rendering", "scaled")


def test_brand_reject_of_every_draft_abandons(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path, ScriptedGenerator([RED]), brand_action="reject", **BRAND)
    run_until(rt, _left("exploring"))
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        assert exp.state == "abandoned" and "0 variant" in exp.reason
        ledger = Ledger(s)
        assert ledger.spent("shop", "credit", exp.id) == 0
        assert ledger.open_reservations("shop", "credit") == []


def test_brand_correct_stores_the_corrected_image(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path, ScriptedGenerator([RED]), brand_action="correct", **BRAND)
    run_until(rt, _left("exploring"))
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        drafts = _drafts(s, exp)
        assert len(drafts) == 6
        for d in drafts:
            f = d.flags["brand"]
            assert f["corrected"] is True and f["before"]["ok"] is False and f["ok"] is True
            assert d.recipe["brand_correction"]["palette"] == ["#2563eb"]
            pixels = np.asarray(rt.images.open(d.image_hash).convert("RGB"))
            assert brand.check(pixels, PALETTE, 5.0, 0.3).ok


def _until_pro(s) -> bool:  # type: ignore[no-untyped-def]
    exp = _exp(s)
    return exp is not None and exp.state in ("awaiting_approval", "scaled", "abandoned", "rendering")


def test_fidelity_retry_at_lower_strength_passes(sqlite_engine, tmp_path: Path) -> None:
    gen = ScriptedGenerator([BLUE])
    rt = make_runtime(
        sqlite_engine, tmp_path, gen, pro_strength=0.2, fidelity_threshold=0.6, fidelity_retries=2,
        fidelity_strength_factor=0.5,
    )  # fmt: skip
    run_until(rt, _until_pro)
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        assert exp.state == "scaled", (exp.state, exp.reason)
        assert exp.pro_creative_id == f"{exp.winner_creative_id}:pro-r1"
        pros = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "pro")).all()
        checks = {p.id: p.flags["fidelity"] for p in pros if "fidelity" in p.flags}
        first, retry = checks[f"{exp.winner_creative_id}:pro"], checks[f"{exp.winner_creative_id}:pro-r1"]
        assert not first["ok"] and first["strength"] == 0.2
        assert retry["ok"] and retry["strength"] == 0.1 and retry["ssim"] > first["ssim"]
        assert [e.data["attempt"] for e in _events(s, "FidelityCheckFailed")] == [0]
        keys = _settle_keys(s, exp)
        assert keys[f"credit:{exp.id}:pro"] == (60, True) and keys[f"credit:{exp.id}:pro-r1"] == (60, True)
        assert f"credit:{exp.id}:pro-r2" not in keys  # no third render was needed


def test_fidelity_failing_every_retry_waits_for_a_person(sqlite_engine, tmp_path: Path) -> None:
    from loop.experiments import approve

    rt = make_runtime(
        sqlite_engine, tmp_path, ScriptedGenerator([BLUE]), pro_strength=0.2, fidelity_threshold=0.95,
        fidelity_retries=1,
    )  # fmt: skip
    run_until(rt, _until_pro)
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        assert exp.state == "awaiting_approval" and exp.waiting_for == "pro"  # even with approval = "none"
        assert "fidelity" in exp.reason
        # the more faithful of the two renders is the one offered
        assert exp.pro_creative_id == f"{exp.winner_creative_id}:pro-r1"
        assert len(_events(s, "FidelityCheckFailed")) == 2
        assert Ledger(s).open_reservations("shop", "credit") == []
        approve(rt, s, exp, actor="reviewer")
    run_until(rt, lambda s: _exp(s).state == "scaled", max_days=2)
    with open_session(sqlite_engine) as s:
        assert _exp(s).state == "scaled"


def test_failed_fidelity_retry_releases_its_credit(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(
        sqlite_engine, tmp_path, ScriptedGenerator([BLUE], fail_pro=[1]), pro_strength=0.2,
        fidelity_threshold=0.95, fidelity_retries=2,
    )  # fmt: skip
    run_until(rt, _until_pro)
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        assert exp.state == "awaiting_approval" and exp.pro_creative_id == f"{exp.winner_creative_id}:pro"
        keys = _settle_keys(s, exp)
        assert keys[f"credit:{exp.id}:pro"] == (60, True)
        assert keys[f"credit:{exp.id}:pro-r1"] == (0, True)  # the failed retry cost nothing
        assert f"credit:{exp.id}:pro-r2" not in keys
        assert [e.data["variant"] for e in _events(s, "GenerationFailed")] == [f"{exp.winner_creative_id}:pro-r1"]


def test_fidelity_retry_stops_at_the_credit_cap(sqlite_engine, tmp_path: Path) -> None:
    # room for six drafts and one pro render (0.12 + 0.60), not for a retry
    rt = make_runtime(
        sqlite_engine, tmp_path, ScriptedGenerator([BLUE]), credit_cap=0.75, pro_strength=0.2,
        fidelity_threshold=0.95, fidelity_retries=2,
    )  # fmt: skip
    run_until(rt, _until_pro)
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        assert exp.state == "awaiting_approval"
        assert "credit" in [e.data["account"] for e in _events(s, "CapReached") if e.experiment_id == exp.id]
        assert f"credit:{exp.id}:pro-r1" not in _settle_keys(s, exp)  # the retry was never reserved
        state = Ledger(s).state("shop", "credit")
        assert state.spent + state.reserved <= state.cap


@pytest.mark.diffusion
def test_diffusers_backend_through_the_loop(sqlite_engine, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Real DiffusersGenerator code in the loop: drafts, the same-seed pro render, credits, fidelity flag."""
    from connectors.images.diffusers import DiffusersGenerator, PipelineCache, TierSpec

    gen = DiffusersGenerator(
        fast=TierSpec(model=str(tiny_model_dir), steps=2, width=64, height=64, strength=0.5),
        pro=TierSpec(model=str(tiny_model_dir), steps=2, width=128, height=128, strength=0.5),
        cache=PipelineCache(),
    )
    rt = make_runtime(
        sqlite_engine, tmp_path, gen, generator="diffusers", prompt_template="{message} for {brand_terms}",
        brand_terms=("Acme",), fidelity_threshold=0.99, fidelity_retries=1,
    )  # fmt: skip
    run_until(rt, _until_pro)
    with open_session(sqlite_engine) as s:
        exp = _exp(s)
        drafts = _drafts(s, exp)
        assert len(drafts) == 6
        assert all(d.generator == "diffusers" and d.prompt == "Fresh deals for Acme" for d in drafts)
        assert all((d.width, d.height) == (64, 64) for d in drafts)
        # random weights cannot keep a composition: the guard retries at half strength, then asks a person
        assert exp.state == "awaiting_approval" and exp.waiting_for == "pro"
        winner = s.get(Creative, exp.winner_creative_id)
        pros = s.exec(select(Creative).where(Creative.experiment_id == exp.id, Creative.role == "pro")).all()
        assert sorted(p.flags["fidelity"]["strength"] for p in pros) == [0.25, 0.5]
        assert all(p.seed == winner.seed and (p.width, p.height) == (128, 128) for p in pros)
        assert Ledger(s).spent("shop", "credit", exp.id) == 6 * 2 + 2 * 60
