"""The Meta (Facebook) Marketing API connector, over the official ``facebook-business`` SDK.

Only this package imports ``facebook_business``; its errors become ours here.
"""

from connectors.meta.platform import AccountInfo, MetaAdPlatform, MetaCampaign, MetaOptions

__all__ = ["AccountInfo", "MetaAdPlatform", "MetaCampaign", "MetaOptions"]
