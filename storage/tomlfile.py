"""Read a TOML file into a frozen, validated pydantic model.

Every problem becomes one :class:`~policies.errors.ConfigError` line naming the
file, the key and the problem, never a traceback.  Unknown keys list the keys
that are allowed there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from policies.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for listing allowed keys)."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        owner = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if owner is None:
            return None
        current = owner
    return current


def translate(file: str | Path, model: type[BaseModel], exc: ValidationError) -> ConfigError:
    """Turn the first pydantic error into our one-line ConfigError."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = _dotted(loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = ", ".join(owner.model_fields) if owner else "?"
        return ConfigError(str(file), key, f"unknown key (allowed: {allowed})")
    if err["type"] == "missing":
        return ConfigError(str(file), key, "missing required key")
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if err["type"] not in ("value_error",) and not isinstance(got, dict | list):
        shown = repr(got)
        if len(shown) > 80:  # a 5,000-character id is still one readable line
            shown = f"{shown[:60]}... ({len(got) if isinstance(got, str) else len(shown)} characters)"
        msg = f"{msg} (got {shown})"
    return ConfigError(str(file), key, msg)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, turning I/O and syntax errors into ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "", "is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not UTF-8 text") from None


def load_model(path: str | Path, model: type[M], data: dict[str, Any] | None = None) -> M:
    """Validate ``data`` (or the file's content) against ``model``."""
    if data is None:
        data = read_toml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(path, model, exc) from None
