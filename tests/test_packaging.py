"""The base install runs the CLI and `make run` without any optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = (
    "torch", "diffusers", "transformers", "celery", "kombu", "google.genai", "google.ads", "grpc", "playwright",
    "psycopg", "redis",
)  # fmt: skip

BLOCK = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {OPTIONAL!r}):
            raise ImportError(f"{{name}} is an optional extra (blocked by the test)")
sys.meta_path.insert(0, Block())
from loop.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_cli_starts_without_extras(tmp_path: Path) -> None:
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("simulate", "tick", "run", "status", "spend", "approve", "reject", "serve", "report", "doctor"):
        assert command in proc.stdout


def test_make_runs_job_works_without_extras(tmp_path: Path) -> None:
    proc = run("simulate", "--days", "5", "--out", str(tmp_path / "out"), "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "result.json").exists()


def test_an_extra_that_is_missing_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\nexecutor = "celery"\n'
        '[simulated]\nlayout = "per-campaign"\n'
    )
    proc = run("tick", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'creative-loop[celery]'" in proc.stderr


def test_the_google_ads_extra_missing_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\nplatform = "google_ads"\n'
        '[[campaigns]]\nid = "shop"\ncampaign_id = "111"\ntest_spend_cap = 300.0\ncredit_cap = 50.0\n'
        "test_daily_budget = 20.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.6\n"
    )
    proc = run("tick", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'creative-loop[google]'" in proc.stderr


def test_a_postgresql_url_without_the_driver_names_what_to_install(tmp_path: Path) -> None:
    """The base install carries psycopg; an environment without it gets one line naming the extra."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'[loop]\ndatabase = "postgresql+psycopg://postgres@127.0.0.1:5432/test"\ndata_dir = "{tmp_path / "data"}"\n'
    )
    proc = run("status", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'creative-loop[postgres]'" in lines[0], proc.stderr
