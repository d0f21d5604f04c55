"""Names from outside (ad names, campaign and creative ids from a platform) used near the filesystem.

:func:`safe_component` turns any string into one harmless path component:
no separators, no ``..``, no control characters, no leading dot or dash,
bounded length.  When the name had to change, a short hash of the original
is appended, so two different names never land on the same file.
:func:`contained` joins components under a root and refuses any result that
would resolve outside it (a symlink planted in the tree, say).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from policies.errors import CreativeLoopError

MAX_LENGTH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class UnsafePath(CreativeLoopError, ValueError):
    """A path built from outside names would leave its root."""


def safe_component(name: object) -> str:
    """One safe path component for ``name``; the same name always gives the same component."""
    text = str(name)
    # Our own ids join parts with ":" (campaign:creative:day); that alone is not worth a hash.
    plain = text.replace(":", "_")
    ascii_ = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_).strip("._-")[:MAX_LENGTH]
    if cleaned == plain and cleaned:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned or 'unnamed'}-{digest}"


def contained(root: str | Path, *names: object) -> Path:
    """``root / safe(name) / ...``, refusing anything that resolves outside ``root``."""
    base = Path(root).resolve()
    target = base.joinpath(*(safe_component(n) for n in names))
    resolved = target.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafePath(f"{target} resolves outside {base}", path=str(target))
    return target
