"""The Meta (Facebook) Marketing API connector, over the official ``facebook-business`` SDK.

Only this package imports ``facebook_business``; its errors become ours here.
The platform loads on first use (``from connectors.meta import MetaAdPlatform``):
importing the package, or its settings, loads no SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.meta.platform import AccountInfo, MetaAdPlatform, MetaCampaign, MetaOptions

__all__ = ["AccountInfo", "MetaAdPlatform", "MetaCampaign", "MetaOptions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("connectors.meta.platform"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
