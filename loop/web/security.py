"""The dashboard's guards: host check, access token, CSRF, security headers.

- A loopback bind answers only requests whose ``Host`` is loopback (a DNS
  rebinding page cannot read the dashboard through a victim's browser).
- Any other bind refuses to start without an access token (``create_app``);
  with a token every request except ``/healthz``, ``/login`` and the Meta
  webhook (which checks Meta's own signature) must carry it,
  as ``Authorization: Bearer <token>`` or the cookie ``/login`` sets (an HMAC
  of the token, never the token itself).
- A NUL character in the path, the query string or a form is a 400.
- An unexpected exception becomes a 500 page carrying the same headers and an
  error id; the traceback is logged under that id (never shown).
- CSRF: a signed double-submit token.  The cookie holds ``nonce.hmac(nonce)``
  under a per-process secret; every form echoes it in ``csrf_token`` and a
  POST is refused unless the two match and the signature is ours.  A POST
  whose ``Origin`` names another host is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("creative_loop.web")
CSRF_COOKIE = "cl_csrf"
CSRF_FIELD = "csrf_token"
AUTH_COOKIE = "cl_auth"
OPEN_PATHS = frozenset({"/healthz", "/login"})
# Meta signs its webhook calls (X-Hub-Signature-256); it cannot send our token.
WEBHOOK_PREFIX = "/webhooks/meta"
NUL_REFUSED = "bad request: a NUL character (%00) in the URL or form"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
HEADERS = {
    # Charts and thumbnails are data: URIs or our own /images; no script at all.
    "content-security-policy": (
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def same(given: str, expected: str) -> bool:
    """A constant-time comparison of any two strings.

    ``hmac.compare_digest`` raises ``TypeError`` on a str with a non-ASCII
    character, and a header, cookie or form field can hold one: compared as
    UTF-8 bytes, such a value is simply not equal.
    """
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_only(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Csrf:
    """Mint and check signed double-submit tokens."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def mint(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        if not token or token.count(".") != 1:
            return False
        nonce, sig = token.split(".")
        return same(sig, self._sign(nonce))

    def check(self, request: Request, submitted: str | None) -> str | None:
        """None if the POST may proceed, else why it is refused."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if not self.valid(cookie):
            return "missing or forged CSRF cookie (reload the page and try again)"
        if not submitted or not same(str(submitted), str(cookie)):
            return "the form's CSRF token does not match (reload the page and try again)"
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            return f"cross-origin request from {origin} refused"
        return None


def auth_cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"creative-loop-web-auth", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware: host check, access token, CSRF cookie, security headers, the 500 page."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        csrf: Csrf,
        token: str | None,
        loopback_only: bool,
        on_error: Callable[[Scope, str], Response] | None = None,
    ) -> None:
        self.app = app
        self.csrf = csrf
        self.token = token
        self.loopback_only = loopback_only
        self.on_error = on_error

    def _authorised(self, headers: Headers, cookies: dict[str, str]) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and same(auth[7:].strip(), self.token):
            return True
        cookie = cookies.get(AUTH_COOKIE, "")
        return bool(cookie) and same(cookie, auth_cookie_value(self.token))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.loopback_only and not is_loopback(_host_only(headers.get("host", ""))):
            await self._send(PlainTextResponse("unknown host", status_code=400), scope, receive, send)
            return
        cookies = _cookies(headers)
        path = scope.get("path", "")
        open_path = path in OPEN_PATHS or path == WEBHOOK_PREFIX or path.startswith(WEBHOOK_PREFIX + "/")
        if self.token is not None and not open_path and not self._authorised(headers, cookies):
            if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
                response: Response = RedirectResponse(f"/login?next={_quote_path(scope)}", status_code=303)
            else:
                response = PlainTextResponse(
                    "access token required", status_code=401, headers={"www-authenticate": "Bearer"}
                )
            await self._send(response, scope, receive, send)
            return
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # No id or name holds one (PostgreSQL cannot store it in text, and refuses a query that has one).
            await self._send(PlainTextResponse(NUL_REFUSED, status_code=400), scope, receive, send)
            return
        token = cookies.get(CSRF_COOKIE)
        minted = None
        if not self.csrf.valid(token):
            token = minted = self.csrf.mint()
        scope.setdefault("state", {})["csrf"] = token
        secure = scope.get("scheme") == "https"
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                raw = list(message.get("headers", []))
                present = {k.decode().lower() for k, _ in raw}
                for k, v in HEADERS.items():
                    if k not in present:
                        raw.append((k.encode(), v.encode()))
                if minted is not None:
                    cookie = f"{CSRF_COOKIE}={minted}; Path=/; HttpOnly; SameSite=Strict" + (
                        "; Secure" if secure else ""
                    )
                    raw.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": raw}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            error_id = secrets.token_hex(6)
            log.exception("error %s on %s %s", error_id, scope.get("method", ""), scope.get("path", ""))
            if started:  # the status line is out: nothing better to send than a cut response
                return
            await self._error_page(error_id, scope, receive, send_with_headers)

    async def _error_page(self, error_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response | None = None
        if self.on_error is not None:
            try:
                response = self.on_error(scope, error_id)
            except Exception:  # the error page itself failed: fall back to plain text
                log.exception("error %s: the error page failed too", error_id)
        if response is None:
            response = PlainTextResponse(f"internal error; error id {error_id} (in the server log)", status_code=500)
        response.headers["x-error-id"] = error_id
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)

    async def _send(self, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        for k, v in HEADERS.items():
            response.headers[k] = v
        await response(scope, receive, send)


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is simply no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


def _quote_path(scope: Mapping[str, Any]) -> str:
    from urllib.parse import quote

    path = scope.get("path", "/")
    qs = scope.get("query_string", b"").decode("latin-1")
    return quote(path + (f"?{qs}" if qs else ""), safe="")


def safe_next(target: str | None) -> str:
    """Only same-site paths after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
