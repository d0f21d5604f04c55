"""The CLI on the Meta platform (the fake Graph server): tick, status, doctor; literal lines, one writer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_graph import APP_SECRET, TOKEN, FakeGraph, Fault, seed_account
from sqlalchemy import inspect

from loop.cli import main
from storage.db import make_engine
from storage.db import session as open_session


@pytest.fixture
def meta_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FakeGraph, dict[str, Any]]]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("CL_TEST_META_TOKEN", TOKEN)
    monkeypatch.setenv("CL_TEST_META_SECRET", APP_SECRET)
    with FakeGraph() as graph:
        ids = seed_account(graph)
        path = tmp_path / "creative-loop.toml"
        path.write_text(
            f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n'
            'platform = "meta"\n'
            f'[meta]\ngraph_url = "{graph.base_url}"\naccess_token_env = "CL_TEST_META_TOKEN"\n'
            'app_secret_env = "CL_TEST_META_SECRET"\napp_id = "app"\n'
            f'[[campaigns]]\nid = "lead-gen"\naccount_id = "act_111"\ncampaign_id = "{ids["main"]}"\n'
            f'test_campaign_id = "{ids["test"]}"\ntest_spend_cap = 300.0\ncredit_cap = 50.0\n'
            "test_daily_budget = 20.0\nfast_credit_cost = 0.02\npro_credit_cost = 0.60\n"
        )
        yield path, graph, ids
    logging.getLogger().handlers[:] = []  # the CLI configured logging


def counters(db: Path) -> dict[tuple[str, str], float]:
    from storage.counters import read_all

    engine = make_engine(f"sqlite:///{db}")
    try:
        with open_session(engine) as s:
            return {(c.name, c.labels): c.value for c in read_all(s)}
    finally:
        engine.dispose()


def test_doctor_on_a_fresh_database_reports_and_writes_nothing(meta_config, capsys) -> None:  # type: ignore[no-untyped-def]
    path, graph, _ = meta_config
    assert main(["doctor", "--config", str(path)]) == 1
    out = capsys.readouterr()
    assert "FAIL migrations  at none (empty database)" in out.out
    assert "ok   platform    meta: campaign lead-gen lists 2 ad(s)" in out.out
    assert "counter" not in out.out + out.err  # no "could not store Meta API counters: no such table"
    engine = make_engine(f"sqlite:///{path.parent / 'db.sqlite'}")
    try:
        assert inspect(engine).get_table_names() == []  # the doctor checks; it does not write
    finally:
        engine.dispose()


def test_tick_stores_the_api_counts_through_its_own_session(meta_config, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    path, graph, _ = meta_config
    caplog.set_level(logging.WARNING)
    assert main(["tick", "--config", str(path)]) == 0
    calls = len(graph.seen)
    stored = counters(path.parent / "db.sqlite")
    assert stored[("meta_api_calls", 'method="GET",platform="meta"')] == calls  # every call, none lost
    assert not [r for r in caplog.records if "counters" in r.getMessage()]
    assert main(["tick", "--dry-run", "--config", str(path)]) == 0  # a dry run's reads are real calls too
    assert counters(path.parent / "db.sqlite")[("meta_api_calls", 'method="GET",platform="meta"')] == len(graph.seen)


def test_error_lines_are_printed_literally(meta_config, capsys) -> None:  # type: ignore[no-untyped-def]
    path, graph, _ = meta_config
    graph.faults.append(Fault(code=190, subcode=463, times=None, message="Session has expired [at 12:00]"))
    assert main(["tick", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error: lead-gen:"))
    assert "Session has expired [at 12:00]" in line
    assert "the environment variable that [meta].access_token_env names" in line
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[meta].access_token_env" in out and "flag: campaign lead-gen halted" in out
    assert main(["doctor", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL platform    meta: Meta list ads: (#190/463) Session has expired [at 12:00]" in out
    assert "[meta].access_token_env names" in out


def test_status_lists_ads_that_do_not_deliver_with_their_reason(meta_config, capsys) -> None:  # type: ignore[no-untyped-def]
    path, graph, ids = meta_config
    graph.objects[ids["ads"][1]]["review"] = "DISAPPROVED"
    assert main(["tick", "--config", str(path)]) == 0
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if ids["ads"][1] in x)
    assert "paused (DISAPPROVED)" in row
    assert "active" in next(x for x in out.splitlines() if ids["ads"][0] in x)
