"""Google Ads failures, translated into the project's error tree at the boundary.

    GoogleAdsException (a GoogleAdsFailure in the trailing metadata: .failure, .request_id)
     ├── authentication_error.*                         ->  AuthExpired     (no retry; halts the campaign)
     ├── quota_error.RESOURCE_EXHAUSTED,
     │   RESOURCE_TEMPORARILY_EXHAUSTED, EXCESSIVE_*   ->  RateLimited     (retry_after = QuotaErrorDetails.retry_delay)
     ├── internal_error.INTERNAL_ERROR, TRANSIENT_ERROR,
     │   DEADLINE_EXCEEDED                             ->  TransientError  (retried with backoff)
     ├── database_error.CONCURRENT_MODIFICATION        ->  TransientError
     └── anything else (quota_error.ACCESS_PROHIBITED,
         authorization_error.*, campaign_error.*, ...)  ->  PlatformError   (not retried; recorded on the mutation)
    google.api_core.exceptions, which the client does not wrap (INTERNAL, RESOURCE_EXHAUSTED)
    or raises when no failure came back (UNAVAILABLE, DEADLINE_EXCEEDED, ...):
     ├── ResourceExhausted                             ->  RateLimited     (a failure in the trailers still wins)
     ├── InternalServerError, ServiceUnavailable,
     │   DeadlineExceeded, Aborted                     ->  TransientError
     ├── Unauthenticated                               ->  AuthExpired
     └── anything else                                 ->  PlatformError
    google.auth RefreshError (the OAuth token endpoint refused the refresh token)
                                                       ->  AuthExpired (TransientError when it says retryable)
    google.auth TransportError (token endpoint unreachable) -> TransientError

The retryable codes are those Google's error guide lists as transient; every
other failure is a request the API refused and will refuse again.  Errors carry
the request id (``request_id``) and the failure's first code (``error``, e.g.
``quota_error.RESOURCE_TEMPORARILY_EXHAUSTED``).  Messages pass through the
connector's ``scrub`` (which hides the configured secrets) before they leave.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as core
from google.auth import exceptions as auth_exceptions

from policies.errors import AuthExpired, ConnectorError, PlatformError, RateLimited, TransientError

RATE_LIMIT_CODES = frozenset(
    {
        "quota_error.RESOURCE_EXHAUSTED",
        "quota_error.RESOURCE_TEMPORARILY_EXHAUSTED",
        "quota_error.EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION",
        "quota_error.EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "internal_error.INTERNAL_ERROR",
        "internal_error.TRANSIENT_ERROR",
        "internal_error.DEADLINE_EXCEEDED",
        "database_error.CONCURRENT_MODIFICATION",
    }
)
TRANSIENT_STATUS = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED}
)
MAX_MESSAGE = 500


@dataclass(frozen=True)
class FailureDetail:
    """One error of a ``GoogleAdsFailure``, decoded."""

    code: str  # "<family>.<NAME>", e.g. "campaign_error.DUPLICATE_CAMPAIGN_NAME"
    message: str
    operation: int | None = None  # the index of the mutate operation it is about
    retry_delay: float | None = None  # seconds (quota errors)
    minimum_budget_micros: int | None = None  # budget_per_day_minimum_error_details


def _raw(message: Any) -> Any:
    """The protobuf message under a proto-plus wrapper (or the message itself)."""
    return type(message).pb(message) if hasattr(message, "_pb") else message


def failure_details(failure: Any) -> list[FailureDetail]:
    """The errors of a ``GoogleAdsFailure`` (raw or proto-plus)."""
    if failure is None:
        return []
    out = []
    for err in _raw(failure).errors:
        family = err.error_code.WhichOneof("error_code") or "unknown_error"
        value = getattr(err.error_code, family, 0)
        field = err.error_code.DESCRIPTOR.fields_by_name.get(family)
        enum = field.enum_type.values_by_number.get(value) if field is not None and field.enum_type else None
        operation = None
        for element in err.location.field_path_elements:
            if element.field_name == "mutate_operations" and element.HasField("index"):
                operation = element.index
                break
        delay = None
        if err.details.HasField("quota_error_details") and err.details.quota_error_details.HasField("retry_delay"):
            d = err.details.quota_error_details.retry_delay
            delay = d.seconds + d.nanos / 1e9
        minimum = None
        if err.details.HasField("budget_per_day_minimum_error_details"):
            minimum = int(err.details.budget_per_day_minimum_error_details.minimum_budget_amount_micros)
        out.append(
            FailureDetail(
                code=f"{family}.{enum.name if enum else value}",
                message=err.message,
                operation=operation,
                retry_delay=delay,
                minimum_budget_micros=minimum,
            )
        )
    return out


def failure_from_trailers(exc: BaseException, failure_cls: Any, version: str) -> tuple[Any, str | None]:
    """The ``GoogleAdsFailure`` and request id in the trailing metadata of an unwrapped gRPC error."""
    call = getattr(exc, "response", None) or (exc if isinstance(exc, grpc.Call) else None)
    trailers = None
    try:
        trailers = call.trailing_metadata() if call is not None else None
    except Exception:  # a call that never started has no trailers
        trailers = None
    failure, request_id = None, None
    key = f"google.ads.googleads.{version}.errors.googleadsfailure-bin"
    for k, v in trailers or ():
        if k == key:
            try:
                failure = failure_cls.FromString(v)
            except Exception:  # an undecodable failure is no failure
                failure = None
        elif k == "request-id":
            request_id = str(v)
    return failure, request_id


def classify(details: list[FailureDetail]) -> type[ConnectorError] | None:
    """Our error class for a failure's errors, the most severe first; None when there are none."""
    codes = [d.code for d in details]
    if not codes:
        return None
    if any(c.startswith("authentication_error.") for c in codes):
        return AuthExpired
    if any(c not in RATE_LIMIT_CODES and c not in TRANSIENT_CODES for c in codes):
        return PlatformError
    if any(c in RATE_LIMIT_CODES for c in codes):
        return RateLimited
    return TransientError


