"""The writers' locks and what the tick records (issue 15), in one process on both backends.

The multi-process behaviour (daemons, commands racing a daemon) is in
``test_writers.py``; here the pieces: the lock's identity, its re-entry, the
re-read under it, one tick record per day, ``attempts``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from reliability_helpers import make_runtime, run_days, write_scenario
from sqlalchemy import text
from sqlmodel import select

from loop.locks import campaign_lock
from loop.tick import INTERRUPTED, StopTick, close_unfinished, tick
from policies.errors import CreativeLoopError, TransientError
from storage.db import make_engine, migrate
from storage.db import session as open_session
from storage.models import Campaign, Creative, Experiment, PlatformMutation, TickRun


def try_in_thread(engine, campaign: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether another thread (as good as another process: it has its own lock handle) gets the lock now."""
    got: list[bool] = []

    def attempt() -> None:
        with campaign_lock(engine, campaign, wait=False) as held:
            got.append(held)

    t = threading.Thread(target=attempt)
    t.start()
    t.join(30)
    return got[0]


def test_a_campaign_lock_excludes_other_writers_and_is_reentrant(engine) -> None:  # type: ignore[no-untyped-def]
    with campaign_lock(engine, "shop") as held:
        assert held
        with campaign_lock(engine, "shop") as again:  # the tick inside a Celery task that holds it
            assert again
        assert try_in_thread(engine, "shop") is False
        assert try_in_thread(engine, "blog") is True  # campaigns do not wait for each other
    assert try_in_thread(engine, "shop") is True


def test_the_sqlite_lock_follows_the_database_file_not_its_name(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "db", target_is_directory=True)
    one = make_engine(f"sqlite:///{tmp_path / 'db' / 'x.db'}")
    other = make_engine(f"sqlite:///{tmp_path / 'alias' / '..' / 'db' / 'x.db'}")
    elsewhere = make_engine(f"sqlite:///{tmp_path / 'y.db'}")
    try:
        with campaign_lock(one, "shop"):
            assert try_in_thread(other, "shop") is False
            assert try_in_thread(elsewhere, "shop") is True
    finally:
        for e in (one, other, elsewhere):
            e.dispose()


