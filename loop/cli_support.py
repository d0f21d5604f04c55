"""What every ``creative-loop`` command shares: the consoles, one-line output, the ``--config`` option.

The command modules (``loop.doctor``, ``loop.executors``, ``loop.fix``,
``loop.web.commands``) import these names from here and declare their
commands as plain functions; ``loop.cli`` registers them on its Typer app.
No command module imports ``loop.cli``, so the CLI has no import circle.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from loop.config import Config, load_config
from policies.errors import ConfigError

console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)


def say(line: str, *, err: bool = False) -> None:
    """Print one line exactly as given: never read as Rich markup ("[meta]" stays), highlighted or wrapped.

    Every line that carries text from outside (errors, ad names, reasons) goes through here.
    """
    (err_console if err else console).print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


def literal(text: object) -> Text:
    """A table cell shown exactly as given (a Rich ``Text`` is never parsed as markup)."""
    return Text(str(text))


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default ./creative-loop.toml, else the bundled example)."),
]


def config_from(path: Path | None) -> Config:
    """The config a command's ``--config`` names (see :func:`loop.config.load_config` for the fallbacks)."""
    return load_config(path)


def setup_logging(cfg: Config, verbose: bool = False) -> None:
    """Configure logging as ``[loop].log_format`` asks, at INFO (DEBUG with ``verbose``)."""
    from loop.logs import configure

    configure(cfg.loop.log_format, logging.DEBUG if verbose else logging.INFO)


def current_actor() -> str:
    """Who runs the command, for the audit log (storage keeps at most 100 characters)."""
    for name in ("CREATIVE_LOOP_USER", "USER"):
        value = os.environ.get(name, "")
        if value:
            if len(value) > 100 or not value.isprintable():
                raise ConfigError(
                    name, "", f"expected a user name of at most 100 printable characters, got {len(value)}"
                )
            return value
    return "cli"
