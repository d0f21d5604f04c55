"""``GoogleAdsPlatform``: the ``AdPlatform`` seam over the official ``google-ads`` client (gRPC).

Every call goes through ``GoogleAdsService``: reads are GAQL through
``SearchStream``, writes are ``Mutate`` (Google recommends it for creating
related resources together: one request, all or nothing, with temporary
negative ids for the resources it creates).  The client runs without
proto-plus, so rows are plain protobuf messages (fast to read in bulk).

How the loop's mutations map onto Google Ads (see ``connectors/ads/base.py``):

``LaunchTestArm``
    One arm = one Demand Gen campaign with its own non-shared daily budget
    (budgets belong to campaigns; an ad group has none), so the bandit's split
    is each arm's campaign budget.  One atomic ``Mutate``: the variant as an
    image asset, the budget (at the minimum daily amount), the campaign
    (``PAUSED``, the parent campaign's bidding and EU political-advertising
    declaration, its location and language criteria), an ad group (the parent
    ad group's channel controls and audience criteria) and a Demand Gen image
    ad with the parent ad's copy, logo and URLs.  Everything is named with the
    mutation key.  Result: ``{"adset_id": <campaign id>, "ad_id": "<ad group id>-<ad id>"}``.
``SetBudgets``
    First checks that every id is a test campaign of this loop campaign (by
    name), then one ``Mutate`` with partial failure: a positive budget sets the
    budget's ``amount_micros``, the campaign's ``end_date_time`` (the end of
    ``end_day``, account time: a dead loop cannot spend past what was reserved)
    and ``ENABLED``; 0, or a share under the minimum daily budget, pauses the
    campaign.  An arm Google refuses as under its per-day minimum is paused too
    and reported in ``below_minimum``.
``PauseAds``
    One ``Mutate`` with partial failure: the ads and the arms' campaigns ``PAUSED``.
``ScaleWinner``
    One atomic ``Mutate`` in the parent's ad group: the pro render as an image
    asset, a new Demand Gen image ad (``ENABLED``, named with the key) and the
    fatigued parent ``PAUSED``; if the ad exists already (an earlier attempt),
    only the two status updates.

Idempotency: every object carries the mutation key in its name; ``apply``
adopts what exists before creating anything, and a launch or scale is one
atomic request, so a crash leaves either nothing or the whole of it.  A
``DUPLICATE_CAMPAIGN_NAME`` answer (a lost response to an earlier attempt)
is adopted too.  Budget and pause updates are idempotent and resent.

Counting: every call (``google_ads_api_calls`` by method), row, operation,
throttling error and token refresh is counted in memory (:meth:`count` reads
it); the tick stores the counts through its own session
(:meth:`drain_counters`), so no second connection ever writes to the
database; :meth:`close` stores what is left when a ``counter_engine`` (the
loop's own engine) is given.

Secrets: the developer token, the OAuth client and refresh token come in as
arguments (``from_context`` reads them from the environment variables the
config names) and are scrubbed from every error message.  The OAuth token is
refreshed here, before a call, so that a refused refresh token is an
``AuthExpired`` and not a retried gRPC failure.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import httpx
from google.ads.googleads.client import GoogleAdsClient

from connectors.ads.base import (
    AdPlatform,
    AdSignal,
    InsightRow,
    LaunchTestArm,
    LiveAd,
    Mutation,
    PauseAds,
    ScaleWinner,
    SetBudgets,
    SourceCreative,
)
from connectors.ads.counters import ApiCounters
from connectors.ads.currencies import check_billing
from connectors.google_ads import gaql
from connectors.google_ads.errors import FailureDetail, boundary, build_error, classify, failure_details
from connectors.google_ads.images import SLOT_BY_FIELD, SLOTS, Fitted, ad_images
from connectors.google_ads.settings import GoogleAdsSettings
from policies.errors import ConfigError, ConnectorError, NotFound, PlatformError

if TYPE_CHECKING:
    from connectors.ads.registry import PlatformContext

log = logging.getLogger("creative_loop.google_ads")

API_VERSION = "v26"
SCOPE = "https://www.googleapis.com/auth/adwords"
TOKEN_URI = "https://oauth2.googleapis.com/token"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif"})
DEFAULT_CTA = "LEARN_MORE"
LABEL_RANK = {"LOW": 0, "GOOD": 1, "BEST": 2}  # performance labels that say something; LEARNING etc. do not
FATIGUED_AFTER = ("GOOD", "BEST")
# Criteria copied from the parent: type -> the leaf that carries the criterion (GAQL selects leaves only).
CAMPAIGN_CRITERIA = {"LOCATION": "location.geo_target_constant", "LANGUAGE": "language.language_constant"}
AD_GROUP_CRITERIA = {
    "AUDIENCE": "audience.audience",
    "LOCATION": "location.geo_target_constant",
    "LANGUAGE": "language.language_constant",
    "AGE_RANGE": "age_range.type",
    "GENDER": "gender.type",
    "PARENTAL_STATUS": "parental_status.type",
    "INCOME_RANGE": "income_range.type",
    "USER_LIST": "user_list.user_list",
    "USER_INTEREST": "user_interest.user_interest_category",
    "CUSTOM_AUDIENCE": "custom_audience.custom_audience",
    "TOPIC": "topic.topic_constant",
}
# The parent campaign's bidding that a test campaign can copy: type -> (oneof field, its optional leaf).
BIDDING = {
    "MAXIMIZE_CONVERSIONS": ("maximize_conversions", "target_cpa_micros"),
    "MAXIMIZE_CONVERSION_VALUE": ("maximize_conversion_value", "target_roas"),
    "TARGET_CPA": ("target_cpa", "target_cpa_micros"),
    "TARGET_ROAS": ("target_roas", "target_roas"),
    "TARGET_SPEND": ("target_spend", "cpc_bid_ceiling_micros"),
}
AD_FIELDS = (
    "ad_group.id",
    "ad_group_ad.ad.id",
    "ad_group_ad.ad.name",
    "ad_group_ad.status",
    "ad_group_ad.ad.final_urls",
    *(f"ad_group_ad.ad.demand_gen_multi_asset_ad.{s.field}" for s in SLOTS),
    "ad_group_ad.ad.demand_gen_multi_asset_ad.logo_images",
    "ad_group_ad.ad.demand_gen_multi_asset_ad.headlines",
    "ad_group_ad.ad.demand_gen_multi_asset_ad.descriptions",
    "ad_group_ad.ad.demand_gen_multi_asset_ad.business_name",
    "ad_group_ad.ad.demand_gen_multi_asset_ad.call_to_action_text",
)


@dataclass(frozen=True)
class GoogleCampaign:
    """Where one of the loop's campaigns lives on Google Ads."""

    id: str  # the loop's campaign id
    customer_id: str  # the Google Ads account, 10 digits
    campaign_id: str  # the Demand Gen campaign whose image ads are watched and scaled
    currency: str = ""  # the currency the config's caps are in; checked against the account's ("" = not checked)

    def __post_init__(self) -> None:
        gaql.ident(self.customer_id, "customer_id")
        gaql.ident(self.campaign_id, f"campaign {self.id!r}: campaign_id")


