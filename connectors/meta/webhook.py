"""Meta's creative-fatigue webhook: an ASGI app that records fatigue levels per ad.

Meta calls the callback URL exactly as it was registered and expects a 200
from it: a redirect (``/webhooks/meta`` -> ``/webhooks/meta/``) fails the
verification.  So the app answers at any path it is given, and
:func:`webhook_routes` routes both spellings of a prefix to it directly (the
dashboard does this for ``/webhooks/meta``)::

    routes += webhook_routes("/webhooks/meta", make_webhook_app(engine, app_secret=..., verify_token=...))

or serve it on its own, e.g. in a small script::

    from loop.app import meta_webhook
    from loop.config import load_config
    app = meta_webhook(load_config("creative-loop.toml"))   # then: uvicorn script:app

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

    Each change whose field matches one of ``fields`` (shell patterns,
    ``[meta].webhook_fields``, default ``*fatigue*``) and whose value names an
    ad (``ad_id``) and a level (the first of ``level_keys``,
    ``[meta].webhook_level_keys``) becomes one ``PlatformSignal`` row
    (``name="creative_fatigue"``), its campaign resolved from the creatives
    the loop knows; the raw value is kept in ``data``.  The field and key
    names Meta uses for this signal are not confirmed (README, "Meta"), hence
    the two switches.  Answers 200 with the number of rows recorded (Meta
    retries anything else).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from connectors.meta.settings import MetaSettings
from storage.db import session as open_session
from storage.models import Creative, PlatformSignal

log = logging.getLogger("creative_loop.meta.webhook")

MAX_BODY = 1024 * 1024
SIGNAL = "creative_fatigue"
FIELDS = ("*fatigue*",)
LEVEL_KEYS = ("level", "fatigue_level", "creative_fatigue")


def signature(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    if not header or not app_secret:
        return False
    # As bytes: compare_digest raises TypeError on a str with a non-ASCII character, and a header may hold one.
    return hmac.compare_digest(header.strip().lower().encode(), signature(body, app_secret).encode())


def fatigue_changes(
    payload: Any, fields: Sequence[str] = FIELDS, level_keys: Sequence[str] = LEVEL_KEYS
) -> list[dict[str, Any]]:
    """``{"ad_id", "level", "value", "account"}`` for each fatigue change of a Webhooks payload."""
    out: list[dict[str, Any]] = []
    if not isinstance(payload, dict):
        return out
    for entry in payload.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or ():
            if not isinstance(change, dict):
                continue
            name = str(change.get("field", ""))
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in fields):
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            ad_id = value.get("ad_id") or value.get("id")
            level = next((value[k] for k in level_keys if isinstance(value.get(k), str | int | float)), None)
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


class WebhookApp:
    """The webhook as a bare ASGI app: GET is the handshake, POST a notification, whatever the path.

    It never routes by path, so it answers the registered URL itself --
    mounted, routed (:func:`webhook_routes`) or served alone -- with no
    redirect in between.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        app_secret: str,
        verify_token: str,
        fields: Sequence[str] = FIELDS,
        level_keys: Sequence[str] = LEVEL_KEYS,
    ) -> None:
        if not app_secret:
            raise ValueError("app_secret: expected the Meta app secret, got an empty string")
        if not verify_token:
            raise ValueError("verify_token: expected a non-empty token, got an empty string")
        self.engine = engine
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.fields = tuple(fields)
        self.level_keys = tuple(level_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own (uvicorn): nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method in ("GET", "HEAD"):
            response = await self.handshake(request)
        elif request.method == "POST":
            response = await self.notify(request)
        else:
            response = PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET, POST"})
        await response(scope, receive, send)

    async def handshake(self, request: Request) -> Response:
        q = request.query_params
        given = q.get("hub.verify_token", "").encode("utf-8", "surrogatepass")
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(given, self.verify_token.encode()):
            return PlainTextResponse(q.get("hub.challenge", ""))
        return PlainTextResponse("verification failed", status_code=403)

    async def notify(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return PlainTextResponse("body too large", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse("body too large", status_code=413)
        if not valid_signature(body, request.headers.get("x-hub-signature-256"), self.app_secret):
            log.warning("Meta webhook: rejected a notification with a missing or bad signature")
            return PlainTextResponse("bad signature", status_code=403)
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("body is not JSON", status_code=400)
        n = record(self.engine, fatigue_changes(payload, self.fields, self.level_keys))
        return JSONResponse({"recorded": n})


def make_webhook_app(
    engine: Engine,
    *,
    app_secret: str,
    verify_token: str,
    fields: Sequence[str] = FIELDS,
    level_keys: Sequence[str] = LEVEL_KEYS,
) -> WebhookApp:
    """The webhook as an ASGI app that answers at any path (mount or route it where you like)."""
    return WebhookApp(engine, app_secret=app_secret, verify_token=verify_token, fields=fields, level_keys=level_keys)


def webhook_routes(prefix: str, app: WebhookApp) -> list[BaseRoute]:
    """Routes that send both ``prefix`` and ``prefix/`` to the webhook, each answered directly (no redirect)."""
    prefix = "/" + prefix.strip("/")
    return [
        Route(prefix, app, methods=["GET", "HEAD", "POST"]),
        Route(prefix + "/", app, methods=["GET", "HEAD", "POST"]),
    ]


def app_from_settings(settings: MetaSettings, engine: Engine, secret: Callable[..., str]) -> WebhookApp:
    """The webhook app the ``[meta]`` settings describe.

    ``secret(field)`` reads the environment variable a settings field names
    (``connectors.registry.EnvSecrets``; ``loop.app.meta_webhook`` wires it).
    """
    return make_webhook_app(
        engine,
        app_secret=secret("app_secret_env"),
        verify_token=secret("webhook_verify_token_env"),
        fields=settings.webhook_fields,
        level_keys=settings.webhook_level_keys,
    )
