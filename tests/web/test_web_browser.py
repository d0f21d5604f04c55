"""A real browser against a live ``creative-loop serve``: approve a pending pro render by clicking;
hostile labels shown as text (no dialog, no broken chart); the approval card's weak-evidence warning.

Debian's ``chromium`` (``/usr/bin/chromium``) driven by the ``playwright``
package through ``executable_path`` (no browser download).  Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlmodel import select
from web_states import HOSTILE, States, seed, write_site_config

from loop.app import build_runtime, open_engine
from loop.config import Config
from loop.tick import tick
from storage.db import make_engine, migrate
from storage.db import session as open_session
from storage.models import AuditEvent, Experiment

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CREATIVE_LOOP_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(config: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "CREATIVE_LOOP_USER": "browser-test"}
    env.pop("CL_TEST_WEB_TOKEN", None)
    env.pop("CREATIVE_LOOP_DATABASE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"creative-loop serve did not come up: {out}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def server(filled: Config) -> Iterator[str]:
    with _serve(filled.path) as base:
        yield base


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[str, States]]:
    """``creative-loop serve`` over the hand-made database with a hostile label on every creative."""
    folder = tmp_path / "hostile"
    config = write_site_config(folder)
    url = f"sqlite:///{folder / 'hostile.db'}"
    config.write_text(config.read_text().replace(f"sqlite:///{folder / 'unused.db'}", url))
    engine = make_engine(url)
    migrate(engine)
    states = seed(engine, hostile=True)
    engine.dispose()
    with _serve(config) as base:
        yield base, states


def _chromium():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` does)")
    return pytest.importorskip("playwright.sync_api")


def test_approve_a_pro_render_in_a_real_browser(server: str, filled: Config, lead: str) -> None:
    sync_api = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server}/")
            assert page.locator('[data-campaign="lead-gen"]').is_visible()
            page.screenshot(path=str(ARTIFACTS / "web-overview.png"), full_page=True)
            page.click("text=Approvals")
            card = page.locator(f'[data-experiment="{lead}"]')
            assert card.is_visible()
            assert card.locator("text=pro render to approve").is_visible()
            assert card.locator('input[type="text"][name="who"]').input_value() == "browser-test"
            page.screenshot(path=str(ARTIFACTS / "web-approvals.png"), full_page=True)
            card.locator("button.approve").click()  # one click
            page.wait_for_url("**/approvals?done=approve*")
            assert page.locator('[role="status"]').inner_text() == f"Approved {lead}."
            done = page.locator(f'[data-experiment="{lead}"]')
            assert done.locator('[data-approved="pro"]').is_visible()  # approved, waiting for the next tick
            assert done.locator("button.approve").count() == 0
            page.screenshot(path=str(ARTIFACTS / "web-approved.png"), full_page=True)
            page.goto(f"{server}/experiments/{lead}")
            page.screenshot(path=str(ARTIFACTS / "web-experiment.png"), full_page=True)
            page.goto(f"{server}/gallery?campaign=lead-gen")
            page.screenshot(path=str(ARTIFACTS / "web-gallery.png"), full_page=True)
            # Every image on the gallery loaded from the store (thumbnails load lazily: ask for all of them).
            page.evaluate(
                "Promise.all(Array.from(document.images).map(i => { i.loading = 'eager';"
                " return i.complete ? null : new Promise(r => { i.onload = i.onerror = r; }); }))"
            )
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length")
            assert broken == 0
        finally:
            browser.close()

    engine = open_engine(filled.database_url)
    try:
        with open_session(engine) as s:
            exp = s.get(Experiment, lead)
            assert exp is not None and exp.approved_stage == "pro"
            [approved] = s.exec(
                select(AuditEvent).where(AuditEvent.name == "Approved", AuditEvent.experiment_id == lead)
            ).all()
            assert approved.actor == "web:browser-test" and approved.data["stage"] == "pro"
        # The daemon's next tick acts on the approval: the pro render goes live.
        rt = build_runtime(filled, engine=engine)
        tick(rt, rt.platform.today())  # type: ignore[attr-defined]
        with open_session(engine) as s:
            exp = s.get(Experiment, lead)
            assert exp is not None and exp.state == "scaled"
            assert s.exec(select(AuditEvent).where(AuditEvent.name == "WinnerScaled")).first() is not None
    finally:
        engine.dispose()


def test_hostile_labels_and_the_weak_evidence_warning_in_a_real_browser(hostile: tuple[str, States]) -> None:
    sync_api = _chromium()
    base, states = hostile
    ARTIFACTS.mkdir(exist_ok=True)
    dialogs: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            paths = ["/", "/approvals", "/gallery", "/audit", "/ledger"]
            paths += [f"/creatives/{quote(c, safe='')}" for c in states.creatives.values()]
            paths += [f"/experiments/{quote(e, safe='')}" for e in states.experiments.values()]
            for path in paths:
                response = page.goto(f"{base}{path}")
                assert response is not None and response.status == 200, path
                # Every chart is a valid image (a broken SVG has no natural width).
                broken = page.evaluate(
                    "Array.from(document.querySelectorAll('img.chart')).filter(i => !i.complete || !i.naturalWidth).length"
                )
                assert broken == 0, path
            page.goto(f"{base}/")
            for cid in states.creatives.values():  # every live creative's name shown as text, as written
                assert page.locator(f'[data-creative="{cid}"] a').first.inner_text() == states.labels[cid]
            assert page.locator(f"text={HOSTILE[4]}").count() > 0
            page.screenshot(path=str(ARTIFACTS / "web-hostile-overview.png"), full_page=True)
            page.goto(f"{base}/approvals")
            card = page.locator(f'[data-experiment="{states.weak}"]')
            warning = card.locator('[data-evidence="weak"]')
            assert warning.is_visible()
            assert "Weak evidence" in warning.inner_text() and "below the target 0.95" in warning.inner_text()
            assert "212" in card.locator("table.arms").inner_text()
            assert card.locator("button.approve").inner_text() == "Approve despite weak evidence"
            strong = page.locator(f'[data-experiment="{states.strong}"]')
            assert strong.locator('[data-evidence="weak"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "web-approval-weak-evidence.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [], dialogs  # no label ran as script
