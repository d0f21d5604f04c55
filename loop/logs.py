"""Logging setup: text or JSON lines, with access tokens redacted."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SECRET = re.compile(
    r"(access_token=|appsecret_proof=|refresh_token=|client_secret=|Bearer\s+|developer-token[\"']?[:=,]\s*[\"']?"
    r"|\"(?:access_token|refresh_token|client_secret)\":\s*\")([^&\s\"']+)",
    re.I,
)


def redact(text: str) -> str:
    """Replace token values in URLs, headers and JSON with ``***``."""
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


# What a terminal or a log reader would act on instead of showing: C0 and C1 controls (ESC starts an
# ANSI sequence, CR overwrites a line, NUL, DEL), line and paragraph separators, bidi overrides, and
# lone surrogates (a non-UTF-8 byte of a command-line value), which no UTF-8 stream can even write.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNPRINTABLE_BUT_NEWLINE = re.compile(_UNPRINTABLE.pattern.replace("\\x00-\\x1f", "\\x00-\\x09\\x0b-\\x1f"))


def printable(text: str, *, newlines: bool = False) -> str:
    r"""``text`` with every control character shown as its escape (``\u001b``), so outside text
    (ad names, reasons, platform messages) cannot move the cursor, recolour, hide or forge lines.

    The escapes are JSON's, so a JSON document stays valid and means the same.  ``newlines``
    keeps ``\n`` (a multi-line block printed on purpose).
    """
    pattern = _UNPRINTABLE_BUT_NEWLINE if newlines else _UNPRINTABLE
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
        record.where = f" [{' / '.join(printable(p) for p in parts)}]" if parts else ""
        # One record, one line: a newline or an escape sequence from outside text cannot forge another.
        record.msg, record.args = printable(record.getMessage()), ()
        return super().format(record)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
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
