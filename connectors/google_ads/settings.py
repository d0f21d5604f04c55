"""The ``[google_ads]`` section of the config file (pydantic only: importing it loads no SDK)."""

from __future__ import annotations

from pydantic import Field, field_validator

from connectors.settings import ENV_NAME, Settings


def _customer_id(value: str) -> str:
    digits = value.replace("-", "")
    if value and not (digits.isdigit() and len(digits) == 10):
        raise ValueError(f"expected a 10-digit customer id (dashes allowed), got {value!r}")
    return digits


class GoogleAdsSettings(Settings):
    """The Google Ads connector (``platform = "google_ads"``): ids here, secrets in the environment."""

    customer_id: str = ""  # the account whose campaigns run (a campaign's account_id overrides it)
    login_customer_id: str = ""  # the manager account the credentials act through; empty: none
    developer_token_env: str = Field("GOOGLE_ADS_DEVELOPER_TOKEN", pattern=ENV_NAME)
    client_id_env: str = Field("GOOGLE_ADS_CLIENT_ID", pattern=ENV_NAME)
    client_secret_env: str = Field("GOOGLE_ADS_CLIENT_SECRET", pattern=ENV_NAME)
    refresh_token_env: str = Field("GOOGLE_ADS_REFRESH_TOKEN", pattern=ENV_NAME)
    api_version: str = Field("v26", pattern=r"^v[0-9]+$")
    endpoint: str = Field("", pattern=r"^([A-Za-z0-9.-]+:[0-9]{1,5})?$")  # host:port; empty: Google's
    token_uri: str = Field("https://oauth2.googleapis.com/token", pattern=r"^https?://")
    conversion_action: str = Field("", pattern=r"^([0-9]+|customers/[0-9]+/conversionActions/[0-9]+)?$")
    backfill_days: int | None = Field(None, ge=1, le=90)  # deprecated: [loop] backfill_days
    min_daily_budget: float = Field(1.0, ge=0)
    request_timeout: float = Field(120.0, gt=0)

    @field_validator("customer_id", "login_customer_id")
    @classmethod
    def _ids(cls, value: str) -> str:
        return _customer_id(value)


__all__ = ["GoogleAdsSettings"]
