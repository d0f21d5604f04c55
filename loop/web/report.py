"""The offline report: one self-contained HTML file (charts and images embedded, works offline).

``creative-loop report`` writes one from a shell; the dashboard queues the
same command as a background job (:class:`ReportJobs`), in a process of its
own, so a large report never slows a page and a closed browser tab does not
leave work running in the server.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from loop.config import Config
from loop.plans import CampaignPlan
from loop.web.charts import ChartCache
from loop.web.views import embedded_image_url, make_env, report_context, write_file
from policies.errors import ConfigError
from storage.db import session as open_session
from storage.images import ImageStore

log = logging.getLogger("creative_loop.web")
REPORT_NAME = re.compile(r"^report-(?P<campaign>[A-Za-z0-9_.-]+)-(?P<stamp>\d{8}-\d{6})-(?P<id>[0-9a-f]{8})\.html$")
JOB_TIMEOUT_S = 3 * 3600


def known_plans(cfg: Config) -> dict[str, CampaignPlan]:
    """The campaigns' plans (budgets, caps, policy targets) as the loop sees them; empty if the config has none."""
    from loop.app import platform_scenario
    from loop.plans import campaign_plans

    try:
        scenario = platform_scenario(cfg)
        return {p.id: p for p in campaign_plans(cfg, scenario)}
    except ConfigError as exc:
        log.info("campaign plans unavailable (%s): cap bars fall back to the share of each cap", exc)
        return {}


def render_report(
    engine: Engine,
    images: ImageStore,
    campaign: str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    plans: Mapping[str, CampaignPlan] | None = None,
    cache: ChartCache | None = None,
) -> str:
    """The report as a string; raises ``NotFound`` for a campaign the database does not hold."""
    now = (clock or (lambda: datetime.now(UTC)))()
    with open_session(engine) as session:
        ctx = report_context(session, campaign, plans=plans, cache=cache)
        return (
            make_env()
            .get_template("report.html")
            .render(
                **ctx,
                report=True,
                img=embedded_image_url(images),
                generated_at=now,
                title=f"creative-loop report · {campaign or 'all campaigns'}",
            )
        )


def write_report(
    engine: Engine,
    images: ImageStore,
    out_path: str | Path,
    campaign: str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    plans: Mapping[str, CampaignPlan] | None = None,
) -> Path:
    """Write the report to ``out_path`` (atomically) and return the path."""
    return write_file(Path(out_path), render_report(engine, images, campaign, clock=clock, plans=plans))


@dataclass
class ReportJob:
    id: str
    campaign: str | None
    file: str
    asked_at: datetime
    state: str = "queued"  # queued | running | done | failed
    seconds: float | None = None
    error: str = ""
    size: int = 0


def _safe(name: str) -> str:
    """``name`` as a file-name part :data:`REPORT_NAME` accepts (ASCII: "café" would be written, then never served)."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_" for ch in name)[:80] or "_"


class ReportJobs:
    """Reports written in the background, one at a time, by ``creative-loop report`` in a child process.

    ``command(campaign, out)`` is the argv to run (default: this Python's
    ``-m loop report`` with the dashboard's config and database), ``env`` its
    environment.  Finished files stay in ``folder`` and are listed after a
    restart too.
    """

    def __init__(
        self,
        folder: Path,
        command: Callable[[str | None, Path], list[str]],
        env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.folder = folder
        self.command = command
        self.env = dict(env or os.environ)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._jobs: dict[str, ReportJob] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[ReportJob] = queue.Queue()
        self._worker: threading.Thread | None = None

    @classmethod
    def for_config(cls, cfg: Config, engine: Engine, clock: Callable[[], datetime] | None = None) -> ReportJobs:
        nice = shutil.which("nice")

        def command(campaign: str | None, out: Path) -> list[str]:
            argv = [sys.executable, "-m", "loop", "report", "--config", str(cfg.path), "--out", str(out)]
            if campaign:
                argv += ["--campaign", campaign]
            # Below the server's priority: a page request wins the CPU over a report.
            return [nice, "-n", "10", *argv] if nice else argv

        env = {**os.environ, "CREATIVE_LOOP_DATABASE": engine.url.render_as_string(hide_password=False)}
        return cls(cfg.data_dir / "reports", command, env, clock)

    # -- asking -------------------------------------------------------------------------
    def submit(self, campaign: str | None) -> ReportJob:
        """Queue a report (or return the one already queued or running for the same campaign)."""
        with self._lock:
            for job in self._jobs.values():
                if job.campaign == campaign and job.state in ("queued", "running"):
                    return job
            now = self.clock()
            jid = secrets.token_hex(4)
            job = ReportJob(jid, campaign, f"report-{_safe(campaign or 'all')}-{now:%Y%m%d-%H%M%S}-{jid}.html", now)
            self._jobs[jid] = job
            self._queue.put(job)
            if self._worker is None:
                # One idle daemon thread per dashboard, started by its first report.
                self._worker = threading.Thread(target=self._work, name="creative-loop-reports", daemon=True)
                self._worker.start()
        return job

    def jobs(self) -> list[ReportJob]:
        """Every job of this process and every report file left by earlier ones, newest first."""
        with self._lock:
            out = [ReportJob(**vars(j)) for j in self._jobs.values()]
        known = {j.file for j in out}
        if self.folder.is_dir():
            for p in self.folder.glob("report-*.html"):
                m = REPORT_NAME.match(p.name)
                if m is None or p.name in known:
                    continue
                st = p.stat()
                out.append(
                    ReportJob(
                        m["id"], m["campaign"] if m["campaign"] != "all" else None, p.name,
                        datetime.fromtimestamp(st.st_mtime, UTC), "done", None, "", st.st_size,
                    )
                )  # fmt: skip
        return sorted(out, key=lambda j: j.asked_at, reverse=True)

    def path(self, name: str) -> Path | None:
        """The finished report called ``name`` (a bare file name we wrote), or None."""
        if not REPORT_NAME.match(name):
            return None
        p = self.folder / name
        return p if p.is_file() else None

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(j.state in ("queued", "running") for j in self._jobs.values())

    # -- working ------------------------------------------------------------------------
    def _set(self, job: ReportJob, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except Exception:  # a report must never take the worker down with it
                log.exception("report %s failed", job.id)
                self._set(job, state="failed", error="internal error (see the server log)")

    def _run(self, job: ReportJob) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        out = self.folder / job.file
        self._set(job, state="running")
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                self.command(job.campaign, out), env=self.env, capture_output=True, text=True,
                timeout=JOB_TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._set(job, state="failed", error=str(exc)[:300], seconds=time.perf_counter() - t0)
            log.error("report %s failed: %s", job.id, exc)
            return
        seconds = time.perf_counter() - t0
        if done.returncode != 0 or not out.is_file():
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            why = lines[-1] if lines else f"exit code {done.returncode}"
            self._set(job, state="failed", error=why[:300], seconds=seconds)
            log.error("report %s (campaign %s) failed: %s", job.id, job.campaign or "all", why)
            return
        self._set(job, state="done", seconds=seconds, size=out.stat().st_size)
        log.info("report %s written: %s (%.1f s)", job.id, out, seconds)
