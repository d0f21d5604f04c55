"""A real browser against a live ``creative-loop serve``: approve a pending pro render by clicking.

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
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from loop.app import build_runtime, open_engine
from loop.config import Config
from loop.tick import tick
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


@pytest.fixture
def server(filled: Config) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "CREATIVE_LOOP_USER": "browser-test"}
    env.pop("CL_TEST_WEB_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loop", "serve", "--config", str(filled.path), "--port", str(port)],
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


def test_approve_a_pro_render_in_a_real_browser(server: str, filled: Config, lead: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` does)")
    sync_api = pytest.importorskip("playwright.sync_api")
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
