"""Operations: JSON logs carry campaign and experiment and never a token; `creative-loop doctor`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import ROOT, make_runtime, run_days, subprocess_env, write_config, write_scenario

from loop.logs import ContextFilter, JsonFormatter, RedactingFilter, log_context


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())
        self.addFilter(ContextFilter())
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_every_loop_log_line_names_its_campaign_and_experiment(sqlite_engine, tmp_path: Path) -> None:
    handler = Lines()
    root = logging.getLogger("creative_loop")
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        rt = make_runtime(sqlite_engine, tmp_path / "run", write_scenario(tmp_path))
        run_days(rt, 30)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    docs = [json.loads(line) for line in handler.lines]
    loop_lines = [d for d in docs if d["logger"] in ("creative_loop.tick", "creative_loop.experiments")]
    assert loop_lines, docs
    assert all(d["campaign"] == "shop" for d in loop_lines), [d for d in loop_lines if d["campaign"] != "shop"]
    moves = [d for d in loop_lines if "→" in d["msg"]]
    assert moves and all(d["experiment"] and d["msg"].startswith(d["experiment"]) for d in moves)
    assert any("fatigue detected" in d["msg"] and d["experiment"] for d in loop_lines)
    assert all(set(d) >= {"at", "level", "logger", "msg", "campaign", "experiment"} for d in docs)


def test_tokens_are_redacted_in_messages_and_tracebacks() -> None:
    handler = Lines()
    log = logging.getLogger("creative_loop.test")
    log.addHandler(handler)
    try:
        with log_context(campaign="shop"):
            log.warning("GET https://graph/x?access_token=EAAB-secret-1&fields=id")
            try:
                raise RuntimeError('{"access_token": "EAAB-secret-2"}')
            except RuntimeError:
                log.exception("Authorization: Bearer EAAB-secret-3")
    finally:
        log.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert "EAAB-secret" not in text and text.count("***") >= 3
    assert all(json.loads(line)["campaign"] == "shop" for line in handler.lines)


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loop", "doctor", "--config", str(config), *extra],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip


def test_doctor_passes_on_a_working_setup_and_names_what_to_fix(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    good = write_config(tmp_path / "good", f"sqlite:///{db}", write_scenario(tmp_path))
    first = doctor(good)
    assert first.returncode == 1 and "FAIL migrations" in first.stdout and "alembic upgrade head" in first.stdout
    assert subprocess.run(
        [sys.executable, "-m", "loop", "tick", "--config", str(good)], env=subprocess_env(), cwd=ROOT, capture_output=True
    ).returncode == 0  # fmt: skip
    ok = doctor(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all checks passed" in ok.stdout and "lists 2 ad(s)" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[loop]\ndatabase = "postgresql+psycopg://postgres:hunter2@127.0.0.1:9/none"\n'
        f'data_dir = "{tmp_path / "file"}/sub"\nplatform = "meta"\n[meta]\naccess_token_env = "CL_DOCTOR_NOT_SET"\n'
    )
    (tmp_path / "file").write_text("a file, not a folder")
    out = doctor(bad)
    assert out.returncode == 1
    for line in (
        "FAIL data dir",
        "FAIL database",
        "skip migrations",
        "FAIL secrets",
        "CL_DOCTOR_NOT_SET",
        "skip platform",
    ):
        assert line in out.stdout, out.stdout
    assert "hunter2" not in out.stdout + out.stderr
    assert "3 problem(s): data dir, database, secrets" in out.stdout

    broken = tmp_path / "broken.toml"
    broken.write_text("[loop]\ncolour = 1\n")
    assert doctor(broken).returncode == 2


def test_text_log_lines_name_the_campaign_and_experiment(capsys) -> None:  # type: ignore[no-untyped-def]
    import logging

    from loop.logs import configure, log_context

    configure("text")
    try:
        log = logging.getLogger("creative_loop.test")
        with log_context(campaign="shop", experiment="shop:hero:2026-01-20"):
            log.info("allocation set access_token=SECRET123")
        log.info("outside a campaign")
    finally:
        logging.getLogger().handlers[:] = []
    err = capsys.readouterr().err.splitlines()
    assert "creative_loop.test [shop / shop:hero:2026-01-20]: allocation set access_token=***" in err[0]
    assert "SECRET123" not in err[0]
    assert "creative_loop.test: outside a campaign" in err[1]


def test_log_lines_follow_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging configured once writes to whatever stderr is now, never to a stream closed since."""
    import io

    from loop.logs import configure

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure("text")
    logging.getLogger("creative_loop.tick").warning("campaign %s: first", "shop")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("creative_loop.tick").warning("campaign %s: second", "shop")
    assert second.getvalue().rstrip().endswith("campaign shop: second"), second.getvalue()
