"""``creative-loop doctor``: check what the loop needs, and say what to fix.

Checks, in order (a check that cannot run because an earlier one failed is
reported as skipped): the config parses; the data folder is writable; the
database answers; its schema is at the newest migration; the secrets the
config names are in the environment; the extras of the platforms and
generators in use are installed; the ad platform answers a read.  What a
backend needs comes from its registry line (``connectors.ads.registry``,
``connectors.images.registry``).
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

from connectors.registry import Entry
from loop.cli_support import ConfigOpt, console, literal, say
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


def _platforms(cfg: Config) -> list[str]:
    """The platforms in use (a scenario-driven one, the simulator, is the only one of its deployment)."""
    from connectors.ads.registry import PLATFORMS

    return [cfg.loop.platform] if PLATFORMS.get(cfg.loop.platform).scenario else cfg.platforms


def _in_use(cfg: Config) -> list[Entry]:
    """The registry lines of the platforms and generators this config uses."""
    from connectors.ads.registry import PLATFORMS
    from connectors.images.registry import GENERATORS
    from loop.app import generators_in_use

    return [*(PLATFORMS.get(n) for n in _platforms(cfg)), *(GENERATORS.get(n) for n in generators_in_use(cfg))]


def _secrets(cfg: Config) -> Check:
    from connectors.registry import EnvSecrets

    names: list[tuple[str, str]] = []
    for entry in _in_use(cfg):
        env = EnvSecrets(cfg.section(entry.section), entry.section, str(cfg.path))
        names += [(f"{entry.section}.{key}", env.variable(key)) for key in entry.secrets]
    missing = [f"{env} ({key})" for key, env in names if not os.environ.get(env)]
    if missing:
        return Check("secrets", False, "not set: " + ", ".join(missing), "export the variable(s) named in the config")
    return Check("secrets", True, ", ".join(env for _, env in names) + " set" if names else "none needed")


def _extras(cfg: Config) -> Check:
    needed = [f"{e.name}: {e.missing()}" for e in _in_use(cfg) if e.missing()]
    if needed:
        return Check("extras", False, "not installed: " + "; ".join(needed), "install the extra(s) named")
    return Check("extras", True, "installed: " + ", ".join(sorted({e.name for e in _in_use(cfg)})))


def _platform(cfg: Config) -> Check:
    from loop.app import make_platform

    label = "+".join(_platforms(cfg))
    try:
        platform = make_platform(cfg)
    except CreativeLoopError as exc:
        return Check("platform", False, f"{label}: {exc}", "check the platform settings")
    seen: list[str] = []
    try:
        # One read per platform in use: the first campaign on each.
        firsts = {cfg.platform_of(c.id): c.id for c in reversed(cfg.model.campaigns)}
        scenario = platform.scenario
        ids = sorted(firsts.values()) or ([c.id for c in scenario.campaigns][:1] if scenario is not None else [])
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
    secrets, extras = _secrets(cfg), _extras(cfg)
    checks = [Check("config", True, f"{cfg.path} parses"), _data_dir(cfg), *_database(cfg), secrets, extras]
    if not platform:
        checks.append(Check("platform", None, "skipped (--skip-platform)"))
    elif secrets.ok is False:
        checks.append(Check("platform", None, "skipped: secrets missing"))
    elif extras.ok is False:
        checks.append(Check("platform", None, "skipped: extras missing"))
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
        console.print(
            Text.assemble(mark, literal(f" {c.name.ljust(width)}  {c.detail}")), highlight=False, soft_wrap=True
        )
        if c.fix and c.ok is False:
            say(f"      {''.ljust(width)}  fix: {c.fix}")
    failed = [c.name for c in checks if c.ok is False]
    say(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "all checks passed")
    if failed:
        raise typer.Exit(1)


__all__ = ["Check", "run_checks", "doctor"]
