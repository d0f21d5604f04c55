"""Helpers for the Google Ads connector tests: a platform pointed at the fake server."""

from __future__ import annotations

from typing import Any

from fake_ads import CLIENT_ID, CLIENT_SECRET, DEVELOPER_TOKEN, MANAGER, REFRESH_TOKEN, FakeGoogleAds

from connectors.google_ads import GoogleAdsPlatform, GoogleCampaign, GoogleOptions


def make_platform(
    fake: FakeGoogleAds, ids: dict[str, Any], campaign: str = "lead-gen", **options: Any
) -> GoogleAdsPlatform:
    """The platform as ``from_context`` builds it, with the fake's endpoint, token URI and credentials."""
    connect: dict[str, Any] = {
        "refresh_token": options.pop("refresh_token", REFRESH_TOKEN),
        "login_customer_id": options.pop("login_customer_id", MANAGER),
    }
    return GoogleAdsPlatform.connect(
        developer_token=options.pop("developer_token", DEVELOPER_TOKEN),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        endpoint=fake.endpoint,
        token_uri=fake.token_uri,
        trust_env=False,
        campaigns={campaign: GoogleCampaign(campaign, ids["customer"], ids["main"], options.pop("currency", "USD"))},
        options=GoogleOptions(**{"request_timeout": 10.0, **options}),
        **connect,
    )
