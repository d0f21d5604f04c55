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

from loop.config import Config, folder_problem, load_config
from loop.logs import printable
from policies.errors import ConfigError

console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)


def say(line: str, *, err: bool = False) -> None:
    """Print one line as given: never read as Rich markup ("[meta]" stays), highlighted or wrapped, and
    its control characters (ANSI escapes, carriage returns) shown as escapes, never acted on.

    Every line that carries text from outside (errors, ad names, reasons) goes through here.
    """
    (err_console if err else console).print(
        printable(line, newlines=True), markup=False, highlight=False, emoji=False, soft_wrap=True
    )


def literal(text: object) -> Text:
    """A table cell shown as given: a Rich ``Text`` is never parsed as markup, and control characters
    show as escapes (Rich itself passes ESC through to the terminal)."""
    return Text(printable(str(text)))


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default ./creative-loop.toml, else the bundled example)."),
]


def config_from(path: Path | None) -> Config:
    """The config a command's ``--config`` names (see :func:`loop.config.load_config` for the fallbacks)."""
    return load_config(path)


def utf8_text(value: str | None) -> str | None:
    """A text option's callback: refuse a value that is not UTF-8 (storage, the platform and logs take only text).

    A non-UTF-8 byte in argv arrives as a lone surrogate, which every later write would fail on, with a traceback.
    """
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise typer.BadParameter(f"not UTF-8 text: {value!r}") from None
    return value


def output_folder(path: Path, option: str) -> Path:
    """``path`` if this process can write into it (made if missing); else ConfigError naming the option.

    Checked before a command starts its work: a simulation is not run to end on a traceback at its last write.
    """
    problem = folder_problem(path)
    if problem:
        raise ConfigError(str(path), option, problem)
    return path


def output_file(path: Path, option: str) -> Path:
    """``path`` if this process can write that file (its folder made if missing); else ConfigError naming the option."""
    if str(path) != "-":
        problem = folder_problem(path.parent)
        if problem:
            problem = f"cannot be written in {path.parent}: {problem}"
        else:
            try:
                if path.is_dir():
                    problem = "is a folder, expected a file name"
            except OSError as exc:  # a name too long for the file system
                problem = exc.strerror or str(exc)
        if problem:
            raise ConfigError(str(path), option, problem)
    return path


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
