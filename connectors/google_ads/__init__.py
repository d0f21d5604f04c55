"""The Google Ads API connector (Demand Gen image ads), over the official ``google-ads`` client.

Only this package imports ``google.ads``, ``google.api_core`` and ``grpc``; their errors become ours here.
The platform loads on first use (``from connectors.google_ads import GoogleAdsPlatform``):
importing the package, or its settings, loads no SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.google_ads.platform import AccountInfo, GoogleAdsPlatform, GoogleCampaign, GoogleOptions

__all__ = ["AccountInfo", "GoogleAdsPlatform", "GoogleCampaign", "GoogleOptions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("connectors.google_ads.platform"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
