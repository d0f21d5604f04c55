"""The web dashboard, approval queue and the self-contained HTML report."""

from loop.web.app import create_app
from loop.web.report import render_report, write_report

__all__ = ["create_app", "render_report", "write_report"]
