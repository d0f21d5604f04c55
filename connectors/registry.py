"""Backends by name: one registry line per backend, its code imported only when it is built.

A seam (``connectors.ads.registry``, ``connectors.images.registry``) keeps one
:class:`Registry` of entries.  An entry names everything the rest of the
system asks about a backend without importing it:

- ``settings``: the pydantic model of its section in the config file
  (``loop.config`` validates the section with it);
- ``factory``: ``"package.module:attr"`` of the callable that builds it from a
  context (settings, secrets, engine), imported on first build -- registering
  a backend costs no import of its SDK;
- ``secrets``: the settings fields that name environment variables the
  backend cannot start without (``creative-loop doctor`` checks them);
- ``extra`` and ``requires``: the pip extra that installs its dependencies and
  the modules that extra provides (checked with ``find_spec``, nothing imported).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from connectors.settings import Settings
from policies.errors import ConfigError, NotFound

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def load(ref: str) -> Any:
    """The object ``"package.module:attr[.attr]"`` names (imports the module)."""
    module, sep, attrs = ref.partition(":")
    if not sep or not module or not attrs:
        raise ValueError(f"expected 'package.module:attribute', got {ref!r}")
    obj: Any = importlib.import_module(module)
    for part in attrs.split("."):
        obj = getattr(obj, part)
    return obj


def installed(modules: tuple[str, ...]) -> bool:
    """Whether every module can be imported, without importing any of them."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except ImportError:  # a parent package is missing (or an import hook refuses it)
            return False
    return True


def no_secrets(field_name: str, *, required: bool = True) -> str:
    """The secret reader of a context given none: any read is a programming error."""
    raise ValueError(f"no secrets were given to read {field_name!r}")


class EnvSecrets:
    """Secrets read from the environment variables that settings fields name.

    ``secrets("access_token_env")`` is the value of the variable that the
    settings field ``access_token_env`` holds; unset, it is a ConfigError
    naming the file and the key (``meta.access_token_env``), or ``""`` when
    ``required=False``.  Values are never logged or put into messages.
    """

    def __init__(self, settings: Settings, section: str, source: str, environ: Mapping[str, str] | None = None) -> None:
        self.settings, self.section, self.source = settings, section, source
        self.environ = os.environ if environ is None else environ

    def variable(self, field_name: str) -> str:
        """The name of the environment variable that ``field_name`` holds."""
        value = self.settings.model_dump().get(field_name)
        if not isinstance(value, str):
            raise ValueError(f"{self.section}.{field_name}: expected a settings field naming a variable")
        return value

    def __call__(self, field_name: str, *, required: bool = True) -> str:
        env = self.variable(field_name)
        value = self.environ.get(env, "")
        if not value and required:
            raise ConfigError(self.source, f"{self.section}.{field_name}", f"environment variable {env} is not set")
        return value


@dataclass(frozen=True)
class Entry:
    """What a seam's registry knows about one backend (see the module docstring)."""

    name: str
    settings: type[Settings]
    factory: str | Callable[[Any], Any]
    secrets: tuple[str, ...] = ()
    extra: str = ""
    requires: tuple[str, ...] = ()
    section: str = ""  # the config file's section; empty: the name
    doc: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"name: expected lower-case letters, digits and '_', got {self.name!r}")
        if not self.section:
            object.__setattr__(self, "section", self.name)
        if not (isinstance(self.settings, type) and issubclass(self.settings, Settings)):
            raise TypeError(f"{self.name}: settings must be a connectors.settings.Settings subclass")
        defaults = self.settings()  # every key has a default, so the section may be left out
        for key in self.secrets:
            if not isinstance(getattr(defaults, key, None), str):
                raise ValueError(f"{self.name}: secret {key!r} is not a text field of {self.settings.__name__}")

    def missing(self) -> str:
        """What to install for this backend ("" when its dependencies are importable)."""
        if installed(self.requires):
            return ""
        if self.extra:
            return f"pip install 'creative-loop[{self.extra}]'"
        return f"pip install 'creative-loop' (the base install; missing: {', '.join(self.requires)})"

    def factory_callable(self) -> Callable[[Any], Any]:
        return load(self.factory) if isinstance(self.factory, str) else self.factory

    def _build(self, ctx: Any, expected: type) -> Any:
        """Call the factory with ``ctx``; what it returns must be an ``expected``.

        ``expected`` is the seam's abstract base, which mypy does not accept as ``type[T]``.
        """
        built = self.factory_callable()(ctx)
        if not isinstance(built, expected):
            raise TypeError(f"{self.name!r}: the factory returned {type(built).__name__}, not {expected.__name__}")
        return built


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """The backends of one seam, by name, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}

    def register(self, entry: E, *, replace: bool = False) -> E:
        """Add ``entry``; a second entry of one name is an error unless ``replace``."""
        if entry.name in self._entries and not replace:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        clash = next((e for e in self._entries.values() if e.section == entry.section and e.name != entry.name), None)
        if clash is not None:
            raise ValueError(f"{self.kind} {entry.name!r}: section [{entry.section}] is {clash.name!r}'s")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    @contextmanager
    def registered(self, entry: E) -> Iterator[E]:
        """``entry`` registered for the ``with`` block (an entry it replaced comes back after)."""
        before = self._entries.get(entry.name)
        self.register(entry, replace=True)
        try:
            yield entry
        finally:
            if before is None:
                self.unregister(entry.name)
            else:
                self._entries[entry.name] = before

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise NotFound(f"unknown {self.kind} {name!r} (registered: {', '.join(self._entries)})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[E, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(self.entries())


__all__ = ["EnvSecrets", "Entry", "Registry", "installed", "load", "no_secrets"]
