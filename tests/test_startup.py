"""Start-up cost: a command imports what it uses (STYLE.md rule 16).

Each check runs a fresh interpreter and reads its ``sys.modules``; nothing
here measures time (bench/startup.py does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Never needed to start the CLI: the dashboard's web stack and plots, statistics, torch, Celery,
# and the database stack (only commands that open a database load it).
NOT_FOR_THE_CLI = (
    "matplotlib", "fastapi", "starlette", "jinja2", "scipy", "scipy.stats", "torch", "celery",
    "sqlalchemy", "alembic",
)  # fmt: skip
# Not needed before a tick runs: a tick imports scipy only when an experiment is advanced,
# Alembic only to migrate.
NOT_FOR_THE_TICK = ("matplotlib", "fastapi", "starlette", "jinja2", "scipy", "torch", "celery", "alembic")


def _env() -> dict[str, str]:
    """This environment with the checkout first on the path (the children import this tree)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def loaded_after(*modules: str, wanted: tuple[str, ...]) -> list[str]:
    """Which of ``wanted`` a new interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {list(wanted)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_dependency() -> None:
    assert loaded_after("loop.cli", wanted=NOT_FOR_THE_CLI) == []


def test_the_tick_command_imports_no_statistics_web_stack_or_migrations() -> None:
    assert loaded_after("loop.cli", "loop.daemon", wanted=NOT_FOR_THE_TICK) == []


def test_a_whole_tick_without_experiments_loads_no_statistics_web_stack_or_migrations(tmp_path: Path) -> None:
    """Two whole ticks of the bundled example (the first creates the database): no experiment is open,
    so neither tick needs ``loop.experiments`` and the scipy it brings."""
    (tmp_path / "creative-loop.toml").write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n'
    )
    code = (
        "import json, sys\n"
        "from loop.cli import main\n"
        "assert main(['tick']) == 0 and main(['tick']) == 0\n"
        f"print(json.dumps([m for m in {list(NOT_FOR_THE_TICK) + ['loop.experiments']!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_help_still_lists_every_command() -> None:
    """The commands registered from their own modules (doctor, worker, fix, serve, report, insights) are all there."""
    out = subprocess.run(
        [sys.executable, "-m", "loop", "--help"], cwd=ROOT, env={**_env(), "COLUMNS": "200"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for command in ("simulate", "tick", "run", "status", "spend", "approve", "reject", "doctor", "worker", "fix",
                    "serve", "report", "insights"):  # fmt: skip
        assert f" {command} " in out.stdout, command


def test_the_quick_schema_check_agrees_with_alembic(tmp_path: Path) -> None:
    """``migrate`` skips Alembic when the version table holds the scripts' head: the same head Alembic finds."""
    from alembic import command

    from storage.db import _known_at_head, _scripts_head, alembic_config, head_revision, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert _scripts_head() == head_revision(engine)
        assert not _known_at_head(engine)  # a new database: no version table
        command.upgrade(alembic_config(engine), "0002")
        assert not _known_at_head(engine)  # an old schema is Alembic's to upgrade
        migrate(engine)
        assert _known_at_head(engine)
    finally:
        engine.dispose()