@dataclass(frozen=True)
class GoogleOptions:
    # A conversion action (resource name, or its id in each campaign's account) whose conversions count;
    # empty: metrics.conversions (the account's primary conversion actions).
    conversion_action: str = ""
    min_daily_budget_minor: int = 100  # hundredths of a currency unit; an arm's share under it sits the window out
    request_timeout: float = 120.0  # seconds per call (a whole stream counts as one call)
    image_max_bytes: int = 5 * 1024 * 1024  # Google's image asset limit is 5120 KB
    image_max_pixels: int = 40_000_000
    image_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.request_timeout <= 0 or self.image_timeout <= 0:
            raise ValueError("request_timeout, image_timeout: expected > 0")
        if self.min_daily_budget_minor < 0:
            raise ValueError(f"min_daily_budget_minor: expected >= 0, got {self.min_daily_budget_minor}")


@dataclass(frozen=True)
class AccountInfo:
    currency: str
    exponent: int
    time_zone: str


@dataclass(frozen=True)
class ParentAd:
    """The fatigued ad: what a test arm or a scaled ad copies from it."""

    customer_id: str
    campaign_id: str
    ad_group_id: str
    ad_id: str  # "<ad group id>-<ad id>" (gaql.ad_key)
    status: str
    final_urls: tuple[str, ...]
    images: tuple[tuple[str, str], ...]  # (slot field, asset resource name)
    logos: tuple[str, ...]
    headlines: tuple[str, ...]
    descriptions: tuple[str, ...]
    business_name: str
    call_to_action: str


@dataclass(frozen=True)
class ArmTemplate:
    """What a test campaign and its ad group copy from the parent's campaign and ad group."""

    bidding: tuple[str, str, float | int | None] | None  # (oneof field, leaf, value) or None for a portfolio
    portfolio: str  # a portfolio bidding strategy's resource name, or ""
    eu_political: int
    campaign_criteria: tuple[tuple[str, bool, Any], ...]  # (leaf path, negative, value)
    ad_group_criteria: tuple[tuple[str, bool, Any], ...]
    channel_controls: Any  # DemandGenAdGroupSettings.channel_controls (a protobuf message) or None
    not_copied: tuple[str, ...] = ()


