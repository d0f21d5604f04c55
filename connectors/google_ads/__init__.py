"""The Google Ads API connector (Demand Gen image ads), over the official ``google-ads`` client.

Only this package imports ``google.ads``, ``google.api_core`` and ``grpc``; their errors become ours here.
"""

from connectors.google_ads.platform import AccountInfo, GoogleAdsPlatform, GoogleCampaign, GoogleOptions

__all__ = ["AccountInfo", "GoogleAdsPlatform", "GoogleCampaign", "GoogleOptions"]
