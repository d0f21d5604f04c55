"""Meta's failures, translated into the project's error tree at the boundary.

    FacebookRequestError (the SDK)         ->  ours
     ├── code 190 (token invalid/expired)  ->  AuthExpired          (no retry: an operator must act)
     ├── 4, 17, 32, 613, 80000-80014       ->  RateLimited          (retry_after from the usage headers)
     ├── 1, 2, -1, -2, is_transient, 5xx   ->  TransientError       (retried with backoff)
     ├── 100 / 1504018 (insights timeout)  ->  TransientError       (retried; the caller may go async)
     └── anything else (100, 10, 200-299,
         368, ...)                         ->  PlatformError(code)  (not retried; recorded on the mutation)
    requests.RequestException              ->  TransientError       (connection refused, timeout, ...)
    TypeError / ValueError from the SDK    ->  TransientError       (a non-JSON body such as an HTML 502)
    other FacebookError                    ->  PlatformError        (the SDK refused the call locally)

Messages never carry the access token: URLs in ``requests`` errors are
redacted before they are chained with ``raise ... from exc``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests
from facebook_business.exceptions import FacebookError, FacebookRequestError

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
    ctx = {"campaign": campaign, "key": key, "subcode": subcode, "fbtrace_id": _trace(exc)}
    where = f"Meta {what}: (#{code}{'/' + str(subcode) if subcode else ''}) {message}"
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


def _trace(exc: FacebookRequestError) -> str | None:
    body = exc.body()
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err.get("fbtrace_id")
    return None


@contextmanager
def boundary(
    what: str,
    *,
    campaign: str | None = None,
    key: str | None = None,
    on_error: Callable[[ConnectorError], None] | None = None,
) -> Iterator[None]:
    """Translate whatever the SDK raises inside the block into our tree.

    Keep the block to SDK calls and the iteration of their cursors: a
    ``TypeError``/``ValueError`` inside it is taken for an unparseable response.
    """
    try:
        yield
    except ConnectorError as err:  # already ours (e.g. the usage gate in the transport)
        if on_error:
            on_error(err)
        raise
    except FacebookRequestError as exc:
        err = translate_request_error(exc, what=what, campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
    except requests.RequestException as exc:
        exc.args = tuple(redact(str(a)) for a in exc.args)
        err = TransientError(f"Meta {what}: {type(exc).__name__}: {redact(str(exc))}", campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
    except (TypeError, ValueError) as exc:
        # The SDK takes a non-JSON error page (an HTML 502) for a success and fails parsing it.
        err = TransientError(f"Meta {what}: unreadable response ({type(exc).__name__})", campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
    except FacebookError as exc:
        err = PlatformError(f"Meta {what}: {redact(str(exc))}", campaign=campaign, key=key)
        if on_error:
            on_error(err)
        raise err from exc