def build_error(
    cls: type[ConnectorError],
    what: str,
    details: list[FailureDetail],
    fallback: str,
    *,
    request_id: str | None,
    campaign: str | None,
    key: str | None,
    scrub: Callable[[str], str],
) -> ConnectorError:
    """Our error of class ``cls`` with the failure's first matching detail in its message."""
    first = next((d for d in details if classify([d]) is cls), details[0] if details else None)
    text = scrub(f"{first.code}: {first.message}" if first else fallback)[:MAX_MESSAGE]
    if len(details) > 1:
        text += f" (and {len(details) - 1} more errors)"
    where = f"Google Ads {what}: {text}" + (f" [request {request_id}]" if request_id else "")
    ctx: dict[str, Any] = {"campaign": campaign, "key": key, "request_id": request_id}
    if first is not None:
        ctx["error"] = first.code
    minimum = max((d.minimum_budget_micros or 0 for d in details), default=0)
    if minimum:
        ctx["minimum_budget_micros"] = minimum
    if cls is AuthExpired:
        return AuthExpired(
            f"{where} -- the credentials were rejected; put a fresh refresh token (or developer token) "
            "in the environment variables that [google_ads] names",
            **ctx,
        )
    if cls is RateLimited:
        delays = [d.retry_delay for d in details if d.retry_delay]
        return RateLimited(where, retry_after=max(delays) if delays else None, **ctx)
    if cls is PlatformError:
        return PlatformError(where, **ctx)
    return cls(where, **ctx)


def translate(
    exc: BaseException,
    *,
    what: str,
    failure_cls: Any,
    version: str,
    campaign: str | None = None,
    key: str | None = None,
    scrub: Callable[[str], str] = str,
) -> ConnectorError | None:
    """Our error for something the client, google-auth or gRPC raised; None when it is not theirs."""
    kw: dict[str, Any] = {"campaign": campaign, "key": key, "scrub": scrub}
    if isinstance(exc, GoogleAdsException):
        details = failure_details(exc.failure)
        cls = classify(details) or _by_status(_status(exc.error))
        return build_error(cls, what, details, f"{_status(exc.error)}", request_id=exc.request_id, **kw)
    if isinstance(exc, auth_exceptions.RefreshError):
        retryable = bool(getattr(exc, "retryable", False))
        cls = TransientError if retryable else AuthExpired
        return build_error(cls, what, [], f"OAuth token refresh refused: {exc}", request_id=None, **kw)
    if isinstance(exc, auth_exceptions.TransportError):
        return build_error(TransientError, what, [], f"OAuth token endpoint: {exc}", request_id=None, **kw)
    if isinstance(exc, core.GoogleAPICallError):
        failure, request_id = failure_from_trailers(exc, failure_cls, version)
        details = failure_details(failure)
        status = exc.grpc_status_code
        cls = classify(details) or _by_status(status)
        message = str(exc.message or exc)
        if status == grpc.StatusCode.UNAVAILABLE and "Getting metadata from plugin failed" in message:
            # The channel's credentials plugin could not refresh the token (normally done before the call).
            cls = AuthExpired if "invalid_grant" in message or "invalid_client" in message else TransientError
        return build_error(cls, what, details, f"{status.name if status else 'error'}: {message}", request_id=request_id, **kw)  # fmt: skip
    if isinstance(exc, grpc.RpcError):
        status = _status(exc)
        return build_error(_by_status(status), what, [], f"{status}", request_id=None, **kw)
    return None


def _status(err: Any) -> grpc.StatusCode | None:
    try:
        return err.code()  # type: ignore[no-any-return]
    except Exception:
        return None


def _by_status(status: grpc.StatusCode | None) -> type[ConnectorError]:
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited
    if status == grpc.StatusCode.UNAUTHENTICATED:
        return AuthExpired
    if status in TRANSIENT_STATUS:
        return TransientError
    return PlatformError


@contextmanager
def boundary(
    what: str,
    *,
    failure_cls: Any,
    version: str,
    campaign: str | None = None,
    key: str | None = None,
    scrub: Callable[[str], str] = str,
    on_error: Callable[[ConnectorError], None] | None = None,
) -> Iterator[None]:
    """Translate whatever the client, google-auth or gRPC raises inside the block into our tree.

    Keep the block to client calls and the iteration of their streams (a stream
    can fail half-way).
    """
    try:
        yield
    except ConnectorError as err:
        if on_error:
            on_error(err)
        raise
    except Exception as exc:
        ours = translate(
            exc, what=what, failure_cls=failure_cls, version=version, campaign=campaign, key=key, scrub=scrub
        )
        if ours is None:
            raise
        if on_error:
            on_error(ours)
        raise ours from exc
