"""``creative-loop serve`` and ``creative-loop report`` (``loop.cli`` registers them).

The web packages are imported inside the commands, so the rest of the CLI
starts without loading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loop.cli_support import ConfigOpt, config_from, output_file, say, setup_logging, utf8_text
from policies.errors import ConfigError


def _require_web(what: str) -> None:
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            what, "web", f"needs the dashboard's packages: pip install creative-loop ({exc.name} missing)"
        ) from None


def serve(
    config: ConfigOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: [web].host, 127.0.0.1).", callback=utf8_text)
    ] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: [web].port, 8080).")] = None,
) -> None:
    """Serve the dashboard and approval queue (loopback only unless an access token is set)."""
    _require_web("serve")
    import uvicorn

    from loop.web.app import create_app

    cfg = config_from(config)
    # As `run` does: [loop].log_format, access tokens redacted (uvicorn sets up its own loggers only).
    setup_logging(cfg)
    host = host or cfg.model.web.host
    port = port or cfg.model.web.port
    web_app = create_app(cfg, host=host)
    shown = f"[{host}]" if ":" in host else host
    say(f"creative-loop dashboard on http://{shown}:{port}/  (Ctrl-C stops it)")
    uvicorn.run(web_app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


def report(
    config: ConfigOpt = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign (default: all).", callback=utf8_text)] = None,
    out: Annotated[Path, typer.Option(help="Where to write the HTML file.")] = Path("report.html"),
) -> None:
    """Write one self-contained HTML report (charts and images embedded; works offline).

    The dashboard's Reports page runs this same command in the background.
    """
    _require_web("report")
    import time

    from loop.app import open_engine
    from loop.web.report import known_plans, write_report
    from storage.images import ImageStore

    cfg = config_from(config)
    output_file(out, "--out")
    engine = open_engine(cfg.database_url)
    t0 = time.perf_counter()
    try:
        path = write_report(engine, ImageStore(cfg.data_dir / "images"), out, campaign, plans=known_plans(cfg))
    finally:
        engine.dispose()
    size = path.stat().st_size
    say(f"report: {path} ({size / 1024:,.0f} KiB, {time.perf_counter() - t0:.1f} s)")
