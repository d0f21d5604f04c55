"""Meta's creative-fatigue webhook: an ASGI app that records fatigue levels per ad.

Mount it (the dashboard does, at ``/webhooks/meta``)::

    app.mount("/webhooks/meta", make_webhook_app(engine, app_secret=..., verify_token=...))

or serve it on its own, e.g. in a small script::

    from loop.config import load_config
    from connectors.meta.webhook import app_from_config
    app = app_from_config(load_config("creative-loop.toml"))   # then: uvicorn script:app

Subscription handshake (GET)
    When the callback URL is registered, Meta calls
    ``GET <url>?hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<n>``.
    The app answers ``<n>`` (text/plain, 200) when ``hub.verify_token``
    equals the token in the environment variable that
    ``[meta].webhook_verify_token_env`` names (default
    ``META_WEBHOOK_VERIFY_TOKEN``), and 403 otherwise.  Put the same token in
    the app's Webhooks settings.

Notifications (POST)
    Meta signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256
    of the body with the app secret>``.  A missing or wrong signature is
    answered 403 and nothing is recorded; a body over 1 MiB gets 413.  The
    body is the standard Webhooks envelope::

        {"object": "ad_account", "entry": [{"id": "act_1", "time": 1700000000,
          "changes": [{"field": "creative_fatigue",
                       "value": {"ad_id": "123", "level": "FATIGUED", ...}}]}]}

    Each change whose value names an ad (``ad_id``) and a level (``level``,
    ``fatigue_level`` or ``creative_fatigue``) becomes one ``PlatformSignal``
    row (``name="creative_fatigue"``), its campaign resolved from the
    creatives the loop knows; the raw value is kept in ``data``.  The exact
    field name Meta uses for this signal is not confirmed, so every change
    field containing "fatigue" is accepted.  Answers 200 with the number of
    rows recorded (Meta retries anything else).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from storage.db import session as open_session
from storage.models import Creative, PlatformSignal

log = logging.getLogger("creative_loop.meta.webhook")

MAX_BODY = 1024 * 1024
SIGNAL = "creative_fatigue"
_LEVEL_KEYS = ("level", "fatigue_level", "creative_fatigue")


def signature(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    if not header or not app_secret:
        return False
    return hmac.compare_digest(header.strip().lower(), signature(body, app_secret))


def fatigue_changes(payload: Any) -> list[dict[str, Any]]:
    """``{"ad_id", "level", "value", "account"}`` for each fatigue change of a Webhooks payload."""
    out: list[dict[str, Any]] = []
    if not isinstance(payload, dict):
        return out
    for entry in payload.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or ():
            if not isinstance(change, dict) or "fatigue" not in str(change.get("field", "")):
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            ad_id = value.get("ad_id") or value.get("id")
            level = next((value[k] for k in _LEVEL_KEYS if isinstance(value.get(k), str | int | float)), None)
            if ad_id is None or level is None:
                continue
            out.append({"ad_id": str(ad_id), "level": str(level), "value": value, "account": str(entry.get("id", ""))})
    return out


def record(engine: Engine, changes: list[dict[str, Any]]) -> int:
    """Store the changes as ``PlatformSignal`` rows; returns how many were stored."""
    if not changes:
        return 0
    with open_session(engine) as s:
        ids = {c["ad_id"] for c in changes}
        campaigns = {
            ad: camp
            for ad, camp in s.exec(
                select(Creative.platform_ad_id, Creative.campaign_id).where(Creative.platform_ad_id.in_(ids))  # type: ignore[union-attr]
            ).all()
        }
        for c in changes:
            score = c["value"].get("score")
            s.add(
                PlatformSignal(
                    campaign_id=campaigns.get(c["ad_id"]),
                    platform_ad_id=c["ad_id"][:100],
                    name=SIGNAL,
                    level=c["level"][:40],
                    value=float(score) if isinstance(score, int | float) else None,
                    data={"account": c["account"], **c["value"]},
                )
            )
        s.commit()
    return len(changes)


def make_webhook_app(engine: Engine, *, app_secret: str, verify_token: str) -> Starlette:
    """The webhook as an ASGI app (routes at its root: mount it where you like)."""
    if not app_secret:
        raise ValueError("app_secret: expected the Meta app secret, got an empty string")
    if not verify_token:
        raise ValueError("verify_token: expected a non-empty token, got an empty string")

    async def handshake(request: Request) -> Response:
        q = request.query_params
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(q.get("hub.verify_token", ""), verify_token):
            return PlainTextResponse(q.get("hub.challenge", ""))
        return PlainTextResponse("verification failed", status_code=403)

    async def notify(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return PlainTextResponse("body too large", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse("body too large", status_code=413)
        if not valid_signature(body, request.headers.get("x-hub-signature-256"), app_secret):
            log.warning("Meta webhook: rejected a notification with a missing or bad signature")
            return PlainTextResponse("bad signature", status_code=403)
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("body is not JSON", status_code=400)
        n = record(engine, fatigue_changes(payload))
        return JSONResponse({"recorded": n})

    return Starlette(routes=[Route("/", handshake, methods=["GET"]), Route("/", notify, methods=["POST"])])


def app_from_config(cfg: Any, engine: Engine | None = None) -> Starlette:
    """The webhook app of a loaded config (secrets from the environment variables it names)."""
    if engine is None:
        from storage.db import make_engine

        engine = make_engine(cfg.database_url)
    m = cfg.model.meta
    return make_webhook_app(
        engine,
        app_secret=cfg.secret(m.app_secret_env, "meta.app_secret_env"),
        verify_token=cfg.secret(m.webhook_verify_token_env, "meta.webhook_verify_token_env"),
    )
