"""The one exception tree of creative-loop.

    CreativeLoopError
     ├── ConfigError            bad configuration or scenario (file, key, problem)
     ├── ConnectorError         the outside world failed
     │    ├── RateLimited       slow down and retry later (retry_after seconds)
     │    ├── AuthExpired       credentials rejected; an operator must act
     │    └── PlatformError     the platform refused the request (not retried)
     ├── CapExceeded            a reservation would cross a finance cap
     ├── GenerationError        an image could not be generated
     ├── DatabaseUnavailable    the database cannot be reached or used (down, missing, disk full)
     └── NotFound (+LookupError) an id the user named does not exist

Errors carry their context (campaign, creative, key) so that a log line or a
CLI message says where the problem is.  Foreign exceptions are translated at
the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class CreativeLoopError(Exception):
    """Base class of every error raised on purpose by creative-loop."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class ConfigError(CreativeLoopError):
    """A configuration or scenario file is invalid.

    ``str(err)`` is the one line a user sees: ``file: key: problem``.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = str(file), key, problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}", file=self.file, key=key)


class ConnectorError(CreativeLoopError):
    """A call to an ad platform or image service failed."""

    temporary = False


class RateLimited(ConnectorError):
    """The platform throttled us; retry after ``retry_after`` seconds."""

    temporary = True

    def __init__(self, message: str, retry_after: float | None = None, **context: object) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class TransientError(ConnectorError):
    """A timeout, a 5xx or a platform error marked transient: safe to retry."""

    temporary = True


class AuthExpired(ConnectorError):
    """The access token was rejected. Retrying cannot help; an operator must act."""


class PlatformError(ConnectorError):
    """The platform refused the request (invalid parameter, permission, policy)."""

    def __init__(self, message: str, code: int | None = None, **context: object) -> None:
        super().__init__(message, code=code, **context)
        self.code = code


class CapExceeded(CreativeLoopError):
    """A reservation would take a campaign past one of its finance caps."""

    def __init__(self, campaign: str, account: str, needed: int, left: int, period: str = "") -> None:
        where = f"{account} cap ({period})" if period else f"{account} cap"
        super().__init__(
            f"campaign {campaign!r}: {where}: needs {needed} minor units, {left} left",
            campaign=campaign,
            account=account,
        )
        self.campaign, self.account, self.needed, self.left = campaign, account, needed, left
        self.period = period  # "2026-01", "2026-W03"; empty for a lifetime cap


class GenerationError(CreativeLoopError):
    """An image generator failed or refused (``refused`` is True for a safety block)."""

    def __init__(self, message: str, refused: bool = False, **context: object) -> None:
        super().__init__(message, **context)
        self.refused = refused


class DatabaseUnavailable(CreativeLoopError):
    """The database cannot be used right now; the message names it and what to check (never a password)."""


class NotFound(CreativeLoopError, LookupError):
    """An id named by a user or a platform does not exist."""
