"""The web dashboard, approval queue and the self-contained HTML report.

Names load on first use, so importing ``loop.web.status`` (the CLI's
``status``) does not pull in the web server and the plotting library.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "render_report", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from loop.web.app import create_app

        return create_app
    if name in ("render_report", "write_report"):
        from loop.web import report

        return getattr(report, name)
    raise AttributeError(f"module 'loop.web' has no attribute {name!r}")
