"""Meta's failures, translated into the project's error tree at the boundary.

    FacebookRequestError (the SDK)         ->  ours
     ├── code 190 (token invalid/expired)  ->  AuthExpired          (no retry: an operator must act)
     ├── 4, 17, 32, 613, 80000-80014       ->  RateLimited          (retry_after from the usage headers)
     ├── 1, 2, -1, -2, is_transient, 5xx   ->  TransientError       (retried with backoff)
     ├── 100 / 1504018 (insights timeout)  ->  TransientError       (retried; the caller may go async)
     └── anything else (100, 10, 200-299,
         368, ...)                         ->  PlatformError(code)  (not retried; recorded on the mutation)
    requests.RequestException              ->  TransientError       (connection refused, timeout, ...)
    TypeError / ValueError /
    AttributeError from the SDK            ->  TransientError       (a non-JSON body such as an HTML 502)
    other FacebookError                    ->  PlatformError        (the SDK refused the call locally)

A message carries everything Meta said: ``(#code/subcode) message``, then
Meta's own explanation for people (``error_user_title: error_user_msg``,
e.g. "Invalid targeting: The targeting spec is invalid"), then the HTTP
status and ``fbtrace_id`` (what Meta support asks for).  The same values are
in the error's context (``code``, ``subcode``, ``http_status``,
``fbtrace_id``, ``user_title``, ``user_msg``).

``context["ambiguous"]`` is True when the request may have been carried out
although no answer says so: a read timeout, a connection dropped after the
request went out, a 5xx or an unreadable (HTML) answer.  A create that fails
that way must be settled -- looked up by its name -- before it is sent again.
A refused connection, the usage gate and every JSON 4xx are not ambiguous.

Messages never carry the access token: URLs in ``requests`` errors are
redacted before they are chained with ``raise ... from exc``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from facebook_business.exceptions import FacebookError, FacebookRequestError
from urllib3.exceptions import NewConnectionError

from connectors.meta.usage import parse_usage
from policies.errors import AuthExpired, ConnectorError, PlatformError, RateLimited, TransientError

AUTH_CODES = frozenset({190, 102})
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2, -1, -2})
INSIGHTS_TIMEOUT = (100, 1504018)

_SECRET = re.compile(r"((?:access_token|appsecret_proof)=)[^&\s\"']+", re.I)


def redact(text: str) -> str:
    """Hide token values that ``requests``/``urllib3`` put into URLs in their messages."""
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


def translate_request_error(
    exc: FacebookRequestError, *, what: str, campaign: str | None = None, key: str | None = None
) -> ConnectorError:
    """Our error for one failed Graph call (also used for failures inside a batch)."""
    code = exc.api_error_code()
    subcode = exc.api_error_subcode()
    message = redact(str(exc.api_error_message() or "no message"))
    status = exc.http_status() or 0
    body = _error_body(exc)
    title = redact(str(body.get("error_user_title") or "")).strip()
    user_msg = redact(str(body.get("error_user_msg") or "")).strip()
    trace = redact(str(body.get("fbtrace_id") or "")) or None
    ctx: dict[str, Any] = {
        "campaign": campaign, "key": key, "subcode": subcode, "fbtrace_id": trace, "http_status": status or None,
        "user_title": title or None, "user_msg": user_msg or None,
        # A 5xx may come after Graph carried the request out; a JSON 4xx never does.
        "ambiguous": True if status >= 500 else None,
    }  # fmt: skip
    where = f"Meta {what}: (#{code}{'/' + str(subcode) if subcode else ''}) {message}"
    explained = ": ".join(x for x in (title, user_msg) if x)
    if explained and explained not in message:
        where += f" -- {explained}"
    tail = [f"HTTP {status}"] if status else []
    if trace:
        tail.append(f"fbtrace_id {trace}")
    if tail:
        where += f" ({', '.join(tail)})"
    if code in AUTH_CODES:
        return AuthExpired(
            f"{where} -- the access token was rejected; set a fresh token in the environment variable "
            "that [meta].access_token_env names",
            code=code,
            **ctx,
        )
    if code in THROTTLE_CODES:
        usage = parse_usage(exc.http_headers() or {})
        retry_after = usage.regain_seconds if usage and usage.regain_seconds > 0 else None
        return RateLimited(where, retry_after=retry_after, code=code, **ctx)
    if (
        code in TRANSIENT_CODES
        or (code, subcode) == INSIGHTS_TIMEOUT
        or exc.api_transient_error()
        or status >= 500
        or (code is None and status in (0, 429))
    ):
        return TransientError(where, code=code, **ctx)
    return PlatformError(where, code=code, **ctx)


def _error_body(exc: FacebookRequestError) -> dict[str, Any]:
    body = exc.body()
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err
    return {}


def maybe_sent(exc: requests.RequestException) -> bool:
    """Whether the request may have reached Graph (and been carried out) before ``exc``.

    A refused connection or a connect timeout never sent anything; a read
    timeout or a connection dropped mid-answer may come after Graph acted.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ReadTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        return not isinstance(inner, NewConnectionError | ConnectionRefusedError)
    return False


