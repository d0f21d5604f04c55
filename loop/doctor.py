"""``creative-loop doctor``: check what the loop needs, and say what to fix.

Checks, in order (a check that cannot run because an earlier one failed is
reported as skipped): the config parses; the data folder is writable; the
database answers; its schema is at the newest migration; the secrets the
config names are in the environment; the ad platform answers a read.
Exit code 0 when every check passes, 1 otherwise (2 for a config that does
not parse, like every command).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.text import Text

from loop.cli_support import ConfigOpt, console, say
from loop.config import Config, load_config
from policies.errors import CreativeLoopError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    fix: str = ""


def _data_dir(cfg: Config) -> Check:
    folder = cfg.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "data dir", False, f"{folder}: {exc.strerror or exc}", f"make {folder} writable or set loop.data_dir"
        )
    return Check("data dir", True, f"{folder.resolve()} is writable")


def _database(cfg: Config) -> tuple[Check, Check]:
    from sqlalchemy import text

    from storage.db import current_revision, head_revision, make_engine

    url = cfg.database_url
    try:
        engine = make_engine(url)
    except Exception as exc:  # a URL the driver refuses
        return (
            Check("database", False, f"{type(exc).__name__}: {exc}", "fix loop.database"),
            Check("migrations", None, "skipped: no database"),
        )
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db = Check("database", True, f"{shown} answers")
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        engine.dispose()
        return (
            Check("database", False, f"{shown}: {reason}", "start the database or fix loop.database"),
            Check("migrations", None, "skipped: no database"),
        )
    try:
        current, head = current_revision(engine), head_revision(engine)
    finally:
        engine.dispose()
    if current == head:
        return db, Check("migrations", True, f"at head ({head})")
    return db, Check(
        "migrations", False, f"at {current or 'none (empty database)'}, newest is {head}",
        "run `creative-loop tick --dry-run` (it migrates) or `alembic upgrade head`",
    )  # fmt: skip


def _secrets(cfg: Config) -> Check:
    names: list[tuple[str, str]] = []
    if "meta" in cfg.platforms:
        names.append(("meta.access_token_env", cfg.model.meta.access_token_env))
    if "google_ads" in cfg.platforms:
        g = cfg.model.google_ads
        names += [(f"google_ads.{k}", getattr(g, k)) for k in ("developer_token_env", "client_id_env", "client_secret_env", "refresh_token_env")]  # fmt: skip
    for campaign in cfg.model.campaigns:
        if cfg.campaign_settings(campaign.id).generator == "gemini":
            gemini = getattr(cfg.model, "gemini", None)
            env = getattr(gemini, "api_key_env", "GEMINI_API_KEY")
            names.append(("gemini.api_key_env", env))
            break
    missing = [f"{env} ({key})" for key, env in names if not os.environ.get(env)]
    if missing:
        return Check("secrets", False, "not set: " + ", ".join(missing), "export the variable(s) named in the config")
    return Check("secrets", True, ", ".join(env for _, env in names) + " set" if names else "none needed")


def _platform(cfg: Config) -> Check:
    from loop.app import make_platform

    label = cfg.loop.platform if cfg.loop.platform == "simulated" else "+".join(cfg.platforms)
    try:
        platform = make_platform(cfg)
    except CreativeLoopError as exc:
        return Check("platform", False, f"{label}: {exc}", "check the platform settings")
    seen: list[str] = []
    try:
        # One read per platform in use: the first campaign on each.
        firsts = {cfg.platform_of(c.id): c.id for c in reversed(cfg.model.campaigns)}
        ids = sorted(firsts.values()) or [c.id for c in getattr(platform, "scenario", None).campaigns][:1]  # type: ignore[union-attr]
        for cid in ids:
            seen.append(f"campaign {cid} lists {len(platform.list_ads(cid))} ad(s)")
    except CreativeLoopError as exc:
        return Check("platform", False, f"{label}: {exc}", "check the platform settings and access token")
    except Exception as exc:  # the doctor reports, it does not crash
        return Check("platform", False, f"{label}: {type(exc).__name__}: {exc}", "check the platform settings")
    finally:
        platform.close()
    return Check("platform", True, f"{label}: " + "; ".join(seen))


def run_checks(cfg: Config, platform: bool = True) -> list[Check]:
    secrets = _secrets(cfg)
    checks = [Check("config", True, f"{cfg.path} parses"), _data_dir(cfg), *_database(cfg), secrets]
    if not platform:
        checks.append(Check("platform", None, "skipped (--skip-platform)"))
    elif secrets.ok is False:
        checks.append(Check("platform", None, "skipped: secrets missing"))
    else:
        checks.append(_platform(cfg))
    return checks


def doctor(
    config: ConfigOpt = None,
    skip_platform: Annotated[bool, typer.Option("--skip-platform", help="Do not call the ad platform.")] = False,
) -> None:
    """Check config, database, migrations, secrets, platform and data folder; say what to fix."""
    cfg = load_config(config, check_paths=False)  # the data dir is one of the checks below
    checks = run_checks(cfg, platform=not skip_platform)
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = {True: ("ok  ", "green"), False: ("FAIL", "red"), None: ("skip", "yellow")}[c.ok]
        # The details quote errors and config keys ("[meta].access_token_env"): never read as markup.
        console.print(Text.assemble(mark, f" {c.name.ljust(width)}  {c.detail}"), highlight=False, soft_wrap=True)
        if c.fix and c.ok is False:
            say(f"      {''.ljust(width)}  fix: {c.fix}")
    failed = [c.name for c in checks if c.ok is False]
    say(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "all checks passed")
    if failed:
        raise typer.Exit(1)


__all__ = ["Check", "run_checks", "doctor"]
