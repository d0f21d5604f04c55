"""``creative-loop fix VARIANT --mask mask.png --prompt "..."``: repaint a region of a variant.

The white part of the mask is repainted by the campaign's generator
(``diffusers`` or ``gemini``); every pixel outside it stays bit-exact.  The
result is a new creative (role ``fix``) whose parent is the old one, with the
prompt, seed, model and mask recorded so it can be rendered again.  Like every
generation it reserves its credit in the ledger before it runs; a failure
releases the reservation.  The reservation and the storing of the result
each run under the campaign's lock (``loop.locks.campaign_lock``), the
generation between them does not: a slow inpaint never holds up the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loop.cli_support import ConfigOpt, config_from, current_actor, say, utf8_text
from policies.errors import ConfigError, NotFound
from storage.states import CreativeRole, CreativeStatus

if TYPE_CHECKING:  # the CLI imports this module to register `fix`: images and the database load on use
    from PIL import Image
    from sqlmodel import Session

    from loop.config import Config
    from storage.models import Creative

MAX_CREATIVE_ID = 200  # storage.models.Creative.id

VARIANT_FIXED = "VariantFixed"


def _load_mask(path: Path) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        mask = Image.open(path)
        mask.load()
    except FileNotFoundError:
        raise ConfigError(str(path), "mask", "file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(str(path), "mask", f"not an image: {exc}") from None
    return mask


def _plan_for(cfg: Config, campaign_id: str) -> Any:
    from loop.app import platform_scenario
    from loop.plans import campaign_plans

    scenario = platform_scenario(cfg)
    for plan in campaign_plans(cfg, scenario):
        if plan.id == campaign_id:
            return plan
    raise ConfigError(str(cfg.path), "campaigns", f"campaign {campaign_id!r} is not configured")


def _next_fix_id(session: Session, variant: Creative) -> tuple[str, int]:
    from sqlmodel import col, select

    from storage.models import Creative, LedgerEntry

    taken = set(session.exec(select(Creative.id).where(Creative.parent_id == variant.id)).all())
    # A fix still being generated has its reservation but no creative yet.
    prefix = f"credit:fix:{variant.id}:fix"
    taken |= {
        key.removeprefix("credit:fix:")
        for key in session.exec(select(LedgerEntry.key).where(col(LedgerEntry.key).startswith(prefix))).all()
    }
    n = 1
    while f"{variant.id}:fix{n}" in taken:
        n += 1
    new_id = f"{variant.id}:fix{n}"
    if len(new_id) > MAX_CREATIVE_ID:
        raise ConfigError(
            "VARIANT", "variant", f"a fix of {variant.id!r} would need an id longer than {MAX_CREATIVE_ID} characters"
        )
    return new_id, n


@dataclass
class _Reserved:
    """What steps 1-2 found and reserved, for the generation and the storing after them."""

    old: Creative
    image: Image.Image
    plan: Any
    inpaint: Any
    new_id: str
    n: int
    seed: int
    tier: str
    cost: int
    key: str


def fix_variant(
    cfg: Config, variant_id: str, mask_path: Path, prompt: str, seed: int | None = None, actor: str = "cli"
) -> Creative:
    """Inpaint ``variant_id`` under the mask; returns the new (committed) creative."""
    from loop import events
    from loop.app import open_engine
    from loop.locks import campaign_lock
    from storage.db import session as open_session
    from storage.images import ImageStore
    from storage.ledger import Ledger
    from storage.models import Creative

    # 1. check inputs before anything is reserved
    if not prompt.strip():
        raise ConfigError("--prompt", "prompt", "expected a description of what to paint, got ''")
    mask = _load_mask(mask_path)
    engine = open_engine(cfg.database_url)
    images = ImageStore(cfg.data_dir / "images")
    try:
        with open_session(engine) as session:
            found = session.get(Creative, variant_id)
            if found is None:
                raise NotFound(f"no creative {variant_id!r} with an image in this database", creative=variant_id)
            with campaign_lock(engine, found.campaign_id):
                res = _reserve(cfg, session, images, variant_id, mask, mask_path, prompt, seed)
            # 3. generate, outside the lock; any failure releases the reservation
            ledger = Ledger(session)
            try:
                r = res.inpaint(res.image, mask, prompt, res.seed, tier=res.tier)
            except BaseException as exc:
                session.rollback()
                with campaign_lock(engine, res.plan.id):
                    ledger.settle(res.key, None, note=f"failed: {exc}")
                    events.record(
                        session, events.GENERATION_FAILED, res.plan.id, res.old.experiment_id, actor=actor,
                        variant=res.new_id, error=str(exc), refused=bool(getattr(exc, "refused", False)),
                    )  # fmt: skip
                    session.commit()
                if isinstance(exc, ValueError):
                    raise ConfigError(str(mask_path), "mask", str(exc).removeprefix("mask: ")) from None
                raise
            # 4. store the fixed image as a new variant of the old one, with its recipe
            with campaign_lock(engine, res.plan.id):
                return _store(session, images, res, mask, prompt, r, actor)
    finally:
        engine.dispose()


def _reserve(
    cfg: Config, session: Session, images: Any, variant_id: str, mask: Image.Image, mask_path: Path, prompt: str,
    seed: int | None,
) -> _Reserved:  # fmt: skip
    """Steps 1-2, under the campaign's lock: the variant as stored now, the fix's id, its credit reserved."""
    from connectors.images.procedural import stable_seed
    from connectors.images.registry import GENERATORS
    from loop.app import make_generators
    from storage.ledger import Ledger
    from storage.models import Creative

    session.expire_all()  # read again now that the lock is held
    old = session.get(Creative, variant_id)
    if old is None or not old.image_hash or old.image_hash not in images:
        raise NotFound(f"no creative {variant_id!r} with an image in this database", creative=variant_id)
    image = images.open(old.image_hash).convert("RGB")
    if mask.size != image.size:
        raise ConfigError(
            str(mask_path), "size",
            f"expected {image.width}x{image.height} (the variant's size), got {mask.width}x{mask.height}",
        )  # fmt: skip
    plan = _plan_for(cfg, old.campaign_id)
    gen = make_generators(cfg)[plan.settings.generator]
    if not gen.can_inpaint:
        able = " or ".join(e.name for e in GENERATORS if e.inpaint)
        raise ConfigError(
            str(cfg.path), f"campaigns[{plan.id}].generator",
            f"generator {plan.settings.generator!r} cannot inpaint: use {able}",
        )  # fmt: skip
    inpaint = gen.inpaint
    new_id, n = _next_fix_id(session, old)
    seed = stable_seed(old.id, prompt, n) if seed is None else int(seed)
    tier = old.tier or "fast"
    cost = plan.pro_credit_cost if tier == "pro" else plan.fast_credit_cost
    # 2. reserve the credit (CapExceeded stops here, with nothing spent)
    key = f"credit:fix:{new_id}"
    Ledger(session).reserve(plan.id, "credit", key, cost, old.experiment_id, tier, f"fix of {old.id}")
    session.commit()
    return _Reserved(old, image, plan, inpaint, new_id, n, seed, tier, cost, key)


def _store(
    session: Session, images: Any, res: _Reserved, mask: Image.Image, prompt: str, r: Any, actor: str
) -> Creative:
    import numpy as np

    from loop import events
    from policies import brand
    from storage.ledger import Ledger
    from storage.models import Creative

    old, plan, new_id, n = res.old, res.plan, res.new_id, res.n
    binary = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
    mask_digest = images.put(binary)
    flags: dict[str, Any] = {}
    if plan.settings.brand_palette:
        verdict = brand.check(
            np.asarray(r.image), plan.settings.brand_palette, plan.settings.brand_tolerance,
            plan.settings.brand_max_off_share,
        )  # fmt: skip
        flags["brand"] = {**verdict.as_flags(), "action": "flag"}
    fixed = Creative(
        id=new_id, campaign_id=old.campaign_id, role=CreativeRole.FIX, parent_id=old.id, experiment_id=old.experiment_id,
        label=f"{old.label or 'creative'}-fix{n}"[:40], status=CreativeStatus.CANDIDATE, headline=old.headline,
        recipe={**r.recipe, "inpaint": {"source": old.image_hash, "mask": mask_digest}}, prompt=r.prompt,
        seed=r.seed, generator=r.generator, model=r.model, tier=res.tier, width=r.image.width,
        height=r.image.height, image_hash=images.put(r.image), flags=flags,
    )  # fmt: skip
    session.add(fixed)
    Ledger(session).settle(res.key, res.cost, note=f"fixed {old.id} as {new_id}")
    events.record(
        session, VARIANT_FIXED, plan.id, old.experiment_id, actor=actor, variant=old.id, creative=new_id,
        seed=r.seed, model=r.model, mask=mask_digest, prompt=prompt,
    )  # fmt: skip
    session.commit()
    session.refresh(fixed)
    session.expunge(fixed)
    return fixed


def fix(
    variant: Annotated[
        str, typer.Argument(metavar="VARIANT", help="The creative to fix (its id).", callback=utf8_text)
    ],
    mask: Annotated[Path, typer.Option(help="Mask PNG of the variant's size: white = repaint, black = keep.")],
    prompt: Annotated[str, typer.Option(help="What to paint in the white region.", callback=utf8_text)],
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: derived from the variant and the prompt).")] = None,
) -> None:
    """Repaint a region of a variant; the result is a new variant with the old one as parent."""
    fixed = fix_variant(config_from(config), variant, mask, prompt, seed, actor=current_actor())
    say(f"fixed {variant} -> {fixed.id} ({fixed.generator} {fixed.model}, seed {fixed.seed}, image {fixed.image_hash})")