class GoogleAdsPlatform(AdPlatform):
    """The ``AdPlatform`` of one or more Google Ads accounts (one ``GoogleCampaign`` per loop campaign)."""

    name = "google_ads"
    counters: ApiCounters

    def __init__(
        self,
        client: GoogleAdsClient,
        campaigns: Mapping[str, GoogleCampaign],
        options: GoogleOptions = GoogleOptions(),
        *,
        credentials: Any = None,
        token_request: Any = None,
        secrets: Iterable[str] = (),
        http: httpx.Client | None = None,
        counter_engine: Any = None,
    ) -> None:
        if client.use_proto_plus:
            raise ValueError("client: expected use_proto_plus=False (rows are read as protobuf messages)")
        self.client = client
        self.version = client.version or API_VERSION
        self.campaigns = dict(campaigns)
        self.options = options
        self.credentials = credentials
        self._token_request = token_request
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)
        self._http = http
        self._fresh: set[str] = set()  # keys whose intent was just recorded: nothing to look up before sending
        self.counters = ApiCounters("google_ads", counter_engine)  # counter_engine: only for close()
        self._service: Any = None
        self._failure_cls = type(client.get_type("GoogleAdsFailure"))
        self._accounts: dict[str, AccountInfo] = {}
        self._parents: dict[tuple[str, str], ParentAd] = {}
        self._templates: dict[tuple[str, str, str], ArmTemplate] = {}
        self._min_budget_micros: dict[str, int] = {}  # learned from Google's per-day minimum errors
        self._refresh_lock = threading.Lock()

    # -- construction ---------------------------------------------------------
    @classmethod
    def connect(
        cls,
        *,
        developer_token: str,
        campaigns: Mapping[str, GoogleCampaign],
        client_id: str = "",
        client_secret: str = "",
        refresh_token: str = "",
        credentials: Any = None,
        login_customer_id: str = "",
        endpoint: str = "",
        token_uri: str = TOKEN_URI,
        api_version: str = API_VERSION,
        trust_env: bool = True,
        **kwargs: Any,
    ) -> GoogleAdsPlatform:
        """A client with OAuth user credentials (refreshed here) and no process-wide configuration.

        ``trust_env``: whether the token refresh honours proxy variables (gRPC reads its own).
        """
        import google.auth.transport.requests
        import requests
        from google.oauth2.credentials import Credentials

        if credentials is None:
            credentials = Credentials(
                token=None, refresh_token=refresh_token, client_id=client_id, client_secret=client_secret,
                token_uri=token_uri, scopes=[SCOPE],
            )  # fmt: skip
        client = GoogleAdsClient(
            credentials=credentials,
            developer_token=developer_token,
            endpoint=endpoint or None,
            login_customer_id=login_customer_id or None,
            version=api_version,
            use_proto_plus=False,
        )
        session = requests.Session()
        session.trust_env = trust_env
        return cls(
            client, campaigns, credentials=credentials,
            token_request=google.auth.transport.requests.Request(session=session),
            secrets=(developer_token, client_secret, refresh_token), **kwargs,
        )  # fmt: skip

    @classmethod
    def from_settings(
        cls,
        settings: GoogleAdsSettings,
        campaigns: Mapping[str, GoogleCampaign],
        *,
        developer_token: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        counter_engine: Any = None,
        **kwargs: Any,
    ) -> GoogleAdsPlatform:
        """The platform the ``[google_ads]`` settings describe, for ``campaigns``.

        ``counter_engine`` (the loop's own engine, never a second one) only stores the counts
        still pending at :meth:`close`; without it they stay in memory.  ``kwargs`` go to
        :meth:`connect` (``trust_env``).
        """
        g = settings
        return cls.connect(
            developer_token=developer_token,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            login_customer_id=g.login_customer_id,
            endpoint=g.endpoint,
            token_uri=g.token_uri,
            api_version=g.api_version,
            campaigns=campaigns,
            options=GoogleOptions(
                conversion_action=g.conversion_action,
                min_daily_budget_minor=round(g.min_daily_budget * 100),
                request_timeout=g.request_timeout,
            ),
            counter_engine=counter_engine,
            **kwargs,
        )

    @classmethod
    def from_context(cls, ctx: PlatformContext) -> GoogleAdsPlatform:
        """The ``google_ads`` registry line: ``[google_ads]``, the campaigns on it, secrets from the environment."""
        g: GoogleAdsSettings = ctx.settings
        secrets = {name: ctx.secret(f"{name}_env") for name in ("developer_token", "client_id", "client_secret", "refresh_token")}  # fmt: skip
        campaigns: dict[str, GoogleCampaign] = {}
        for c in ctx.campaigns:
            customer = c.account_id.replace("-", "") if c.account_id else g.customer_id
            if not customer:
                raise ConfigError(ctx.source, "google_ads.customer_id", f"required by {c.key} (or set its account_id)")  # fmt: skip
            if not c.campaign_id:
                raise ConfigError(ctx.source, f"{c.key}.campaign_id", "required when the campaign is on google_ads")  # fmt: skip
            try:
                campaigns[c.id] = GoogleCampaign(c.id, customer, c.campaign_id, c.currency)
            except ValueError as exc:
                raise ConfigError(ctx.source, c.key, str(exc)) from None
        return cls.from_settings(g, campaigns, **secrets, counter_engine=ctx.engine)

    def close(self) -> None:
        """Close the gRPC channel, the token and image HTTP sessions; store pending counts if given an engine."""
        self.counters.store_leftovers()
        if self._service is not None:
            self._service.transport.close()
            self._service = None
        session = getattr(self._token_request, "session", None)
        if session is not None:
            session.close()
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def service(self) -> Any:
        """The GoogleAdsService client (one channel, made on first use and kept: each get_service opens one)."""
        if self._service is None:
            self._service = self.client.get_service("GoogleAdsService")
        return self._service

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.options.image_timeout, follow_redirects=True, trust_env=False)
        return self._http

    def _count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters.add(name, amount, **labels)

    # -- what the mutation records know -----------------------------------------------
    def remember(self, key: str, objects: dict[str, Any], fresh: bool) -> None:
        """A fresh key was never sent: its launch or scale need not look for what an earlier attempt made."""
        if fresh:
            self._fresh.add(key)
        else:
            self._fresh.discard(key)

    # -- the wire -----------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` without any secret this platform holds (the current access token included)."""
        token = getattr(self.credentials, "token", None)
        for secret in (*self._secrets, *([token] if isinstance(token, str) and len(token) >= 4 else [])):
            text = text.replace(secret, "***")
        return text

    def _on_error(self, err: ConnectorError) -> None:
        from policies.errors import RateLimited

        if isinstance(err, RateLimited):
            self._count("google_ads_throttled", error=str(err.context.get("error", "")))

    def _boundary(self, what: str, campaign: str | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
        return boundary(
            what, failure_cls=self._failure_cls, version=self.version, campaign=campaign, key=key,
            scrub=self.scrub, on_error=self._on_error,
        )  # fmt: skip

    def _ensure_token(self) -> None:
        """Refresh the OAuth token before a call, so that a refused refresh token is ours to report."""
        creds = self.credentials
        if creds is None or self._token_request is None or creds.valid:
            return
        with self._refresh_lock:
            if not creds.valid:
                self._count("google_ads_token_refreshes")
                creds.refresh(self._token_request)

    def _search(self, customer_id: str, query: str, what: str, campaign: str | None = None, key: str | None = None) -> list[Any]:  # fmt: skip
        """Every row of a GAQL query through SearchStream (protobuf ``GoogleAdsRow`` messages)."""
        rows: list[Any] = []
        with self._boundary(what, campaign, key):
            self._ensure_token()
            self._count("google_ads_api_calls", method="SearchStream")
            service = self.service  # held while the stream is read: a dropped client closes its channel
            stream = service.search_stream(customer_id=customer_id, query=query, timeout=self.options.request_timeout)
            for batch in stream:
                rows.extend(batch.results)
        self._count("google_ads_rows", float(len(rows)))
        return rows

    def _mutate(
        self, customer_id: str, operations: list[Any], what: str, m: Mutation, *, partial_failure: bool = False
    ) -> tuple[Any, list[FailureDetail]]:
        """One ``GoogleAdsService.Mutate``; with partial failure also the failed operations' errors."""
        request = self.client.get_type("MutateGoogleAdsRequest")
        request.customer_id = customer_id
        request.mutate_operations.extend(operations)
        request.partial_failure = partial_failure
        self._fresh.discard(m.key)  # from now on something may exist: a retry looks first
        with self._boundary(what, m.campaign, m.key):
            self._ensure_token()
            self._count("google_ads_api_calls", method="Mutate")
            self._count("google_ads_operations", float(len(operations)))
            response = self.service.mutate(request=request, timeout=self.options.request_timeout)
        failed: list[FailureDetail] = []
        if partial_failure and response.HasField("partial_failure_error"):
            for detail in response.partial_failure_error.details:
                failure = self._failure_cls()
                if detail.Unpack(failure):
                    failed.extend(failure_details(failure))
        return response, failed

    def _raise_failures(self, what: str, details: list[FailureDetail], m: Mutation) -> None:
        if not details:
            return
        cls = classify(details)
        assert cls is not None
        err = build_error(cls, what, details, "", request_id=None, campaign=m.campaign, key=m.key, scrub=self.scrub)
        self._on_error(err)
        raise err

    # -- lookups ----------------------------------------------------------------
    def _campaign(self, campaign: str) -> GoogleCampaign:
        try:
            return self.campaigns[campaign]
        except KeyError:
            raise NotFound(f"campaign {campaign!r} has no Google Ads ids configured", campaign=campaign) from None

    def account(self, customer_id: str) -> AccountInfo:
        """Currency and time zone of an account (read once)."""
        info = self._accounts.get(customer_id)
        if info is None:
            rows = self._search(customer_id, "SELECT customer.id, customer.currency_code, customer.time_zone FROM customer", "read account")  # fmt: skip
            if not rows:
                raise PlatformError(f"Google Ads account {customer_id} not found")
            cust = rows[0].customer
            currency = cust.currency_code or "USD"
            info = AccountInfo(currency, gaql.currency_exponent(currency), cust.time_zone or "UTC")
            self._accounts[customer_id] = info
        return info

    def _money(self, c: GoogleCampaign) -> AccountInfo:
        """The campaign's account, refused when it bills in another currency than the campaign's caps are in."""
        acct = self.account(c.customer_id)
        check_billing(f"Google Ads account {c.customer_id}", acct.currency, c.id, c.currency)
        return acct

    def _test_prefix(self, campaign: str) -> str:
        """Every object a test arm of ``campaign`` makes is named ``cl:<campaign>:...`` (the key)."""
        return f"cl:{campaign}:"

    def _test_campaigns(self, c: GoogleCampaign) -> list[str]:
        rows = self._search(
            c.customer_id,
            f"SELECT campaign.id FROM campaign WHERE campaign.name LIKE {gaql.like_prefix(self._test_prefix(c.id))}",
            "list test campaigns",
            c.id,
        )
        return [str(r.campaign.id) for r in rows]

    # -- AdPlatform: reads ---------------------------------------------------------
    def list_ads(self, campaign: str) -> list[LiveAd]:
        """The watched campaign's image ads by *effective* status: only ``ACTIVE`` delivers.

        An enabled ad in a paused ad group or campaign, or a disapproved one, does
        not deliver: it is listed ``PAUSED`` with the reason (never tested for
        fatigue).  Removed ads and ads of removed ad groups are left out.
        """
        c = self._campaign(campaign)
        rows = self._search(
            c.customer_id,
            "SELECT campaign.status, ad_group.id, ad_group.status, ad_group_ad.ad.id, ad_group_ad.ad.name, "
            "ad_group_ad.status, ad_group_ad.policy_summary.approval_status, "
            "ad_group_ad.ad.demand_gen_multi_asset_ad.headlines FROM ad_group_ad "
            f"WHERE campaign.id = {gaql.ident(c.campaign_id)} AND ad_group_ad.status != 'REMOVED' "
            "AND ad_group.status != 'REMOVED' AND ad_group_ad.ad.type = 'DEMAND_GEN_MULTI_ASSET_AD'",
            "list ads",
            campaign,
        )
        out = []
        for r in rows:
            ad = r.ad_group_ad.ad
            headlines = [h.text for h in ad.demand_gen_multi_asset_ad.headlines]
            name = ad.name or (headlines[0] if headlines else f"ad {ad.id}")
            states = (
                ("AD", _enum_name(r.ad_group_ad, "status")),
                ("AD_GROUP", _enum_name(r.ad_group, "status")),
                ("CAMPAIGN", _enum_name(r.campaign, "status")),
            )
            reasons = [f"{who}_{state}" for who, state in states if state != "ENABLED"]
            if _enum_name(r.ad_group_ad.policy_summary, "approval_status") == "DISAPPROVED":
                reasons.append("DISAPPROVED")
            out.append(
                LiveAd(
                    ad_id=gaql.ad_key(r.ad_group.id, ad.id),
                    name=name,
                    status="PAUSED" if reasons else "ACTIVE",
                    headline=headlines[0] if headlines else "",
                    reason=", ".join(reasons),
                )
            )
        return sorted(out, key=lambda a: a.ad_id)

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        c = self._campaign(campaign)
        acct = self._money(c)
        campaign_ids = [c.campaign_id, *self._test_campaigns(c)]
        where = f"segments.date BETWEEN {gaql.day(since)} AND {gaql.day(until)} AND campaign.id IN {gaql.ids(campaign_ids)}"  # fmt: skip
        conv_field = "" if self.options.conversion_action else ", metrics.conversions"
        rows = self._search(
            c.customer_id,
            "SELECT ad_group.id, ad_group_ad.ad.id, segments.date, metrics.impressions, metrics.clicks, "
            f"metrics.cost_micros{conv_field} FROM ad_group_ad WHERE {where}",
            "read metrics",
            campaign,
        )
        conversions: dict[tuple[str, str], float] = {}
        if self.options.conversion_action:
            action = self._conversion_action(c)
            for r in self._search(
                c.customer_id,
                "SELECT ad_group.id, ad_group_ad.ad.id, segments.date, segments.conversion_action, "
                f"metrics.all_conversions FROM ad_group_ad WHERE {where} "
                f"AND segments.conversion_action = {gaql.string(action)}",
                "read conversions",
                campaign,
            ):
                k = (gaql.ad_key(r.ad_group.id, r.ad_group_ad.ad.id), r.segments.date)
                conversions[k] = conversions.get(k, 0.0) + r.metrics.all_conversions
        out = []
        for r in rows:
            ad_id = gaql.ad_key(r.ad_group.id, r.ad_group_ad.ad.id)
            conv = conversions.get((ad_id, r.segments.date), 0.0) if conv_field == "" else r.metrics.conversions
            out.append(
                InsightRow(
                    ad_id=ad_id,
                    day=date.fromisoformat(r.segments.date),
                    impressions=int(r.metrics.impressions),
                    clicks=int(r.metrics.clicks),
                    spend_minor=gaql.micros_to_minor(r.metrics.cost_micros, acct.exponent),
                    conversions=gaql.whole(conv),
                )
            )
        return out

    def _conversion_action(self, c: GoogleCampaign) -> str:
        action = self.options.conversion_action
        if action.isdigit():
            return gaql.resource(c.customer_id, "conversionActions", action)
        return action

    def signals(self, campaign: str) -> list[AdSignal]:
        """Each main ad's image performance label (the best of its images'), when Google has one."""
        c = self._campaign(campaign)
        fields = ", ".join(f"'{s.field_type}'" for s in SLOTS)
        rows = self._search(
            c.customer_id,
            "SELECT ad_group.id, ad_group_ad.ad.id, ad_group_ad_asset_view.asset, "
            "ad_group_ad_asset_view.field_type, ad_group_ad_asset_view.performance_label "
            f"FROM ad_group_ad_asset_view WHERE campaign.id = {gaql.ident(c.campaign_id)} "
            f"AND ad_group_ad_asset_view.enabled = TRUE AND ad_group_ad_asset_view.field_type IN ({fields}) "
            "AND ad_group_ad.status = 'ENABLED'",
            "read asset performance labels",
            campaign,
        )
        by_ad: dict[str, dict[str, str]] = {}
        for r in rows:
            label = _enum_name(r.ad_group_ad_asset_view, "performance_label")
            if label in LABEL_RANK:
                by_ad.setdefault(gaql.ad_key(r.ad_group.id, r.ad_group_ad.ad.id), {})[r.ad_group_ad_asset_view.asset] = label  # fmt: skip
        return [
            AdSignal(
                ad_id=ad_id,
                name="asset_performance",
                level=max(labels.values(), key=LABEL_RANK.__getitem__),
                fatigued_after=FATIGUED_AFTER,
                data={"assets": dict(sorted(labels.items()))},
            )
            for ad_id, labels in sorted(by_ad.items())
        ]

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        c = self._campaign(campaign)
        parent = self._parent(c, ad_id, campaign)
        if not parent.images:
            raise PlatformError(f"ad {ad_id} has no marketing image", campaign=campaign)
        asset = parent.images[0][1]
        rows = self._search(
            c.customer_id,
            "SELECT asset.resource_name, asset.image_asset.full_size.url, asset.image_asset.mime_type "
            f"FROM asset WHERE asset.resource_name = {gaql.string(asset)}",
            "read image asset",
            campaign,
        )
        if not rows or not rows[0].asset.image_asset.full_size.url:
            raise PlatformError(f"image asset {asset} has no URL", campaign=campaign)
        image = self._download(rows[0].asset.image_asset.full_size.url, campaign)
        return SourceCreative(
            ad_id=ad_id,
            image=image,
            headline=parent.headlines[0] if parent.headlines else "",
            message=parent.descriptions[0] if parent.descriptions else "",
            link=parent.final_urls[0] if parent.final_urls else "",
            call_to_action=parent.call_to_action or DEFAULT_CTA,
        )

    def _parent(self, c: GoogleCampaign, ad_id: str, campaign: str, *, fresh: bool = False) -> ParentAd:
        """The parent ad (read once, unless ``fresh``): it must be a Demand Gen image ad of the watched campaign."""
        cached = self._parents.get((c.customer_id, ad_id))
        if cached is not None and not fresh:
            return cached
        try:
            rn = gaql.ad_group_ad_name(c.customer_id, ad_id)
        except ValueError as exc:
            raise NotFound(str(exc), campaign=campaign) from None
        rows = self._search(
            c.customer_id,
            f"SELECT campaign.id, {', '.join(AD_FIELDS)} FROM ad_group_ad "
            f"WHERE ad_group_ad.resource_name = {gaql.string(rn)} AND campaign.id = {gaql.ident(c.campaign_id)}",
            "read parent ad",
            campaign,
        )
        if not rows:
            raise NotFound(f"ad {ad_id} is not in campaign {c.campaign_id}", campaign=campaign)
        r = rows[0]
        ad = r.ad_group_ad.ad
        dg = ad.demand_gen_multi_asset_ad
        parent = ParentAd(
            customer_id=c.customer_id,
            campaign_id=str(r.campaign.id),
            ad_group_id=str(r.ad_group.id),
            ad_id=ad_id,
            status=_enum_name(r.ad_group_ad, "status"),
            final_urls=tuple(ad.final_urls),
            images=tuple((s.field, img.asset) for s in SLOTS for img in getattr(dg, s.field)),
            logos=tuple(img.asset for img in dg.logo_images),
            headlines=tuple(h.text for h in dg.headlines),
            descriptions=tuple(d.text for d in dg.descriptions),
            business_name=dg.business_name,
            call_to_action=dg.call_to_action_text,
        )
        self._parents[(c.customer_id, ad_id)] = parent
        return parent

    def _template(self, c: GoogleCampaign, parent: ParentAd, m: Mutation) -> ArmTemplate:
        """The parent campaign's bidding, declaration and criteria, and its ad group's controls (read once)."""
        cache_key = (c.customer_id, parent.campaign_id, parent.ad_group_id)
        found = self._templates.get(cache_key)
        if found is not None:
            return found
        camp_id, group_id = gaql.ident(parent.campaign_id), gaql.ident(parent.ad_group_id)
        leaves = sorted({f"campaign.{field}.{leaf}" for field, leaf in BIDDING.values()})
        rows = self._search(
            c.customer_id,
            "SELECT campaign.id, campaign.bidding_strategy_type, campaign.bidding_strategy, "
            f"campaign.contains_eu_political_advertising, {', '.join(leaves)} FROM campaign WHERE campaign.id = {camp_id}",
            "read parent campaign", m.campaign, m.key,
        )  # fmt: skip
        if not rows:
            raise NotFound(f"campaign {camp_id} of the parent ad not found", campaign=m.campaign, key=m.key)
        camp = rows[0].campaign
        not_copied: list[str] = []
        bidding: tuple[str, str, float | int | None] | None = None
        btype = _enum_name(camp, "bidding_strategy_type")
        if camp.bidding_strategy:
            pass  # a portfolio strategy: the test campaign uses the same one
        elif btype in BIDDING:
            oneof, leaf = BIDDING[btype]
            bidding = (oneof, leaf, getattr(getattr(camp, oneof), leaf) or None)
        else:
            raise PlatformError(
                f"the parent campaign's bidding ({btype}) cannot be copied to a Demand Gen test campaign "
                f"(supported: {', '.join(sorted(BIDDING))} or a portfolio strategy)",
                campaign=m.campaign, key=m.key,
            )  # fmt: skip
        if _enum_name(camp, "contains_eu_political_advertising") not in (
            "CONTAINS_EU_POLITICAL_ADVERTISING",
            "DOES_NOT_CONTAIN_EU_POLITICAL_ADVERTISING",
        ):
            raise PlatformError(
                "the parent campaign has no EU political advertising declaration, which a Demand Gen test campaign "
                "must carry: declare it on the parent campaign in Google Ads",
                campaign=m.campaign, key=m.key,
            )  # fmt: skip
        types = ", ".join(f"'{t}'" for t in CAMPAIGN_CRITERIA)
        camp_crit = self._search(
            c.customer_id,
            f"SELECT campaign_criterion.type, campaign_criterion.negative, {', '.join('campaign_criterion.' + v for v in CAMPAIGN_CRITERIA.values())} "
            f"FROM campaign_criterion WHERE campaign.id = {camp_id} AND campaign_criterion.type IN ({types}) "
            "AND campaign_criterion.status != 'REMOVED'",
            "read parent campaign criteria", m.campaign, m.key,
        )  # fmt: skip
        group = self._search(
            c.customer_id,
            "SELECT ad_group.id, ad_group.demand_gen_ad_group_settings.channel_controls.channel_strategy, "
            "ad_group.demand_gen_ad_group_settings.channel_controls.channel_config, "
            + ", ".join(
                f"ad_group.demand_gen_ad_group_settings.channel_controls.selected_channels.{ch}"
                for ch in ("youtube_in_stream", "youtube_in_feed", "youtube_shorts", "discover", "gmail", "display", "maps")  # fmt: skip
            )
            + f" FROM ad_group WHERE ad_group.id = {group_id}",
            "read parent ad group", m.campaign, m.key,
        )  # fmt: skip
        group_crit = self._search(
            c.customer_id,
            "SELECT ad_group_criterion.type, ad_group_criterion.negative, "
            f"{', '.join('ad_group_criterion.' + v for v in AD_GROUP_CRITERIA.values())} FROM ad_group_criterion "
            f"WHERE ad_group.id = {group_id} AND ad_group_criterion.status != 'REMOVED'",
            "read parent ad group criteria", m.campaign, m.key,
        )  # fmt: skip
        cc = []
        for r in camp_crit:
            t = _enum_name(r.campaign_criterion, "type_")
            cc.append((CAMPAIGN_CRITERIA[t], r.campaign_criterion.negative, _leaf(r.campaign_criterion, CAMPAIGN_CRITERIA[t])))  # fmt: skip
        gc = []
        for r in group_crit:
            t = _enum_name(r.ad_group_criterion, "type_")
            if t not in AD_GROUP_CRITERIA:
                not_copied.append(f"ad group criterion {t}")
                continue
            gc.append((AD_GROUP_CRITERIA[t], r.ad_group_criterion.negative, _leaf(r.ad_group_criterion, AD_GROUP_CRITERIA[t])))  # fmt: skip
        controls = None
        if group and group[0].ad_group.HasField("demand_gen_ad_group_settings"):
            controls = group[0].ad_group.demand_gen_ad_group_settings.channel_controls
        tpl = ArmTemplate(
            bidding=bidding,
            portfolio=camp.bidding_strategy,
            eu_political=camp.contains_eu_political_advertising,
            campaign_criteria=tuple(cc),
            ad_group_criteria=tuple(gc),
            channel_controls=controls,
            not_copied=tuple(sorted(set(not_copied))),
        )
        self._templates[cache_key] = tpl
        return tpl

    def _download(self, url: str, campaign: str) -> bytes:
        """Fetch an image with size, type and pixel limits."""
        import io

        from PIL import Image

        from policies.errors import TransientError

        o = self.options
        if not url.startswith(("https://", "http://")):
            raise PlatformError(f"image URL {url!r}: expected http(s)", campaign=campaign)
        try:
            with self.http.stream("GET", url) as r:
                if r.status_code >= 500:
                    raise TransientError(f"image download: HTTP {r.status_code}", campaign=campaign)
                if r.status_code >= 400:
                    raise PlatformError(f"image download: HTTP {r.status_code}", campaign=campaign)
                ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in IMAGE_TYPES:
                    raise PlatformError(
                        f"image download: expected one of {', '.join(sorted(IMAGE_TYPES))}, got {ctype or 'no type'!r}",
                        campaign=campaign,
                    )
                buf = bytearray()
                for chunk in r.iter_bytes():
                    buf += chunk
                    if len(buf) > o.image_max_bytes:
                        raise PlatformError(f"image download: larger than {o.image_max_bytes} bytes", campaign=campaign)
        except httpx.HTTPError as exc:
            raise TransientError(f"image download: {type(exc).__name__}", campaign=campaign) from exc
        data = bytes(buf)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    w, h = img.size
                    if w * h > o.image_max_pixels:
                        raise PlatformError(f"image download: {w}x{h} exceeds {o.image_max_pixels} pixels", campaign=campaign)  # fmt: skip
                    img.verify()
        except PlatformError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PlatformError(f"image download: not a readable image ({exc})", campaign=campaign) from exc
        return data

    # -- AdPlatform: mutations ---------------------------------------------------------
    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        c = self._campaign(mutation.campaign)
        if isinstance(mutation, LaunchTestArm):
            return self._find_arm(c, mutation)
        if isinstance(mutation, ScaleWinner):
            parent = self._parent(c, mutation.parent_ad_id, mutation.campaign)
            ads = self._group_ads(c, parent.ad_group_id, mutation)
            mine = [a for a in ads if a["name"] == mutation.key]
            parent_status = next((a["status"] for a in ads if a["ad_id"] == mutation.parent_ad_id), "REMOVED")
            if mine and mine[0]["status"] == "ENABLED" and parent_status != "ENABLED":
                return {"ad_id": mine[0]["ad_id"]}
            return None
        return None  # budget and pause updates are idempotent: resend them

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        c = self._campaign(mutation.campaign)
        if isinstance(mutation, LaunchTestArm):
            return self._launch(c, mutation)
        if isinstance(mutation, SetBudgets):
            return self._set_budgets(c, mutation)
        if isinstance(mutation, PauseAds):
            return self._pause(c, mutation)
        if isinstance(mutation, ScaleWinner):
            return self._scale(c, mutation)
        raise PlatformError(f"unsupported mutation {mutation.kind}", campaign=mutation.campaign, key=mutation.key)

    def _find_arm(self, c: GoogleCampaign, m: Mutation) -> dict[str, Any] | None:
        rows = self._search(
            c.customer_id,
            "SELECT campaign.id, campaign.campaign_budget, ad_group.id, ad_group_ad.ad.id FROM ad_group_ad "
            f"WHERE campaign.name = {gaql.string(m.key)} AND ad_group_ad.ad.name = {gaql.string(m.key)} "
            "AND ad_group_ad.status != 'REMOVED'",
            "find test arm by name",
            m.campaign,
            m.key,
        )
        if not rows:
            return None
        r = rows[0]
        return {
            "adset_id": str(r.campaign.id),
            "ad_id": gaql.ad_key(r.ad_group.id, r.ad_group_ad.ad.id),
            "budget": r.campaign.campaign_budget,
        }

    def _group_ads(self, c: GoogleCampaign, ad_group_id: str, m: Mutation) -> list[dict[str, str]]:
        rows = self._search(
            c.customer_id,
            "SELECT ad_group.id, ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.status FROM ad_group_ad "
            f"WHERE ad_group.id = {gaql.ident(ad_group_id)} AND ad_group_ad.status != 'REMOVED'",
            "read the parent's ad group",
            m.campaign,
            m.key,
        )
        return [
            {
                "ad_id": gaql.ad_key(r.ad_group.id, r.ad_group_ad.ad.id),
                "name": r.ad_group_ad.ad.name,
                "status": _enum_name(r.ad_group_ad, "status"),
            }
            for r in rows
        ]

    def _op(self) -> Any:
        return self.client.get_type("MutateOperation")

    def _asset_op(self, customer: str, temp: str, image: bytes, name: str) -> Any:
        op = self._op()
        asset = op.asset_operation.create
        asset.resource_name = temp
        asset.name = name
        asset.type_ = self.client.enums.AssetTypeEnum.IMAGE  # proto-plus names the field type_
        asset.image_asset.data = image
        return op

    def _ad_op(self, parent: ParentAd, ad_group: str, name: str, images: list[tuple[str, str]], headline: str) -> Any:
        """A Demand Gen image ad: the new images in their slots (field, asset), the parent's copy, logos and URLs."""
        op = self._op()
        aga = op.ad_group_ad_operation.create
        aga.ad_group = ad_group
        aga.status = self.client.enums.AdGroupAdStatusEnum.ENABLED
        ad = aga.ad
        ad.name = name
        ad.final_urls.extend(parent.final_urls)
        dg = ad.demand_gen_multi_asset_ad
        for slot_field, asset in images:
            getattr(dg, slot_field).add(asset=asset)
        for logo in parent.logos:
            dg.logo_images.add(asset=logo)
        headlines = list(dict.fromkeys([h for h in (headline, *parent.headlines) if h]))[:5]
        for h in headlines:
            dg.headlines.add(text=h)
        for d in parent.descriptions[:5]:
            dg.descriptions.add(text=d)
        if parent.business_name:
            dg.business_name = parent.business_name
        if parent.call_to_action:
            dg.call_to_action_text = parent.call_to_action
        return op

    def _image_ops(self, customer: str, fitted: list[Fitted], name: str) -> tuple[list[Any], list[tuple[str, str]]]:
        """Asset operations (temporary ids -1, -11, ...) and the (slot field, asset) pairs an ad takes."""
        ops, slots = [], []
        for i, f in enumerate(fitted):
            temp = gaql.resource(customer, "assets", -1 - 10 * i)
            ops.append(self._asset_op(customer, temp, f.data, name if i == 0 else f"{name} ({f.slot.field_type})"))
            slots.append((f.slot.field, temp))
        return ops, slots

    def _launch(self, c: GoogleCampaign, m: LaunchTestArm) -> dict[str, Any]:
        # 1. adopt an arm made by an earlier attempt (the launch is atomic: its ad means all of it exists)
        found = None if m.key in self._fresh else self._find_arm(c, m)
        if found:
            return found
        acct = self._money(c)
        parent = self._parent(c, m.parent_ad_id, m.campaign)
        tpl = self._template(c, parent, m)
        fitted = ad_images(m.image, campaign=m.campaign, key=m.key)
        # 2. one atomic request: image asset(s), budget, campaign (+ criteria), ad group (+ criteria), ad
        cust = c.customer_id
        t_budget = gaql.resource(cust, "campaignBudgets", -2)
        t_campaign, t_group = gaql.resource(cust, "campaigns", -3), gaql.resource(cust, "adGroups", -4)
        enums = self.client.enums
        ops, images = self._image_ops(cust, fitted, m.key)
        op = self._op()
        budget = op.campaign_budget_operation.create
        budget.resource_name = t_budget
        budget.name = m.key
        budget.amount_micros = gaql.minor_to_micros(self._min_minor(c, acct), acct.exponent)
        budget.delivery_method = enums.BudgetDeliveryMethodEnum.STANDARD
        budget.period = enums.BudgetPeriodEnum.DAILY
        budget.explicitly_shared = False  # Demand Gen campaigns take no shared budget
        ops.append(op)
        op = self._op()
        camp = op.campaign_operation.create
        camp.resource_name = t_campaign
        camp.name = m.key
        camp.status = enums.CampaignStatusEnum.PAUSED
        camp.advertising_channel_type = enums.AdvertisingChannelTypeEnum.DEMAND_GEN
        camp.campaign_budget = t_budget
        camp.contains_eu_political_advertising = tpl.eu_political
        if tpl.portfolio:
            camp.bidding_strategy = tpl.portfolio
        elif tpl.bidding is not None:
            oneof, leaf, value = tpl.bidding
            strategy = getattr(camp, oneof)
            strategy.SetInParent()
            if value:
                setattr(strategy, leaf, value)
        ops.append(op)
        for path, negative, value in tpl.campaign_criteria:
            op = self._op()
            crit = op.campaign_criterion_operation.create
            crit.campaign = t_campaign
            crit.negative = negative
            _set_leaf(crit, path, value)
            ops.append(op)
        op = self._op()
        group = op.ad_group_operation.create
        group.resource_name = t_group
        group.name = m.key
        group.campaign = t_campaign
        group.status = enums.AdGroupStatusEnum.ENABLED
        if tpl.channel_controls is not None:
            group.demand_gen_ad_group_settings.channel_controls.CopyFrom(tpl.channel_controls)
        ops.append(op)
        for path, negative, value in tpl.ad_group_criteria:
            op = self._op()
            crit = op.ad_group_criterion_operation.create
            crit.ad_group = t_group
            crit.negative = negative
            _set_leaf(crit, path, value)
            ops.append(op)
        ops.append(self._ad_op(parent, t_group, m.key, images, m.headline))
        try:
            response, _ = self._mutate(cust, ops, "launch test arm", m)
        except PlatformError as err:
            if err.context.get("error") in ("campaign_error.DUPLICATE_CAMPAIGN_NAME", "campaign_budget_error.DUPLICATE_NAME"):  # fmt: skip
                # An earlier attempt went through but its answer was lost: adopt it.
                found = self._find_arm(c, m)
                if found:
                    return found
            minimum = int(str(err.context.get("minimum_budget_micros") or 0))
            if minimum <= budget.amount_micros:
                raise
            # Google's per-day minimum is above ours: learn it and send the same request with it.
            self._min_budget_micros[cust] = max(self._min_budget_micros.get(cust, 0), minimum)
            budget.amount_micros = gaql.minor_to_micros(self._min_minor(c, acct), acct.exponent)
            response, _ = self._mutate(cust, ops, "launch test arm", m)
        results = response.mutate_operation_responses
        campaign_rn = next(r.campaign_result.resource_name for r in results if r.HasField("campaign_result"))
        ad_rn = next(r.ad_group_ad_result.resource_name for r in results if r.HasField("ad_group_ad_result"))
        budget_rn = next(r.campaign_budget_result.resource_name for r in results if r.HasField("campaign_budget_result"))  # fmt: skip
        out: dict[str, Any] = {
            "adset_id": gaql.last_id(campaign_rn),
            "ad_id": gaql.last_id(ad_rn),
            "budget": budget_rn,
            "images": [{"slot": f.slot.field_type, "size": [f.width, f.height]} for f in fitted],
        }
        if tpl.not_copied:
            out["not_copied"] = list(tpl.not_copied)
        return out

    def _min_minor(self, c: GoogleCampaign, acct: AccountInfo) -> int:
        learned = self._min_budget_micros.get(c.customer_id, 0)
        floor = self.options.min_daily_budget_minor * 10**acct.exponent // 100  # the option: hundredths of a unit
        return max(floor, gaql.micros_to_minor(learned, acct.exponent) if learned else 0)

    def _set_budgets(self, c: GoogleCampaign, m: SetBudgets) -> dict[str, Any]:
        acct = self._money(c)
        try:
            wanted = [(str(gaql.ident(cid, "test campaign id")), int(b)) for cid, b in m.budgets]
        except ValueError as exc:
            raise PlatformError(str(exc), campaign=m.campaign, key=m.key) from None
        if not wanted:
            return {"budgets": {}, "below_minimum": [], "min_daily_budget": self._min_minor(c, acct)}
        # 1. every id must be a test campaign of this loop campaign: never touch anything else's budget
        rows = self._search(
            c.customer_id,
            "SELECT campaign.id, campaign.name, campaign.campaign_budget FROM campaign "
            f"WHERE campaign.id IN {gaql.ids(cid for cid, _ in wanted)}",
            "read test campaigns",
            m.campaign,
            m.key,
        )
        found = {str(r.campaign.id): r.campaign for r in rows}
        prefix = self._test_prefix(c.id)
        strangers = [cid for cid, _ in wanted if cid not in found or not found[cid].name.startswith(prefix)]
        if strangers:
            raise PlatformError(
                f"campaign(s) {', '.join(strangers)} are not test arms of {c.id!r}: no budget changed",
                campaign=m.campaign, key=m.key,
            )  # fmt: skip
        minimum = self._min_minor(c, acct)
        applied: dict[str, int] = {}
        below: list[str] = []
        ops: list[Any] = []
        arm_of_op: list[str] = []
        end = f"{m.end_day.isoformat()} 23:59:59" if m.end_day is not None else None
        for cid, budget in wanted:
            if 0 < budget < minimum:
                below.append(cid)  # Google would refuse it: the arm sits this window out
                budget = 0
            applied[cid] = budget
            if budget > 0:
                op = self._op()
                upd = op.campaign_budget_operation.update
                upd.resource_name = found[cid].campaign_budget
                upd.amount_micros = gaql.minor_to_micros(budget, acct.exponent)
                op.campaign_budget_operation.update_mask.paths.append("amount_micros")
                ops.append(op)
                arm_of_op.append(cid)
            ops.append(self._campaign_status_op(c.customer_id, cid, "ENABLED" if budget > 0 else "PAUSED", end if budget > 0 else None))  # fmt: skip
            arm_of_op.append(cid)
        # 2. one request; an arm's failure does not hold the others back
        _, failed = self._mutate(c.customer_id, ops, "set budgets", m, partial_failure=True)
        refused_min = {arm_of_op[d.operation] for d in failed if d.minimum_budget_micros is not None and d.operation is not None}  # fmt: skip
        for d in failed:
            if d.minimum_budget_micros:
                self._min_budget_micros[c.customer_id] = max(self._min_budget_micros.get(c.customer_id, 0), d.minimum_budget_micros)  # fmt: skip
        if refused_min:
            # 3. arms under Google's own per-day minimum: paused for the window, like those under ours
            pause = [self._campaign_status_op(c.customer_id, cid, "PAUSED", None) for cid in sorted(refused_min)]
            _, still = self._mutate(c.customer_id, pause, "pause arms under the minimum budget", m, partial_failure=True)  # fmt: skip
            self._raise_failures("pause arms under the minimum budget", still, m)
            for cid in refused_min:
                applied[cid] = 0
                below.append(cid)
        self._raise_failures("set budgets", [d for d in failed if d.minimum_budget_micros is None], m)
        return {"budgets": applied, "below_minimum": sorted(set(below)), "min_daily_budget": self._min_minor(c, acct)}

    def _campaign_status_op(self, customer: str, campaign_id: str, status: str, end: str | None) -> Any:
        op = self._op()
        upd = op.campaign_operation.update
        upd.resource_name = gaql.resource(customer, "campaigns", gaql.ident(campaign_id))
        upd.status = getattr(self.client.enums.CampaignStatusEnum, status)
        op.campaign_operation.update_mask.paths.append("status")
        if end is not None:
            upd.end_date_time = end
            op.campaign_operation.update_mask.paths.append("end_date_time")
        return op

    def _ad_status_op(self, customer: str, ad_id: str, status: str) -> Any:
        op = self._op()
        upd = op.ad_group_ad_operation.update
        upd.resource_name = gaql.ad_group_ad_name(customer, ad_id)
        upd.status = getattr(self.client.enums.AdGroupAdStatusEnum, status)
        op.ad_group_ad_operation.update_mask.paths.append("status")
        return op

    def _pause(self, c: GoogleCampaign, m: PauseAds) -> dict[str, Any]:
        try:
            ops = [self._ad_status_op(c.customer_id, a, "PAUSED") for a in m.ad_ids]
            ops += [self._campaign_status_op(c.customer_id, s, "PAUSED", None) for s in m.adset_ids]
        except ValueError as exc:
            raise PlatformError(str(exc), campaign=m.campaign, key=m.key) from None
        if ops:
            _, failed = self._mutate(c.customer_id, ops, "pause ads", m, partial_failure=True)
            self._raise_failures("pause ads", failed, m)
        return {}

    def _scale(self, c: GoogleCampaign, m: ScaleWinner) -> dict[str, Any]:
        parent = self._parent(c, m.parent_ad_id, m.campaign)
        ads = [] if m.key in self._fresh else self._group_ads(c, parent.ad_group_id, m)
        mine = next((a for a in ads if a["name"] == m.key), None)
        pause_parent = self._ad_status_op(c.customer_id, m.parent_ad_id, "PAUSED")
        if mine is not None:
            # 1. made by an earlier attempt: only make sure it runs and the parent does not
            self._mutate(c.customer_id, [self._ad_status_op(c.customer_id, mine["ad_id"], "ENABLED"), pause_parent], "scale winner", m)  # fmt: skip
            return {"ad_id": mine["ad_id"]}
        # 2. one atomic request: the pro render, its ad in the parent's ad group, the parent paused
        fitted = ad_images(m.image, campaign=m.campaign, key=m.key)
        ad_group = gaql.resource(c.customer_id, "adGroups", gaql.ident(parent.ad_group_id))
        ops, images = self._image_ops(c.customer_id, fitted, m.key)
        ops += [self._ad_op(parent, ad_group, m.key, images, m.headline), pause_parent]
        response, _ = self._mutate(c.customer_id, ops, "scale winner", m)
        ad_rn = next(r.ad_group_ad_result.resource_name for r in response.mutate_operation_responses if r.HasField("ad_group_ad_result"))  # fmt: skip
        return {"ad_id": gaql.last_id(ad_rn), "images": [f.slot.field_type for f in fitted]}


def _enum_name(message: Any, field_name: str) -> str:
    """The name of an enum field's value (``ENABLED``), from the message's descriptor."""
    fd = message.DESCRIPTOR.fields_by_name[field_name]
    value = fd.enum_type.values_by_number.get(getattr(message, field_name))
    return value.name if value is not None else str(getattr(message, field_name))


def _attr(message: Any, name: str) -> str:
    """The attribute of an API field name (proto-plus renames keywords: ``type`` is ``type_``)."""
    return name if name in message.DESCRIPTOR.fields_by_name else name + "_"


def _leaf(message: Any, path: str) -> Any:
    for part in path.split("."):
        message = getattr(message, _attr(message, part))
    return message


def _set_leaf(message: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        message = getattr(message, _attr(message, part))
    setattr(message, _attr(message, leaf), value)


__all__ = ["AccountInfo", "GoogleAdsPlatform", "GoogleCampaign", "GoogleOptions", "SLOT_BY_FIELD"]
