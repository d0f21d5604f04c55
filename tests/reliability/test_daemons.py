"""Daemons under trouble: two on one database (one acts, the other takes over), a database outage.

Real ``creative-loop run`` processes with a one-second interval on the
simulated platform (one tick = one simulated day).  Waits poll the database
with generous safety limits; nothing asserts on timing.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
from pathlib import Path

import pytest
from reliability_helpers import (
    assert_guarantees,
    free_port,
    start,
    subprocess_env,
    wait_for,
    write_config,
    write_scenario,
)
from sqlmodel import select

from storage.db import make_engine
from storage.db import session as open_session
from storage.models import TickRun

INTERVAL_MINUTES = 1 / 60  # one second


def tick_runs(engine) -> list[TickRun]:  # type: ignore[no-untyped-def]
    with open_session(engine) as s:
        return list(s.exec(select(TickRun).order_by(TickRun.started_at)).all())


def finished(engine) -> int:  # type: ignore[no-untyped-def]
    try:
        return sum(1 for r in tick_runs(engine) if r.finished_at is not None)
    except Exception:  # the schema is not there yet
        return 0


def assert_no_overlap(runs: list[TickRun]) -> None:
    done = [r for r in runs if r.finished_at is not None]
    for a, b in zip(done, done[1:], strict=False):
        assert b.started_at >= a.finished_at, f"ticks overlap: {a.started_at}..{a.finished_at} and {b.started_at}"


def logged(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def test_two_daemons_one_acts_the_other_takes_over(db_url: str, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, db_url, write_scenario(tmp_path), interval_minutes=INTERVAL_MINUTES, log_format="json"
    )
    engine = make_engine(db_url)
    try:
        _two_daemons(engine, config, tmp_path)
    finally:
        engine.dispose()  # also when an assertion fails: no connection left for a later test to trip on


def _two_daemons(engine, config: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    first = start(["-m", "loop", "run", "--config", str(config)], subprocess_env(), logs[0])
    second = None
    try:
        wait_for(lambda: finished(engine) >= 2, 90, "the first daemon's ticks")
        second = start(["-m", "loop", "run", "--config", str(config)], subprocess_env(), logs[1])
        wait_for(lambda: logged(logs[1], "waiting to take over"), 60, "the second daemon to wait for the lock")
        before = finished(engine)
        wait_for(lambda: finished(engine) >= before + 3, 60, "more ticks from the first daemon")
        assert not logged(logs[1], "daemon started"), "the second daemon acted while the first held the lock"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed_at = finished(engine)
        wait_for(lambda: logged(logs[1], "daemon started"), 60, "the second daemon to take over")
        wait_for(lambda: finished(engine) >= killed_at + 3, 60, "ticks from the second daemon")
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    runs = tick_runs(engine)
    assert_no_overlap(runs)
    # One record per day: the SIGKILL may land inside a tick, before or after the day's delivery is
    # saved; the next daemon closes the open record as failed and, if the day was not delivered,
    # ticks it again on that same record. None is left open.
    state = json.loads((tmp_path / "data" / "simulated-platform.json").read_text())
    days = [r.day for r in runs]
    assert all(r.finished_at is not None for r in runs)
    assert len(days) == len(set(days)) and state["day"] >= len(days), days
    for log in logs:
        assert "cannot schedule new futures" not in log.read_text(errors="replace")
    assert_guarantees(engine, tmp_path / "data" / "simulated-platform.json", state["day"])


class Proxy:
    """A TCP proxy on loopback in front of PostgreSQL that a test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break every open one (the database 'goes away')."""
        assert self.listener is not None
        self.listener.close()
        self.listener = None
        with self.lock:
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_database_outage_the_daemon_backs_off_and_resumes(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the outage is a PostgreSQL server going away")
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = write_config(
        tmp_path, proxied, write_scenario(tmp_path), interval_minutes=INTERVAL_MINUTES, log_format="json"
    )
    engine = make_engine(db_url)  # the test's own view, not through the proxy
    try:
        log = tmp_path / "daemon.log"
        daemon = start(["-m", "loop", "run", "--config", str(config)], subprocess_env(), log)
        try:
            wait_for(lambda: finished(engine) >= 3, 90, "ticks before the outage")
            proxy.cut()
            during = finished(engine)
            wait_for(lambda: log.read_text(errors="replace").count('"level": "error"') + log.read_text(errors="replace").count('"level": "warning"') >= 2, 60, "the daemon to log the outage")  # fmt: skip
            assert daemon.poll() is None, "the daemon died in the outage"
            assert finished(engine) <= during + 1  # at most the tick in flight finished
            proxy.restore()
            wait_for(lambda: finished(engine) >= during + 4, 120, "ticks after the database came back")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        state = json.loads((tmp_path / "data" / "simulated-platform.json").read_text())
        assert_guarantees(engine, tmp_path / "data" / "simulated-platform.json", state["day"])
        assert_no_overlap(tick_runs(engine))
    finally:
        engine.dispose()  # also when an assertion fails


@pytest.mark.postgres
def test_run_started_while_the_database_is_down_waits_for_it(db_url: str, tmp_path: Path) -> None:
    """`run` with the database away from the start: one line per try, backing off, then it acts."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the outage is a PostgreSQL server going away")
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.cut()  # down before the daemon starts
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = write_config(tmp_path, proxied, write_scenario(tmp_path), interval_minutes=INTERVAL_MINUTES)
    engine = make_engine(db_url)
    log = tmp_path / "daemon.log"
    daemon = start(["-m", "loop", "run", "--config", str(config)], subprocess_env(), log)
    try:
        wait_for(lambda: log.read_text(errors="replace").count("trying again in") >= 2, 60, "two tries logged")
        assert daemon.poll() is None, log.read_text()
        text = log.read_text(errors="replace")
        assert f"cannot use PostgreSQL at 127.0.0.1:{proxy.port}" in text and "Traceback" not in text, text
        proxy.restore()
        wait_for(lambda: finished(engine) >= 2, 120, "ticks once the database is back")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        engine.dispose()