@pytest.mark.postgres
def test_postgres_schemas_do_not_share_locks(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("schemas are PostgreSQL's")
    from reliability_helpers import pg_schema

    with pg_schema(db_url.split("?", 1)[0]) as other_url:
        mine, same, other = make_engine(db_url), make_engine(db_url), make_engine(other_url)
        try:
            with campaign_lock(mine, "shop"):
                assert try_in_thread(same, "shop") is False
                assert try_in_thread(other, "shop") is True
        finally:
            for e in (mine, same, other):
                e.dispose()


def test_a_decision_waits_for_the_lock_and_acts_on_what_is_stored_then(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``approve`` beside a tick: it waits, then reads the experiment again and finds it moved on."""
    from loop.reports import decide

    rt = make_runtime(engine, tmp_path / "run", write_scenario(tmp_path))
    with open_session(engine) as s:
        s.add(Campaign(id="shop"))
        s.add(Creative(id="shop:hero", campaign_id="shop", role="live", platform_ad_id="hero"))
        s.add(
            Experiment(
                id="e1", campaign_id="shop", parent_creative_id="shop:hero", state="awaiting_approval",
                waiting_for="drafts",
            )
        )  # fmt: skip
        s.commit()
    outcome: list[object] = []
    holding, release = threading.Event(), threading.Event()

    def tick_like() -> None:
        with campaign_lock(engine, "shop"):
            holding.set()
            release.wait(30)
            with open_session(engine) as s:  # the tick moves the experiment on before letting go
                exp = s.get(Experiment, "e1")
                assert exp is not None
                exp.state, exp.waiting_for = "abandoned", None
                s.add(exp)
                s.commit()

    def approve() -> None:
        try:
            outcome.append(decide(rt, "e1", True, "tester"))
        except CreativeLoopError as exc:
            outcome.append(exc)

    ticker = threading.Thread(target=tick_like)
    ticker.start()
    assert holding.wait(30)
    decider = threading.Thread(target=approve)
    decider.start()
    decider.join(0.5)
    assert decider.is_alive() and not outcome  # waiting for the campaign's lock
    release.set()
    ticker.join(30)
    decider.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], CreativeLoopError), outcome
    assert "experiment e1 already ended (abandoned)" in str(outcome[0])  # refused on the state read under the lock
    with open_session(engine) as s:
        exp = s.get(Experiment, "e1")
        assert exp is not None and exp.state == "abandoned" and exp.approved_stage is None


# -- the tick's record -------------------------------------------------------------------------
def test_a_day_is_one_record_however_often_it_is_tried(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(engine, tmp_path / "run", write_scenario(tmp_path))
    platform = rt.platform
    day = platform.today()
    calls = {"n": 0}

    def day_end() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("simulated platform: cannot save its state: No space left on device")
        platform.run_day()

    first = tick(rt, day, end_of_day=day_end, one_record_per_day=True)
    assert first.errors == [f"end of day {day}: simulated platform: cannot save its state: No space left on device"]
    assert platform.today() == day  # the day did not advance: it is tried again
    assert tick(rt, day, end_of_day=day_end, one_record_per_day=True).errors == []
    assert platform.today() > day
    with open_session(engine) as s:
        runs = s.exec(select(TickRun)).all()
        assert [(r.day, r.ok, r.attempts, r.error) for r in runs] == [(day, True, 2, "")]


def test_an_unfinished_record_is_closed_as_failed_then_reused(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(engine, tmp_path / "run", write_scenario(tmp_path))
    day = rt.platform.today()

    def killed(step: str) -> None:
        if step == "ingest":
            raise StopTick  # the process dies here; its record stays open

    rt.on_step = killed
    with pytest.raises(StopTick):
        tick(rt, day, one_record_per_day=True)
    assert close_unfinished(engine) == 1
    with open_session(engine) as s:
        (run,) = s.exec(select(TickRun)).all()
        assert run.finished_at is not None and run.ok is False and run.error == INTERRUPTED
    rt.on_step = None
    tick(rt, day, end_of_day=rt.platform.run_day, one_record_per_day=True)
    with open_session(engine) as s:
        assert [(r.day, r.ok, r.attempts) for r in s.exec(select(TickRun)).all()] == [(day, True, 2)]
    assert close_unfinished(engine) == 0


def test_attempts_count_a_send_cut_short_by_a_kill(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The send is counted before it goes out: after a kill right after it, the recovered mutation says 1."""
    rt = make_runtime(engine, tmp_path / "run", write_scenario(tmp_path))
    killed: list[str] = []

    def kill_after_first_launch(step: str) -> None:
        if step == "sent:LaunchTestArm" and not killed:
            killed.append(step)
            raise StopTick

    rt.on_step = kill_after_first_launch
    for _ in range(40):
        try:
            run_days(rt, 1)
        except StopTick:
            break
    assert killed, "no arm was launched in 40 days"
    rt.on_step = None
    tick(rt, rt.platform.today())  # the restart finds the ad on the platform: no second send
    with open_session(engine) as s:
        launches = s.exec(select(PlatformMutation).where(PlatformMutation.kind == "LaunchTestArm")).all()
        assert launches and all(m.status == "done" and m.attempts == 1 for m in launches), [
            (m.key, m.status, m.attempts) for m in launches
        ]


def test_migrating_from_many_threads_at_once(db_url: str) -> None:
    """The migration lock: several migrations of one new database at the same moment, one schema, one account row."""
    url = db_url
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        engine = make_engine(url)
        try:
            start.wait(30)
            migrate(engine)
        except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = make_engine(url)
    try:
        from storage.db import current_revision, head_revision

        assert current_revision(engine) == head_revision(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM accountcap")).scalars().all() == ["account"]
    finally:
        engine.dispose()
