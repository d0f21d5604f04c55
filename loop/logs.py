"""Logging setup: text or JSON lines, with access tokens redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_SECRET = re.compile(
    r"(access_token=|appsecret_proof=|refresh_token=|client_secret=|Bearer\s+|developer-token[\"']?[:=,]\s*[\"']?"
    r"|\"(?:access_token|refresh_token|client_secret)\":\s*\")([^&\s\"']+)",
    re.I,
)


def redact(text: str) -> str:
    """Replace token values in URLs, headers and JSON with ``***``."""
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


# The campaign and experiment a log line is about; the tick sets them, every handler reads them.
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("creative_loop_log_context", default={})  # noqa: B039
CONTEXT_KEYS = ("campaign", "experiment")


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Within this block every log record carries ``fields`` (campaign=..., experiment=...)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Put the current campaign and experiment on every record (None outside a campaign)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for key in CONTEXT_KEYS:
            if getattr(record, key, None) is None:
                setattr(record, key, context.get(key))
        return True


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            doc[key] = getattr(record, key, None)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc)


class TextFormatter(logging.Formatter):
    """Plain lines; ``[campaign/experiment]`` after the logger name when a tick set them."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [str(v) for v in (getattr(record, k, None) for k in CONTEXT_KEYS) if v]
        record.where = f" [{' / '.join(parts)}]" if parts else ""
        return super().format(record)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to ``sys.stderr`` as it is when the record is emitted.

    A plain ``StreamHandler`` keeps the stream it was built with; when that
    stream is replaced and closed later (a redirect, an embedding program, a
    test harness capturing output), every later record fails with "I/O
    operation on closed file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = StderrHandler()
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Migrations run on every start; their INFO lines are noise, not news.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    # google-ads logs every failed call at WARNING; the connector reports each one itself, translated.
    logging.getLogger("google.ads.googleads.client").setLevel(max(level, logging.ERROR))