@contextmanager
def boundary(
    what: str,
    *,
    campaign: str | None = None,
    key: str | None = None,
    on_error: Callable[[ConnectorError], None] | None = None,
    last_response: Callable[[], tuple[str, int, str] | None] | None = None,
) -> Iterator[None]:
    """Translate whatever the SDK raises inside the block into our tree.

    Keep the block to SDK calls and the iteration of their cursors: a
    ``TypeError``/``ValueError``/``AttributeError`` inside it is taken for an
    unparseable response.
    ``last_response`` gives the method, HTTP status and content type of the
    last answer (the transport records them), so that such an error can say
    what came back.
    """
    try:
        yield
    except ConnectorError as ours:  # already ours (e.g. the usage gate in the transport)
        if on_error:
            on_error(ours)
        raise
    except FacebookRequestError as exc:
        err = translate_request_error(exc, what=what, campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
    except requests.RequestException as exc:
        request = getattr(exc, "request", None)
        sent = maybe_sent(exc) and getattr(request, "method", "POST") != "GET"  # a read changes nothing
        exc.args = tuple(redact(str(a)) for a in exc.args)
        note = "; the request may have been carried out" if sent else ""
        err = TransientError(
            f"Meta {what}: {type(exc).__name__}: {redact(str(exc))}{note}",
            campaign=campaign, key=key, ambiguous=True if sent else None,
        )  # fmt: skip
        if on_error:
            on_error(err)
        raise err from exc
    except (TypeError, ValueError, AttributeError) as exc:
        # The SDK takes a non-JSON error page (an HTML 502) for a success and fails parsing it
        # (a batch answered with HTML fails as AttributeError: it walks the page's characters).
        seen = last_response() if last_response else None
        method, status, ctype = seen if seen else ("POST", 0, "")
        answer = f"HTTP {status}{' ' + ctype if ctype else ''}, " if status else ""
        sent = method != "GET"
        note = "; the request may have been carried out" if sent else ""
        err = TransientError(
            f"Meta {what}: unreadable response ({answer}{type(exc).__name__}){note}",
            campaign=campaign, key=key, http_status=status or None, ambiguous=True if sent else None,
        )  # fmt: skip
        if on_error:
            on_error(err)
        raise err from exc
    except FacebookError as exc:
        seen = last_response() if last_response else None
        if seen is not None and (seen[1] >= 500 or "json" not in seen[2] and "javascript" not in seen[2]):
            # The SDK built an object from an error page (a cursor over an HTML 502): not a refusal.
            method, status, ctype = seen
            sent = method != "GET"
            err = TransientError(
                f"Meta {what}: unreadable response (HTTP {status} {ctype or 'no type'}, {type(exc).__name__})"
                + ("; the request may have been carried out" if sent else ""),
                campaign=campaign, key=key, http_status=status or None, ambiguous=True if sent else None,
            )  # fmt: skip
            if on_error:
                on_error(err)
            raise err from exc
        err = PlatformError(f"Meta {what}: {redact(str(exc))}", campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
