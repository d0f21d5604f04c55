"""The dashboard: a Starlette app over the same database the daemon uses.

Pages only read, except the two approval actions, which go through
``loop.experiments.approve``/``reject`` exactly as the CLI does, so a decision
made here lands in the audit log with who (``web:<name>``) and when.  Safe to
run beside the daemon: every request opens its own short session.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from loop.config import Config
from loop.plans import CampaignPlan
from loop.reports import csv_safe
from loop.web import queries
from loop.web.charts import ChartCache
from loop.web.report import ReportJobs, known_plans
from loop.web.security import (
    AUTH_COOKIE,
    CSRF_FIELD,
    NUL_REFUSED,
    WEBHOOK_PREFIX,
    Csrf,
    Guard,
    auth_cookie_value,
    is_loopback,
    safe_next,
)
from loop.web.views import creative_context, experiment_context, make_env, served_image_url
from policies.errors import ConfigError, CreativeLoopError, NotFound
from storage.db import session as open_session
from storage.images import ImageStore
from storage.models import Campaign, Creative, Experiment

log = logging.getLogger("creative_loop.web")
WHO_COOKIE = "cl_who"
_WHO = re.compile(r"^[\w .@+-]{1,60}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
# Our forms post a handful of short fields and no file.  Parsed before the CSRF check,
# so any page a browser visits could otherwise post up to starlette's defaults:
# 1000 fields of 1 MiB each held in memory, and files of any size spooled to disk.
FORM_LIMITS: dict[str, int] = {"max_files": 0, "max_fields": 20, "max_part_size": 16 * 1024}


def schedule_interval(cfg: Config) -> timedelta:
    """The gap between two scheduled ticks (for a cron schedule: between its next two runs)."""
    if cfg.loop.cron:
        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(cfg.loop.cron, timezone=cfg.loop.timezone)
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
        if first and second:
            return second - first
    return timedelta(minutes=cfg.loop.interval_minutes or 60.0)


class Dashboard:
    """Route handlers; collaborators are injected by :func:`create_app`."""

    def __init__(
        self,
        cfg: Config,
        engine: Engine,
        images: ImageStore,
        clock: Callable[[], datetime],
        token: str | None,
        csrf: Csrf,
        default_actor: str,
        reports: ReportJobs | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.images = images
        self.clock = clock
        self.token = token
        self.csrf = csrf
        self.default_actor = default_actor
        self.env = make_env()
        self.charts = ChartCache()
        self.reads = queries.ReadCache()
        self.reports = reports or ReportJobs.for_config(cfg, engine, clock)
        self._plans: dict[str, CampaignPlan] | None = None

    @property
    def plans(self) -> dict[str, CampaignPlan]:
        """The campaigns' plans (caps, daily budgets, P(best) target), read once from the config."""
        if self._plans is None:
            self._plans = known_plans(self.cfg)
        return self._plans

    def target(self, campaign_id: str) -> float:
        plan = self.plans.get(campaign_id)
        return plan.settings.prob_best_target if plan else queries.DEFAULT_TARGET

    # -- helpers --------------------------------------------------------------------
    def render(self, request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            csrf_token=request.state.csrf,
            csrf_field=CSRF_FIELD,
            img=served_image_url,
            report=False,
            auth=self.token is not None,
            q=quote,
            **ctx,
        )
        return HTMLResponse(html, status_code=status_code)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status_code=status, status=status, message=message, title="error")

    def server_error(self, scope: Scope, error_id: str) -> Response:
        """The page a 500 shows: no detail, the id under which the log has it (the Guard adds the headers)."""
        message = "Something went wrong on our side; nothing was changed by this page."
        html = self.env.get_template("error.html").render(
            request_path=scope.get("path", ""), csrf_token="", csrf_field=CSRF_FIELD, img=served_image_url,
            report=False, auth=self.token is not None, q=quote, status=500, message=message, error_id=error_id,
            title="error",
        )  # fmt: skip
        return HTMLResponse(html, status_code=500)

    async def form(self, request: Request) -> tuple[FormData | None, HTMLResponse | None]:
        """The POSTed form, or the refusal if its CSRF token does not check out."""
        form = await request.form(**FORM_LIMITS)
        why = self.csrf.check(request, form.get(CSRF_FIELD))  # type: ignore[arg-type]
        if why is not None:
            return None, self.error(request, 403, why)
        if any("\x00" in k or "\x00" in str(v) for k, v in form.multi_items()):
            return None, self.error(request, 400, NUL_REFUSED)
        return form, None

    # -- pages ------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            camps = queries.overview(s, self.plans, self.reads)
            waiting = queries.waiting_count(s)
            health = queries.health(s, self.clock(), schedule_interval(self.cfg))
            return self.render(
                request, "overview.html", campaigns=camps, waiting=waiting, health=health, title="overview"
            )

    def creative(self, request: Request) -> Response:
        cid = request.path_params["creative_id"]
        with open_session(self.engine) as s:
            creative = s.get(Creative, cid)
            if creative is None:
                return self.error(request, 404, f"no creative {cid!r}")
            return self.render(
                request, "creative.html", title=creative.label or creative.id,
                ctx=creative_context(s, creative, self.charts),
            )  # fmt: skip

    def experiment(self, request: Request) -> Response:
        eid = request.path_params["experiment_id"]
        with open_session(self.engine) as s:
            exp = s.get(Experiment, eid)
            if exp is None:
                return self.error(request, 404, f"no experiment {eid!r}")
            x = experiment_context(s, exp, self.charts, self.target(exp.campaign_id))
            return self.render(request, "experiment.html", title=exp.id, x=x)

    def gallery(self, request: Request) -> Response:
        campaign = request.query_params.get("campaign") or None
        page = _int(request.query_params.get("page"), 1)

        def query(n: int) -> str:
            return urlencode({**({"campaign": campaign} if campaign else {}), "page": n})

        with open_session(self.engine) as s:
            g = queries.gallery(s, campaign, page)
            campaigns = list(s.exec(select(Campaign.id).order_by(Campaign.id)).all())
            return self.render(
                request, "gallery.html", g=g, campaign=campaign, campaigns=campaigns, query=query, title="gallery"
            )

    def insights(self, request: Request) -> Response:
        from loop.web.insights_page import insights_context

        try:
            with open_session(self.engine) as s:
                ctx = insights_context(s, self.cfg, request.query_params.get("campaign") or None)
        except NotFound as exc:
            return self.error(request, 404, str(exc))
        return self.render(request, "insights.html", title="insights", **ctx)

    def approvals(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            return self.render(
                request,
                "approvals.html",
                items=queries.approvals(s, {c: self.target(c) for c in self.plans}),
                decided=queries.recent_decisions(s),
                who=request.cookies.get(WHO_COOKIE) or self.default_actor,
                done=request.query_params.get("done", ""),
                done_id=request.query_params.get("id", ""),
                approval_policy=self.cfg.loop.approval,
                title="approvals",
            )

    def ledger(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            return self.render(
                request,
                "ledger.html",
                ledgers=queries.ledger_view(s, plans=self.plans, cache=self.reads),
                title="ledger",
            )

    def ledger_csv(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            views = queries.ledger_view(s, plans=self.plans, cache=self.reads)
        buf = io.StringIO()
        # RFC 4180 line ends: a field holding a CR or LF is then quoted (with "\n" alone, a CR went out bare).
        writer = csv.DictWriter(buf, fieldnames=queries.LEDGER_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for row in queries.ledger_csv_rows(views):
            # A leading =, +, -, @, tab or CR would be a formula in a spreadsheet.
            writer.writerow({k: csv_safe(v) for k, v in row.items()})
        stamp = self.clock().strftime("%Y%m%d")
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="creative-loop-ledger-{stamp}.csv"'},
        )

    def audit(self, request: Request) -> Response:
        p = request.query_params
        limit = max(1, min(2000, _int(p.get("limit"), 200)))
        f = queries.AuditFilter(
            name=p.get("name", ""),
            campaign=p.get("campaign", ""),
            experiment=p.get("experiment", ""),
            actor=p.get("actor", ""),
            text=p.get("text", ""),
            limit=limit,
        )
        with open_session(self.engine) as s:
            return self.render(request, "audit.html", f=f, title="audit log", **queries.audit_view(s, f))

    def _campaign_exists(self, campaign: str | None) -> bool:
        if campaign is None:
            return True
        with open_session(self.engine) as s:
            return s.get(Campaign, campaign) is not None

    def reports_page(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            campaigns = list(s.exec(select(Campaign.id).order_by(Campaign.id)).all())
        return self.render(
            request, "reports.html", jobs=self.reports.jobs(), busy=self.reports.busy, campaigns=campaigns,
            campaign=request.query_params.get("campaign") or None, queued=request.query_params.get("queued", ""),
            title="reports",
        )  # fmt: skip

    async def report_submit(self, request: Request) -> Response:
        form, refused = await self.form(request)
        if refused is not None:
            return refused
        assert form is not None
        campaign = str(form.get("campaign", "")).strip() or None
        if not await run_in_threadpool(self._campaign_exists, campaign):
            return self.error(request, 404, f"no campaign {campaign!r} in the database")
        job = self.reports.submit(campaign)
        return RedirectResponse(f"/reports?{urlencode({'queued': job.id})}", status_code=303)

    def report(self, request: Request) -> Response:
        """The old link: to the Reports page, its campaign chosen (a GET queues nothing: that takes the form's POST)."""
        campaign = request.query_params.get("campaign") or None
        if not self._campaign_exists(campaign):
            return self.error(request, 404, f"no campaign {campaign!r} in the database")
        return RedirectResponse(f"/reports?{urlencode({'campaign': campaign or ''})}", status_code=303)

    def report_file(self, request: Request) -> Response:
        path = self.reports.path(request.path_params["name"])
        if path is None:
            return self.error(request, 404, "no such report (it may still be running: see /reports)")
        return FileResponse(path, media_type="text/html; charset=utf-8",
                            headers={"content-disposition": f'inline; filename="{path.name}"'})  # fmt: skip

    def image(self, request: Request) -> Response:
        digest = request.path_params["digest"]
        # Only a hash ever reaches the store; the store validates it again.
        if not _HASH.match(digest):
            return PlainTextResponse("not found", status_code=404)
        try:
            data = self.images.get_bytes(digest)
        except NotFound:
            return PlainTextResponse("not found", status_code=404)
        return Response(data, media_type="image/png", headers={"cache-control": "public, max-age=31536000, immutable"})

    # -- health -----------------------------------------------------------------------
    def healthz(self, request: Request) -> Response:
        try:
            with open_session(self.engine) as s:
                body = queries.health(s, self.clock(), schedule_interval(self.cfg))
        except SQLAlchemyError as exc:
            body = {"status": "down", "database": False, "scheduler_alive": False, "error": type(exc).__name__}
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    def metrics(self, request: Request) -> Response:
        with open_session(self.engine) as s:
            return PlainTextResponse(queries.metrics_text(s), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- actions ----------------------------------------------------------------------
    async def decide(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("approve", "reject"):
            return self.error(request, 404, f"no action {action!r}")
        form, refused = await self.form(request)
        if refused is not None:
            return refused
        assert form is not None
        exp_id = str(form.get("experiment_id", ""))
        who = str(form.get("who", "")).strip()
        text = str(form.get("reason", "")).strip()[:500]
        if not _WHO.match(who):
            return self.error(request, 400, "say who you are (1-60 letters, digits, spaces or . @ + - _)")
        if action == "reject" and not text:
            return self.error(request, 400, "a rejection needs a reason")
        try:
            await run_in_threadpool(self._decide, exp_id, action == "approve", f"web:{who}", text)
        except NotFound as exc:
            return self.error(request, 404, str(exc))
        except CreativeLoopError as exc:
            return self.error(request, 409, str(exc))
        response = RedirectResponse(f"/approvals?{urlencode({'done': action, 'id': exp_id})}", status_code=303)
        response.set_cookie(WHO_COOKIE, who, httponly=True, samesite="strict", max_age=3600 * 24 * 365)
        return response

    def _decide(self, experiment_id: str, approve: bool, actor: str, reason: str) -> None:
        from loop.app import build_runtime
        from loop.reports import decide

        # The same path as `approve`/`reject`: under the campaign's lock, on the experiment read again, once.
        decide(build_runtime(self.cfg, engine=self.engine), experiment_id, approve, actor, reason, waiting_only=True)

    # -- login (only when a token is configured) ----------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if self.token is None:
                return RedirectResponse("/", status_code=303)
            return self.render(request, "login.html", next=safe_next(request.query_params.get("next")), title="sign in")
        form, refused = await self.form(request)
        if refused is not None:
            return refused
        assert form is not None
        if self.token is None:
            return RedirectResponse("/", status_code=303)
        given = str(form.get("token", ""))
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return self.render(
                request, "login.html", status_code=401, next=safe_next(str(form.get("next", ""))),
                failed=True, title="sign in",
            )  # fmt: skip
        response = RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)
        response.set_cookie(
            AUTH_COOKIE, auth_cookie_value(self.token), httponly=True, samesite="strict",
            secure=request.url.scheme == "https", max_age=3600 * 12,
        )  # fmt: skip
        return response


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _meta_webhook(cfg: Config, engine: Engine) -> Any:
    """The Meta connector's fatigue webhook, when it is installed and its secrets are set."""
    from loop.app import meta_webhook

    try:
        return meta_webhook(cfg, engine)
    except ImportError:
        return None
    except (ConfigError, ValueError, AttributeError) as exc:
        log.info("Meta webhook not mounted at %s: %s", WEBHOOK_PREFIX, exc)
        return None


def create_app(
    cfg: Config,
    *,
    engine: Engine | None = None,
    images: ImageStore | None = None,
    host: str | None = None,
    access_token: str | None = None,
    clock: Callable[[], datetime] | None = None,
    default_actor: str | None = None,
) -> Starlette:
    """The dashboard over ``cfg``'s database (or ``engine``) and image store (or ``images``).

    ``host`` is where it will listen (default ``[web].host``): anything but
    loopback raises ``ConfigError`` unless an access token is given or found
    in the environment variable ``[web].access_token_env`` names.
    """
    from loop.app import open_engine

    web = cfg.model.web
    host = host or web.host
    token = access_token or os.environ.get(web.access_token_env) or None
    if not is_loopback(host) and token is None:
        raise ConfigError(
            str(cfg.path),
            "web.access_token_env",
            f"binding {host} (not loopback) needs an access token: set the environment variable {web.access_token_env}",
        )
    if token is not None and len(token) < 16:
        raise ConfigError(str(cfg.path), "web.access_token_env", "the access token must be at least 16 characters")
    dash = Dashboard(
        cfg,
        engine or open_engine(cfg.database_url),
        images or ImageStore(cfg.data_dir / "images"),
        clock or (lambda: datetime.now(UTC)),
        token,
        Csrf(secrets.token_bytes(32)),
        default_actor or os.environ.get("CREATIVE_LOOP_USER") or os.environ.get("USER") or "web",
    )
    routes: list[BaseRoute] = [
        Route("/", dash.overview, methods=["GET"]),
        Route("/creatives/{creative_id:path}", dash.creative, methods=["GET"]),
        Route("/experiments/{experiment_id:path}", dash.experiment, methods=["GET"]),
        Route("/gallery", dash.gallery, methods=["GET"]),
        Route("/insights", dash.insights, methods=["GET"]),
        Route("/approvals", dash.approvals, methods=["GET"]),
        Route("/approvals/{action:str}", dash.decide, methods=["POST"], name="decide"),
        Route("/ledger", dash.ledger, methods=["GET"]),
        Route("/ledger.csv", dash.ledger_csv, methods=["GET"]),
        Route("/audit", dash.audit, methods=["GET"]),
        Route("/report.html", dash.report, methods=["GET"]),
        Route("/reports", dash.reports_page, methods=["GET"]),
        Route("/reports", dash.report_submit, methods=["POST"]),
        Route("/reports/{name:str}", dash.report_file, methods=["GET"]),
        Route("/images/{digest:str}.png", dash.image, methods=["GET"]),
        Route("/healthz", dash.healthz, methods=["GET"]),
        Route("/metrics", dash.metrics, methods=["GET"]),
        Route("/login", dash.login, methods=["GET", "POST"]),
    ]
    webhook = _meta_webhook(cfg, dash.engine)
    if webhook is not None:
        from connectors.meta.webhook import webhook_routes

        # Both /webhooks/meta and /webhooks/meta/ answer directly: Meta does not follow redirects.
        routes += webhook_routes(WEBHOOK_PREFIX, webhook)
    app = Starlette(routes=routes)
    app.add_middleware(Guard, csrf=dash.csrf, token=token, loopback_only=is_loopback(host), on_error=dash.server_error)
    app.state.dashboard = dash
    return app
