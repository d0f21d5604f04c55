"""One self-contained HTML file: the dashboard's charts and images embedded, works offline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from loop.web.views import embedded_image_url, make_env, report_context, write_file
from storage.db import session as open_session
from storage.images import ImageStore


def render_report(
    engine: Engine,
    images: ImageStore,
    campaign: str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> str:
    """The report as a string; raises ``NotFound`` for a campaign the database does not hold."""
    now = (clock or (lambda: datetime.now(UTC)))()
    with open_session(engine) as session:
        ctx = report_context(session, campaign)
        return (
            make_env()
            .get_template("report.html")
            .render(
                **ctx,
                report=True,
                img=embedded_image_url(images),
                generated_at=now,
                title=f"creative-loop report · {campaign or 'all campaigns'}",
            )
        )


def write_report(
    engine: Engine,
    images: ImageStore,
    out_path: str | Path,
    campaign: str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> Path:
    """Write the report to ``out_path`` (atomically) and return the path."""
    return write_file(Path(out_path), render_report(engine, images, campaign, clock=clock))
