"""``MetaAdPlatform``: the ``AdPlatform`` seam over the official ``facebook-business`` SDK.

How the loop's mutations map onto Meta (see ``connectors/ads/base.py``):

``LaunchTestArm``
    One arm = one ad set in the campaign's *test* campaign (an ABO campaign:
    under campaign budget optimisation ad sets cannot carry budgets), so that
    the bandit's split is each ad set's daily budget and Meta cannot re-split
    it.  The ad set copies the parent ad set's targeting, optimisation goal,
    billing event, bid strategy and promoted object; the creative copies the
    parent creative's page, link, message and call to action with the
    variant's image.  Ad set, creative and ad are all created ``PAUSED`` and
    named with the mutation key.
``SetBudgets``
    A positive budget sets the ad set's ``daily_budget``, ``end_time`` (the
    day after ``end_day`` at midnight, account time: a dead loop cannot spend
    past what was reserved) and ``ACTIVE``, and then activates the arm's
    paused ad; 0 -- or a share under the account's minimum daily budget --
    pauses the arm's ad and then its ad set.
``PauseAds``
    ``status=PAUSED`` on the ads, then on their ad sets.
``ScaleWinner``
    Upload the pro render, create its creative and a ``PAUSED`` ad in the
    parent's ad set, then one batch: activate it, pause the parent.

Order and batches.  Node updates go out in rounds (:meth:`_run_ops`): an
ad's activation is sent only after its ad set's update went through (a
failed ad-set update leaves its ad paused), an ad set's pause only after its
ad's pause was sent, so an ad is never left active in a paused ad set.  Each
round is one Graph batch of at most ``batch_size`` (<= 50) requests, holding
at most one ad set of any campaign (Meta's batch documentation: one batch
cannot contain multiple ad sets under the same campaign); a round of a single
request is sent as a plain call.  ``one_adset_per_campaign=False`` lifts the
grouping rule (a switch for what a sandbox account shows).

Idempotency.  Every object is named with the mutation key.  The mutation
record hands over the ids made so far (:meth:`remember`, :meth:`objects`), so
the common case -- a first attempt, or a retry after a clean failure --
needs no lookup at all; otherwise an object is looked up by its exact name
(with Graph's ``filtering`` when ``name_filter`` is on, names compared here
either way, at most ``lookup_max_pages`` pages) before it is created.

Ambiguous failures.  A create that times out, loses its connection after
sending, or gets a 5xx may still have been carried out, and Graph commits
writes late: the object can appear seconds after the answer.  Such a create
is *settled* before anything is sent again: looked up by name with a short
backoff for at most ``settle_timeout`` seconds; if it is still not visible the
error is raised as transient and the next attempt looks once more before
creating.  Should two objects with the key name exist afterwards (a late
commit after all), the one in use is kept, the other archived (ads and ad
sets) or deleted (creatives, which cannot be archived), with a warning, a
``meta_duplicates_archived`` count and an ``archived`` entry on the
mutation's objects and result.  Late copies are looked for at the end of the
mutation and at every later ``SetBudgets``/``PauseAds`` of the campaign in
the same process (for ``SETTLE_HORIZON``); every ``SetBudgets`` also archives
a second ad of one key in an arm's ad set, whatever process made it.  A late
ad set or creative that shows up only after its process has ended stays
(paused and without an ad, or unused): the limit of keeping that watch in
memory.

Safety: the SDK objects all get ``api=`` (no ``set_default_api``), the
session is built here (no ``FacebookAdsApi.init``, so no crash reporter), and
the token only travels in the query string that ``requests`` builds.

Counting: every HTTP request goes through :class:`MeteredAdapter`, which
counts it (``meta_api_calls``) and reads the usage headers; batch items
(``meta_batch_items``), throttling errors (``meta_throttled``), usage-gate
waits (``meta_usage_waits``) and archived duplicates are counted too.
Counts accumulate in memory (``count()`` reads them); the tick stores them
through its own session (:meth:`drain_counters`), so no second connection
ever writes to the database; :meth:`close` stores what is left when a
``counter_engine`` is given (calls made outside a tick).
"""

from __future__ import annotations

import base64
import io
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import httpx
from facebook_business.adobjects.ad import Ad
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adcreative import AdCreative
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi, FacebookSession
from facebook_business.exceptions import FacebookRequestError
from PIL import Image

from connectors.ads import payloads
from connectors.ads.base import (
    AdPlatform,
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
from connectors.meta import insights as ins
from connectors.meta.errors import boundary, translate_request_error
from connectors.meta.settings import MetaSettings
from connectors.meta.usage import GateSettings, MeteredAdapter, UsageGate
from policies.errors import (
    AuthExpired,
    ConfigError,
    ConnectorError,
    NotFound,
    PlatformError,
    RateLimited,
    TransientError,
)

if TYPE_CHECKING:
    from connectors.ads.registry import PlatformContext

log = logging.getLogger("creative_loop.meta")

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DEFAULT_CTA = "LEARN_MORE"
GONE = frozenset({"ARCHIVED", "DELETED"})  # statuses of objects that no longer count
ROLES = ("adset", "creative", "ad")  # what LaunchTestArm makes, in order (ScaleWinner: creative, ad)
# An ambiguous create not seen within this long never went through (Graph commits within seconds).
SETTLE_HORIZON = 900.0
MAX_KEYS = 5000  # mutation keys remembered in memory (the mutation records hold the rest)


@dataclass(frozen=True)
class MetaCampaign:
    """Where one of the loop's campaigns lives on Meta."""

    id: str  # the loop's campaign id
    account_id: str  # act_<n>
    campaign_id: str  # the campaign whose ads are watched and scaled
    test_campaign_id: str  # an ABO campaign that holds the test ad sets
    currency: str = ""  # the currency the config's caps are in; checked against the account's ("" = not checked)

    def __post_init__(self) -> None:
        if not self.account_id.startswith("act_"):
            raise ValueError(f"account_id: expected 'act_<number>', got {self.account_id!r}")
        if not self.campaign_id or not self.test_campaign_id:
            raise ValueError(f"campaign {self.id!r}: campaign_id and test_campaign_id are required")


@dataclass(frozen=True)
class MetaOptions:
    page_id: str = ""  # used when the parent creative names no page
    conversion_action: str = "offsite_conversion.fb_pixel_lead"
    async_after_days: int = 14  # ranges longer than this use an async report run
    page_size: int = 500
    batch_size: int = 50
    poll_interval: float = 2.0
    poll_timeout: float = 600.0
    min_daily_budget_minor: int = 100  # hundredths of a currency unit; the account's own minimum wins when larger
    image_max_bytes: int = 30 * 1024 * 1024
    image_max_pixels: int = 40_000_000
    image_timeout: float = 30.0
    # Unverified points of the Graph API, as switches (see the README's Meta section):
    one_adset_per_campaign: bool = True  # at most one ad set of a campaign per batch
    name_filter: bool = True  # send filtering by name on name lookups (names are compared here anyway)
    lookup_max_pages: int = 20  # pages of 100 a name lookup reads at most (when Graph ignores the filter)
    settle_timeout: float = 30.0  # seconds to look for an object after an ambiguous create
    settle_backoff: float = 0.5  # the first wait between those lookups (doubles, at most 8 s)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 50:
            raise ValueError(f"batch_size: expected 1..50 (Graph refuses larger batches), got {self.batch_size}")
        if self.page_size < 1 or self.async_after_days < 1 or self.lookup_max_pages < 1:
            raise ValueError("page_size, async_after_days, lookup_max_pages: expected >= 1")
        if self.settle_timeout < 0 or self.settle_backoff <= 0:
            raise ValueError("settle_timeout: expected >= 0; settle_backoff: expected > 0")


@dataclass(frozen=True)
class AccountInfo:
    """``exponent``: decimals of the loop's money (the currency's ISO 4217 minor unit);
    ``api_exponent``: decimals of Graph's budget amounts (0 for its "offset 1" currencies).
    ``min_daily_budget_minor`` is in the loop's minor units."""

    currency: str
    exponent: int
    min_daily_budget_minor: int
    utc_offset_hours: float
    api_exponent: int = 2

    @property
    def _minor_per_api_unit(self) -> int:
        return 10 ** (self.exponent - self.api_exponent)

    def to_api(self, minor: int) -> int:
        """A budget in the loop's minor units as Graph takes it, rounded down (never above what was reserved)."""
        return int(minor) // self._minor_per_api_unit

    def sent(self, minor: int) -> int:
        """The budget Graph is given for ``minor``, back in the loop's minor units (HUF 1,500.99 -> 1,500.00)."""
        return self.to_api(minor) * self._minor_per_api_unit


@dataclass(frozen=True)
class ParentInfo:
    """What a test arm or a scaled ad copies from the fatigued ad."""

    ad_id: str
    adset_id: str
    campaign_id: str
    adset: dict[str, Any]  # targeting, optimization_goal, billing_event, bid_strategy, ...
    page_id: str
    link: str
    message: str
    headline: str
    call_to_action: str
    image_hash: str
    image_url: str


@dataclass
class _Key:
    """What this process knows about the objects of one mutation key."""

    campaign: str = ""  # the loop's campaign
    ids: dict[str, str] = field(default_factory=dict)  # role -> id
    absent: set[str] = field(default_factory=set)  # roles never sent (or just looked up): nothing to look up
    unsettled: set[str] = field(default_factory=set)  # roles whose ambiguous create was never seen
    unsettled_since: float = 0.0
    finders: dict[str, Callable[[], list[dict[str, Any]]]] = field(default_factory=dict)  # role -> lookup by name
    archived: list[dict[str, str]] = field(default_factory=list)

    def export(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.ids)
        if self.archived:
            out["archived"] = list(self.archived)
        if self.unsettled:
            out["unsettled"] = sorted(self.unsettled)
        return out


@dataclass
class _Op:
    """One node update of a mutation, and the updates it must follow."""

    cls: type
    node_id: str
    params: dict[str, Any]
    campaign_id: str = ""  # for an ad set: its campaign (the batch grouping rule)
    requires: tuple[int, ...] = ()  # indexes of ops that must have succeeded (else this one is skipped)
    after: tuple[int, ...] = ()  # indexes of ops that must have been sent first, whatever their outcome
    outcome: str = ""  # "" (not sent) | ok | failed | skipped


def _severity(err: ConnectorError) -> int:
    order = (AuthExpired, PlatformError, RateLimited, TransientError)
    return next((i for i, cls in enumerate(order) if isinstance(err, cls)), len(order))


def _age(obj: Mapping[str, Any]) -> tuple[str, int]:
    """Sort key, oldest first: creation time when given, then the id (Graph ids grow over time)."""
    oid = str(obj.get("id", ""))
    return (str(obj.get("created_time") or ""), int(oid) if oid.isdigit() else 0)


class MetaAdPlatform(AdPlatform):
    """The ``AdPlatform`` of one or more Meta ad accounts (one ``MetaCampaign`` per loop campaign)."""

    name = "meta"
    counters: ApiCounters

    def __init__(
        self,
        session: FacebookSession,
        campaigns: Mapping[str, MetaCampaign],
        options: MetaOptions = MetaOptions(),
        *,
        api_version: str = "v26.0",
        gate: UsageGate | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        counter_engine: Any = None,
    ) -> None:
        self.campaigns = dict(campaigns)
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.counters = ApiCounters("meta", counter_engine)  # counter_engine: only for close()
        self.gate = gate or UsageGate(clock=clock, sleep=sleep)
        self.gate.on_wait = self._on_gate_wait
        self.adapter = MeteredAdapter(self.gate, on_call=lambda method: self._count("meta_api_calls", method=method))
        session.requests.mount("http://", self.adapter)
        session.requests.mount("https://", self.adapter)
        self.session = session
        self.api = FacebookAdsApi(session, api_version=api_version)
        self._http = http
        self._accounts: dict[str, AccountInfo] = {}
        self._parents: dict[str, ParentInfo] = {}
        self._keys: dict[str, _Key] = {}

    @property
    def http(self) -> httpx.Client:
        """The client for image downloads (made on first use: building its TLS context is not free)."""
        if self._http is None:
            self._http = httpx.Client(timeout=self.options.image_timeout, follow_redirects=True, trust_env=False)
        return self._http

    # -- construction ---------------------------------------------------------
    @classmethod
    def connect(
        cls,
        *,
        access_token: str,
        campaigns: Mapping[str, MetaCampaign],
        app_secret: str | None = None,
        app_id: str | None = None,
        graph_url: str = FacebookSession.GRAPH,
        api_version: str = "v26.0",
        timeout: float = 30.0,
        trust_env: bool = True,
        **kwargs: Any,
    ) -> MetaAdPlatform:
        """Build the SDK session ourselves: ``init()`` would install a process-global API and a crash reporter."""
        session = FacebookSession(
            app_id=app_id, app_secret=app_secret or None, access_token=access_token, timeout=timeout
        )
        session.GRAPH = graph_url.rstrip("/")  # the instance attribute shadows the class's
        session.requests.trust_env = trust_env
        return cls(session, campaigns, api_version=api_version, **kwargs)

    @classmethod
    def from_settings(
        cls,
        settings: MetaSettings,
        campaigns: Mapping[str, MetaCampaign],
        *,
        access_token: str,
        app_secret: str | None = None,
        counter_engine: Any = None,
        **kwargs: Any,
    ) -> MetaAdPlatform:
        """The platform the ``[meta]`` settings describe, for ``campaigns``.

        ``counter_engine`` (the loop's own engine, never a second one) only
        stores the counts still pending at :meth:`close`; without it they stay
        in memory (``creative-loop doctor`` stores nothing).  ``kwargs`` go to
        :meth:`connect` (``trust_env``, ``clock``, ``sleep``).
        """
        m = settings
        return cls.connect(
            access_token=access_token,
            app_secret=app_secret or None,
            app_id=m.app_id or None,
            graph_url=m.graph_url,
            api_version=m.api_version,
            timeout=m.request_timeout,
            campaigns=campaigns,
            options=MetaOptions(
                page_id=m.page_id,
                conversion_action=m.conversion_action,
                async_after_days=m.async_insights_after_days,
                batch_size=m.batch_size,
                min_daily_budget_minor=round(m.min_daily_budget * 100),
                one_adset_per_campaign=m.batch_one_adset_per_campaign,
                name_filter=m.name_filter,
                lookup_max_pages=m.name_lookup_max_pages,
                settle_timeout=m.settle_timeout,
            ),
            gate=UsageGate(GateSettings(slow_at=m.usage_slow_at, pause_at=m.usage_pause_at)),
            counter_engine=counter_engine,
            **kwargs,
        )

    @classmethod
    def from_context(cls, ctx: PlatformContext) -> MetaAdPlatform:
        """The ``meta`` registry line: ``[meta]``, the campaigns on Meta, secrets from the environment."""
        token = ctx.secret("access_token_env")
        campaigns: dict[str, MetaCampaign] = {}
        for c in ctx.campaigns:
            for key in ("account_id", "campaign_id", "test_campaign_id"):
                if not getattr(c, key):
                    raise ConfigError(ctx.source, f"{c.key}.{key}", "required when loop.platform = 'meta'")
            try:
                campaigns[c.id] = MetaCampaign(c.id, c.account_id, c.campaign_id, c.test_campaign_id, c.currency)
            except ValueError as exc:
                raise ConfigError(ctx.source, c.key, str(exc)) from None
        return cls.from_settings(
            ctx.settings, campaigns, access_token=token,
            app_secret=ctx.secret("app_secret_env", required=False) or None, counter_engine=ctx.engine,
        )  # fmt: skip

    def close(self) -> None:
        """Close the HTTP connections (Graph and image downloads); store pending counts if given an engine."""
        self.counters.store_leftovers()
        self.session.requests.close()
        if self._http is not None:
            self._http.close()

    def _count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters.add(name, amount, **labels)

    def _on_gate_wait(self, how: str, seconds: float) -> None:
        self._count("meta_usage_waits", how=how)
        last = self.gate.last
        usage = f"usage {last.pct:.0f}% ({last.source})" if last else "throttled"
        if how == "refused":
            log.warning("Meta usage gate: %s; not sending for %.0f s", usage, seconds)
        else:
            log.info("Meta usage gate: %s; waiting %.1f s before the next call", usage, seconds)

    def _on_error(self, err: ConnectorError) -> None:
        if isinstance(err, RateLimited) and not err.context.get("gate"):
            self._count("meta_throttled", code=str(err.context.get("code", "")))
            self.gate.throttled(err.retry_after)
            if err.retry_after is None:  # no estimate from Meta: the gate's pause is the wait
                err.retry_after = self.gate.delay() or None

    def _boundary(self, what: str, campaign: str | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
        self.adapter.forget()
        return boundary(
            what, campaign=campaign, key=key, on_error=self._on_error, last_response=self.adapter.last_response
        )

    # -- what the mutation records know ---------------------------------------------
    def remember(self, key: str, objects: dict[str, Any], fresh: bool) -> None:
        st = self._key(key)
        for role in ROLES:
            if objects.get(role) and role not in st.ids:
                st.ids[role] = str(objects[role])
        if fresh and not st.ids:
            st.absent = set(ROLES)

    def objects(self, key: str) -> dict[str, Any]:
        st = self._keys.get(key)
        return st.export() if st else {}

    def _key(self, key: str) -> _Key:
        st = self._keys.get(key)
        if st is None:
            if len(self._keys) >= MAX_KEYS:  # forget the oldest settled keys (their records remember them)
                for old in [k for k, v in self._keys.items() if not v.unsettled][: MAX_KEYS // 10]:
                    del self._keys[old]
            st = self._keys[key] = _Key()
        return st

    def _finder(self, role: str, parent_id: str, key: str, campaign: str) -> Callable[[], list[dict[str, Any]]]:
        """A lookup by name of one object of ``key`` (it holds ids only: it may outlive the mutation)."""
        if role == "creative":
            account = AdAccount(parent_id, api=self.api)
            return lambda: self._named(account.get_ad_creatives, key, ["status"], "find creative by name", campaign)
        camp = Campaign(parent_id, api=self.api)
        if role == "adset":
            fields = ["status", "created_time"]
            return lambda: self._named(camp.get_ad_sets, key, fields, "find ad set by name", campaign)
        fields = ["adset_id", "status", "creative", "created_time"]
        return lambda: self._named(camp.get_ads, key, fields, "find ad by name", campaign)

    # -- lookups ----------------------------------------------------------------
    def _campaign(self, campaign: str) -> MetaCampaign:
        try:
            return self.campaigns[campaign]
        except KeyError:
            raise NotFound(f"campaign {campaign!r} has no Meta ids configured", campaign=campaign) from None

    def account(self, account_id: str) -> AccountInfo:
        """Currency, minimum daily budget and time zone of an account (read once)."""
        info = self._accounts.get(account_id)
        if info is None:
            with self._boundary(f"read account {account_id}"):
                acct = AdAccount(account_id, api=self.api).api_get(
                    fields=["currency", "min_daily_budget", "timezone_offset_hours_utc"]
                )
                data = acct.export_all_data()
            currency = str(data.get("currency") or "USD")
            digits, api_digits = payloads.currency_exponent(currency), ins.currency_exponent(currency)
            # The option is in hundredths of a currency unit (the settings' min_daily_budget x 100).
            floor = self.options.min_daily_budget_minor * 10**digits // 100
            info = AccountInfo(
                currency=currency,
                exponent=digits,
                min_daily_budget_minor=max(floor, int(data.get("min_daily_budget") or 0) * 10 ** (digits - api_digits)),
                utc_offset_hours=float(data.get("timezone_offset_hours_utc") or 0.0),
                api_exponent=api_digits,
            )
            self._accounts[account_id] = info
        return info

    def _money(self, c: MetaCampaign) -> AccountInfo:
        """The campaign's account, refused when it bills in another currency than the campaign's caps are in."""
        acct = self.account(c.account_id)
        check_billing(f"Meta ad account {c.account_id}", acct.currency, c.id, c.currency)
        return acct

    def _named(
        self, edge: Callable[..., Any], name: str, fields: list[str], what: str, campaign: str | None
    ) -> list[dict[str, Any]]:
        """Every live object of ``edge`` named exactly ``name``, oldest first (the idempotency lookup).

        Graph may or may not honour ``filtering`` by name on an edge (not
        verified), so names are compared here and at most
        ``lookup_max_pages`` pages are read.  Archived and deleted objects
        do not count.
        """
        limit = 100
        params: dict[str, Any] = {"limit": limit}
        if self.options.name_filter:
            params["filtering"] = [{"field": "name", "operator": "EQUAL", "value": name}]
        found: list[dict[str, Any]] = []
        seen = 0
        cap = self.options.lookup_max_pages * limit
        with self._boundary(what, campaign, name):
            for obj in edge(fields=["id", "name", *fields], params=params):
                data = obj.export_all_data()
                seen += 1
                if data.get("name") == name and str(data.get("status", "")) not in GONE:
                    found.append(data)
                if seen >= cap:
                    log.warning(
                        "Meta %s: stopped after %d objects without reaching the end (is the name filter "
                        "ignored? see [meta].name_filter); anything beyond is not seen", what, seen,
                    )  # fmt: skip
                    break
        return sorted(found, key=_age)

    # -- reads --------------------------------------------------------------------
    def list_ads(self, campaign: str) -> list[LiveAd]:
        """The campaign's ads by *effective* status: only ``ACTIVE`` delivers.

        An ad that is itself active can still not deliver -- its ad set or
        campaign is paused, it was disapproved, it has issues, it waits for
        review -- so it is listed ``PAUSED`` with Meta's effective status as the
        reason (never tested for fatigue).  Archived and deleted ads are left out.
        """
        c = self._campaign(campaign)
        out: list[LiveAd] = []
        with self._boundary("list ads", campaign):
            cursor = Campaign(c.campaign_id, api=self.api).get_ads(
                fields=["id", "name", "status", "effective_status", "issues_info"],
                params={"limit": self.options.page_size},
            )
            rows = [obj.export_all_data() for obj in cursor]
        for row in rows:
            status = str(row.get("status") or "")
            effective = str(row.get("effective_status") or status)
            if status in GONE or effective in GONE:
                continue
            if effective == "ACTIVE":
                out.append(LiveAd(str(row["id"]), str(row.get("name", "")), "ACTIVE"))
                continue
            reason = effective or "not delivering"
            issues = [
                str(i.get("error_summary") or i.get("error_message") or "")
                for i in row.get("issues_info") or ()
                if isinstance(i, Mapping)
            ]
            if any(issues):
                reason += ": " + "; ".join(x for x in issues if x)
            out.append(LiveAd(str(row["id"]), str(row.get("name", "")), "PAUSED", reason=reason[:200]))
        return out

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        c = self._campaign(campaign)
        if until < since:
            return []
        acct = self._money(c)
        params = ins.insights_params(since, until, (c.campaign_id, c.test_campaign_id), self.options.page_size)
        account = AdAccount(c.account_id, api=self.api)
        raw = self._fetch(account, params, (until - since).days + 1, campaign)
        rows: dict[tuple[str, date], InsightRow] = {}
        for r in raw:
            row = ins.parse_row(r, acct.exponent, self.options.conversion_action)
            rows[(row.ad_id, row.day)] = row  # a row seen twice (late attribution) keeps its last numbers
        return list(rows.values())

    def _fetch(self, account: AdAccount, params: dict[str, Any], days: int, campaign: str) -> list[dict[str, Any]]:
        if days <= self.options.async_after_days:
            try:
                with self._boundary("insights", campaign):
                    return list(ins.fetch_sync(account, params))
            except TransientError as exc:
                if exc.context.get("code") != 100:  # 100/1504018: the range is too big for a sync read
                    raise
                log.info("campaign %s: sync insights timed out, retrying as an async report run", campaign)
        with self._boundary("insights report", campaign):
            return list(
                ins.fetch_async(
                    account, params, page_size=self.options.page_size, poll_interval=self.options.poll_interval,
                    poll_timeout=self.options.poll_timeout, clock=self.clock, sleep=self.sleep,
                )
            )  # fmt: skip

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        parent = self._parent(self._campaign(campaign), ad_id, campaign)
        url = parent.image_url or self._image_url(self._campaign(campaign), parent.image_hash, campaign)
        image = self._download(url, campaign)
        return SourceCreative(
            ad_id=ad_id, image=image, headline=parent.headline, message=parent.message,
            link=parent.link, call_to_action=parent.call_to_action,
        )  # fmt: skip

    def _parent(self, c: MetaCampaign, ad_id: str, campaign: str) -> ParentInfo:
        """The fatigued ad's ad set settings and creative copy (read once per process)."""
        cached = self._parents.get(ad_id)
        if cached is not None:
            return cached
        with self._boundary(f"read ad {ad_id}", campaign):
            ad = Ad(ad_id, api=self.api).api_get(fields=["id", "adset_id", "campaign_id", "creative"]).export_all_data()
        if str(ad.get("campaign_id", "")) != c.campaign_id:
            raise NotFound(f"ad {ad_id!r} is not in Meta campaign {c.campaign_id}", campaign=campaign)
        creative_id = str((ad.get("creative") or {}).get("id", ""))
        adset_fields = [
            "targeting",
            "optimization_goal",
            "billing_event",
            "bid_strategy",
            "bid_amount",
            "promoted_object",
        ]
        with self._boundary(f"read ad set and creative of {ad_id}", campaign):
            adset = AdSet(str(ad["adset_id"]), api=self.api).api_get(fields=adset_fields).export_all_data()
            creative = (
                AdCreative(creative_id, api=self.api)
                .api_get(
                    fields=[
                        "id",
                        "title",
                        "body",
                        "image_hash",
                        "image_url",
                        "object_story_spec",
                        "call_to_action_type",
                    ]
                )
                .export_all_data()
            )
        spec = creative.get("object_story_spec") or {}
        link = spec.get("link_data") or {}
        cta = (link.get("call_to_action") or {}).get("type") or creative.get("call_to_action_type") or DEFAULT_CTA
        info = ParentInfo(
            ad_id=ad_id,
            adset_id=str(ad["adset_id"]),
            campaign_id=str(ad.get("campaign_id", "")),
            adset={k: adset[k] for k in adset_fields if adset.get(k) not in (None, "", {})},
            page_id=str(spec.get("page_id") or self.options.page_id),
            link=str(link.get("link") or ""),
            message=str(link.get("message") or creative.get("body") or ""),
            headline=str(link.get("name") or creative.get("title") or ""),
            call_to_action=str(cta),
            image_hash=str(link.get("image_hash") or creative.get("image_hash") or ""),
            image_url=str(creative.get("image_url") or link.get("picture") or ""),
        )
        self._parents[ad_id] = info
        return info

    def _image_url(self, c: MetaCampaign, image_hash: str, campaign: str) -> str:
        if not image_hash:
            raise PlatformError("the ad's creative has neither an image URL nor an image hash", campaign=campaign)
        with self._boundary("read ad image", campaign):
            images = [
                i.export_all_data()
                for i in AdAccount(c.account_id, api=self.api).get_ad_images(
                    fields=["hash", "url"], params={"hashes": [image_hash]}
                )
            ]
        for img in images:
            if img.get("hash") == image_hash and img.get("url"):
                return str(img["url"])
        raise PlatformError(f"image {image_hash} not found in {c.account_id}", campaign=campaign, code=100)

    def _download(self, url: str, campaign: str) -> bytes:
        """Fetch an image with size, type and pixel limits."""
        o = self.options
        if not url.startswith(("https://", "http://")):
            raise PlatformError(f"image URL {url!r}: expected http(s)", campaign=campaign)
        try:
            with self.http.stream("GET", url) as r:
                if r.status_code >= 500:
                    raise TransientError(f"image download: HTTP {r.status_code}", campaign=campaign)
                if r.status_code >= 400:
                    raise PlatformError(f"image download: HTTP {r.status_code}", code=r.status_code, campaign=campaign)
                ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in IMAGE_TYPES:
                    raise PlatformError(
                        f"image download: expected one of {', '.join(sorted(IMAGE_TYPES))}, got {ctype or 'no type'!r}",
                        campaign=campaign,
                    )
                if int(r.headers.get("content-length") or 0) > o.image_max_bytes:
                    raise PlatformError(f"image download: larger than {o.image_max_bytes} bytes", campaign=campaign)
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
                        raise PlatformError(
                            f"image download: {w}x{h} exceeds {o.image_max_pixels} pixels", campaign=campaign
                        )
                    img.verify()
        except PlatformError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PlatformError(f"image download: not a readable image ({exc})", campaign=campaign) from exc
        return data

    # -- mutations ----------------------------------------------------------------
    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        c = self._campaign(mutation.campaign)
        st = self._key(mutation.key)
        st.campaign = mutation.campaign
        if isinstance(mutation, LaunchTestArm):
            if "ad" in st.ids and "adset" in st.ids:
                return {"adset_id": st.ids["adset"], "ad_id": st.ids["ad"]}
            ad = self._existing_ad(c.test_campaign_id, mutation)
            return {"adset_id": str(ad["adset_id"]), "ad_id": str(ad["id"])} if ad else None
        if isinstance(mutation, ScaleWinner):
            if "ad" in st.ids:
                with self._boundary("read scaled ad", mutation.campaign, mutation.key):
                    ad = Ad(st.ids["ad"], api=self.api).api_get(fields=["id", "status"]).export_all_data()
            else:
                ad = self._existing_ad(c.campaign_id, mutation)
            if ad is None or ad.get("status") != "ACTIVE":
                return None
            with self._boundary("read parent ad", mutation.campaign, mutation.key):
                parent = Ad(mutation.parent_ad_id, api=self.api).api_get(fields=["status"]).export_all_data()
            return {"ad_id": str(ad["id"])} if parent.get("status") != "ACTIVE" else None
        return None  # budget and pause updates are idempotent: resend them

    def _existing_ad(self, campaign_id: str, m: Mutation) -> dict[str, Any] | None:
        """The mutation's ad if it exists (a duplicate is archived); records what it shows."""
        st = self._key(m.key)
        found = self._finder("ad", campaign_id, m.key, m.campaign)()
        if not found:
            st.absent.add("ad")  # just looked: creating it needs no second look
            return None
        ad = self._keep("ad", found, m.key)
        if ad.get("adset_id"):
            st.ids.setdefault("adset", str(ad["adset_id"]))
        creative = str((ad.get("creative") or {}).get("id") or "")
        if creative:
            st.ids.setdefault("creative", creative)
        return ad

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        c = self._campaign(mutation.campaign)
        self._key(mutation.key).campaign = mutation.campaign
        if isinstance(mutation, LaunchTestArm):
            return self._launch(c, mutation)
        if isinstance(mutation, SetBudgets):
            return self._set_budgets(c, mutation)
        if isinstance(mutation, PauseAds):
            return self._pause(c, mutation)
        if isinstance(mutation, ScaleWinner):
            return self._scale(c, mutation)
        raise PlatformError(f"unsupported mutation {mutation.kind}", campaign=mutation.campaign, key=mutation.key)

    # -- creating objects, exactly once ---------------------------------------------
    def _ensure(
        self,
        role: str,
        m: Mutation,
        lookup: Callable[[], list[dict[str, Any]]],
        create: Callable[[], str],
        in_use: Callable[[], str | None] | None = None,
    ) -> str:
        """The id of the mutation's object ``role``: known, found by name, or created (and settled)."""
        st = self._key(m.key)
        st.finders[role] = lookup
        # 1. known from this process or the mutation record: no call at all
        if role in st.ids:
            return st.ids[role]
        # 2. it may exist (an earlier attempt): look it up by name
        if role not in st.absent:
            found = lookup()
            if found:
                st.unsettled.discard(role)
                return str(self._keep(role, found, m.key, in_use)["id"])
        # 3. create it; an ambiguous failure is settled before anything is sent again
        st.absent.discard(role)
        try:
            new_id = create()
        except ConnectorError as err:
            if not err.context.get("ambiguous"):
                st.absent.add(role)  # a definite refusal: nothing was made
                raise
            found = self._settle(role, m, lookup, err)
            return str(self._keep(role, found, m.key, in_use)["id"])
        st.ids[role] = new_id
        return new_id

    def _settle(
        self, role: str, m: Mutation, lookup: Callable[[], list[dict[str, Any]]], err: ConnectorError
    ) -> list[dict[str, Any]]:
        """Look for an object whose create failed ambiguously, with backoff, for ``settle_timeout`` seconds."""
        from connectors.retry import describe

        o = self.options
        deadline = self.clock() + o.settle_timeout
        wait, attempt = o.settle_backoff, 1
        while True:
            try:
                found = lookup()
            except ConnectorError as exc:
                if not exc.temporary:
                    raise
                found = []
            if found:
                log.info("Meta create %s %s: the answer was lost but the create went through; adopting it", role, m.key)
                self._key(m.key).unsettled.discard(role)
                return found
            if self.clock() + wait > deadline:
                break
            attempt += 1
            log.warning(
                "Meta create %s %s: %s; not visible yet, looking it up by name again in %.1f s (lookup %d)",
                role, m.key, describe(err), wait, attempt,
            )  # fmt: skip
            self.sleep(wait)
            wait = min(wait * 2, 8.0)
        st = self._key(m.key)
        st.unsettled.add(role)
        st.unsettled_since = self.clock()
        raise TransientError(
            f"{err.message}; not visible after {o.settle_timeout:g} s of lookups by name "
            "(the next attempt looks again before creating it)",
            **err.context,
        ) from err

    def _keep(
        self, role: str, found: list[dict[str, Any]], key: str, in_use: Callable[[], str | None] | None = None
    ) -> dict[str, Any]:
        """One object of ``found`` (all named ``key``): the one in use; archive the others."""
        st = self._key(key)
        keep = found[0]
        if len(found) > 1:
            by_id = {str(o["id"]): o for o in found}
            preferred = st.ids.get(role) or (in_use() if in_use else None)
            active = next((o for o in found if o.get("status") == "ACTIVE"), None) if role == "ad" else None
            keep = by_id.get(preferred or "") or active or found[0]
            for dup in found:
                if dup is not keep:
                    self._archive(role, str(dup["id"]), str(keep["id"]), key)
        st.ids[role] = str(keep["id"])
        st.absent.discard(role)
        return keep

    def _archive(self, role: str, dup: str, kept: str, key: str) -> None:
        """Archive a duplicate (creatives cannot be archived: an unused one is deleted)."""
        st = self._key(key)
        entry = {"role": role, "id": dup, "kept": kept}
        try:
            with self._boundary(f"archive duplicate {role} {dup}", st.campaign, key):
                if role == "creative":
                    AdCreative(dup, api=self.api).api_delete()
                else:
                    (AdSet if role == "adset" else Ad)(dup, api=self.api).api_update(params={"status": "ARCHIVED"})
        except ConnectorError as exc:
            entry["error"] = str(exc)
            log.warning("Meta %s %s: could not archive the duplicate %s (kept %s): %s", role, key, dup, kept, exc)
        else:
            self._count("meta_duplicates_archived", role=role)
            log.warning(
                "Meta %s %s: two objects carry the key name (a create committed late); kept %s, archived %s",
                role, key, kept, dup,
            )  # fmt: skip
        st.archived.append(entry)

    def _sweep(self, m: Mutation, only_own: bool = False) -> list[dict[str, str]]:
        """Look again for the late copies of unsettled creates (this campaign's, or ``m``'s own); archive them."""
        out: list[dict[str, str]] = []
        for key, st in list(self._keys.items()):
            if not st.unsettled or st.campaign != m.campaign or (only_own and key != m.key):
                continue
            for role in sorted(st.unsettled):
                lookup = st.finders.get(role)
                if lookup is None or role not in st.ids:
                    continue
                try:
                    found = lookup()
                except ConnectorError as exc:
                    if not exc.temporary:
                        raise
                    continue
                if len(found) > 1:
                    before = len(st.archived)
                    self._keep(role, found, key)
                    out += st.archived[before:]
                    st.unsettled.discard(role)
                elif self.clock() - st.unsettled_since > SETTLE_HORIZON:
                    st.unsettled.discard(role)  # Graph commits within seconds: it never went through
        return out

    def _upload(self, c: MetaCampaign, image: bytes, m: Mutation) -> str:
        try:
            with self._boundary("upload image", m.campaign, m.key):
                img = AdAccount(c.account_id, api=self.api).create_ad_image(
                    params={"bytes": base64.b64encode(image).decode("ascii")}
                )
                return str(img["hash"])
        except ConnectorError as err:
            err.context.pop("ambiguous", None)  # the same bytes give the same hash: nothing to settle
            raise

    def _creative(self, c: MetaCampaign, parent: ParentInfo, image: bytes, headline: str, m: Mutation) -> str:
        """The mutation's creative (known, found by name, else created with the parent's copy)."""
        account = AdAccount(c.account_id, api=self.api)
        st = self._key(m.key)
        if "creative" not in st.ids and not parent.page_id:
            raise ConfigError("config", "meta.page_id", "the parent creative names no page: set [meta].page_id")

        def in_use() -> str | None:
            ad = st.ids.get("ad")
            if ad is None:
                return None
            with self._boundary("read ad creative", m.campaign, m.key):
                data = Ad(ad, api=self.api).api_get(fields=["creative"]).export_all_data()
            return str((data.get("creative") or {}).get("id") or "") or None

        def create() -> str:
            image_hash = self._upload(c, image, m)
            link_data: dict[str, Any] = {
                "image_hash": image_hash,
                "link": parent.link,
                "message": parent.message,
                "name": headline or parent.headline,
                "call_to_action": {"type": parent.call_to_action, "value": {"link": parent.link}},
            }
            with self._boundary("create creative", m.campaign, m.key):
                creative = account.create_ad_creative(
                    params={"name": m.key, "object_story_spec": {"page_id": parent.page_id, "link_data": link_data}}
                )
                return str(creative["id"])

        return self._ensure("creative", m, self._finder("creative", c.account_id, m.key, m.campaign), create, in_use)

    def _launch(self, c: MetaCampaign, m: LaunchTestArm) -> dict[str, Any]:
        st = self._key(m.key)
        account = AdAccount(c.account_id, api=self.api)
        find_ads = self._finder("ad", c.test_campaign_id, m.key, m.campaign)
        # 1. adopt a complete arm left by an earlier attempt (one lookup, none when the record says)
        if "ad" not in st.ids and "ad" not in st.absent:
            self._existing_ad(c.test_campaign_id, m)
        if "ad" not in st.ids or "adset" not in st.ids:
            acct = self._money(c)
            parent = self._parent(c, m.parent_ad_id, m.campaign)

            # 2. the arm's own ad set in the test campaign, paused at the minimum budget
            def create_adset() -> str:
                params: dict[str, Any] = {
                    "bid_strategy": "LOWEST_COST_WITHOUT_CAP",
                    "billing_event": "IMPRESSIONS",
                    "optimization_goal": "LINK_CLICKS",
                    **parent.adset,
                    "name": m.key,
                    "campaign_id": c.test_campaign_id,
                    "daily_budget": acct.to_api(acct.min_daily_budget_minor),
                    "status": "PAUSED",
                }
                with self._boundary("create ad set", m.campaign, m.key):
                    return str(account.create_ad_set(params=params)["id"])

            def adset_in_use() -> str | None:
                return next((str(a["adset_id"]) for a in find_ads()), None)

            adset_id = self._ensure(
                "adset", m, self._finder("adset", c.test_campaign_id, m.key, m.campaign), create_adset, adset_in_use
            )
            # 3. the creative: the variant's image with the parent's copy
            creative_id = self._creative(c, parent, m.image, m.headline, m)

            # 4. the ad, paused until SetBudgets gives its ad set a budget
            def create_ad() -> str:
                with self._boundary("create ad", m.campaign, m.key):
                    return str(
                        account.create_ad(
                            params={
                                "name": m.key,
                                "adset_id": adset_id,
                                "creative": {"creative_id": creative_id},
                                "status": "PAUSED",
                            }
                        )["id"]
                    )

            self._ensure("ad", m, find_ads, create_ad)
        self._sweep(m, only_own=True)
        result: dict[str, Any] = {"adset_id": st.ids["adset"], "ad_id": st.ids["ad"]}
        if st.archived:
            result["archived"] = list(st.archived)
        return result

    def _end_time(self, acct: AccountInfo, end_day: date) -> str:
        tz = timezone(timedelta(hours=acct.utc_offset_hours))
        return datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=tz).strftime(
            "%Y-%m-%dT%H:%M:%S%z"
        )

    def _arm_ads(self, c: MetaCampaign, m: Mutation, adset_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The ads of these test ad sets (one read), duplicates of one key archived."""
        wanted = set(adset_ids)
        cap = self.options.lookup_max_pages * self.options.page_size
        rows: list[dict[str, Any]] = []
        with self._boundary("read test ads", m.campaign, m.key):
            cursor = Campaign(c.test_campaign_id, api=self.api).get_ads(
                fields=["id", "name", "adset_id", "status", "created_time"],
                params={
                    "filtering": [{"field": "adset.id", "operator": "IN", "value": sorted(wanted)}],
                    "limit": self.options.page_size,
                },
            )
            for n, obj in enumerate(cursor, 1):
                rows.append(obj.export_all_data())
                if n >= cap:
                    break
        by_adset: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for a in sorted(rows, key=_age):
            if str(a.get("adset_id")) in wanted and str(a.get("status", "")) not in GONE:
                by_adset.setdefault(str(a["adset_id"]), {}).setdefault(str(a.get("name", "")), []).append(a)
        out: dict[str, list[dict[str, Any]]] = {}
        for adset_id, names in by_adset.items():
            for name, ads in names.items():
                kept = self._keep("ad", ads, name) if len(ads) > 1 and name else None
                out.setdefault(adset_id, []).extend([kept] if kept is not None else ads)
        return out

    def _set_budgets(self, c: MetaCampaign, m: SetBudgets) -> dict[str, Any]:
        acct = self._money(c)
        archived = self._sweep(m)
        applied: dict[str, int] = {}
        below: list[str] = []
        for adset_id, budget in m.budgets:
            if 0 < budget < acct.min_daily_budget_minor:
                below.append(adset_id)  # Meta would refuse it: the arm sits this window out
                budget = 0
            applied[adset_id] = acct.sent(budget)  # the record says what Graph was given, not what was asked
        # 1. the arms' ads: which are paused, which run (and any duplicate)
        before = {k: len(st.archived) for k, st in self._keys.items()}
        ads = self._arm_ads(c, m, list(applied))
        archived += [e for k, st in self._keys.items() for e in st.archived[before.get(k, 0) :]]
        # 2. the updates, in an order that never leaves an ad active in a paused ad set:
        #    a funded arm's ad set first, then its ad (only if that went through);
        #    an unfunded arm's ad first, then its ad set.
        ops: list[_Op] = []
        for adset_id, budget in applied.items():
            mine = ads.get(adset_id, [])
            if budget > 0:
                params: dict[str, Any] = {"daily_budget": acct.to_api(budget), "status": "ACTIVE"}
                if m.end_day is not None:
                    params["end_time"] = self._end_time(acct, m.end_day)
                i = len(ops)
                ops.append(_Op(AdSet, adset_id, params, campaign_id=c.test_campaign_id))
                ops += [_Op(Ad, str(a["id"]), {"status": "ACTIVE"}, requires=(i,)) for a in mine if a.get("status") == "PAUSED"]  # fmt: skip
            else:
                first = len(ops)
                ops += [_Op(Ad, str(a["id"]), {"status": "PAUSED"}) for a in mine if a.get("status") == "ACTIVE"]
                ops.append(
                    _Op(AdSet, adset_id, {"status": "PAUSED"}, campaign_id=c.test_campaign_id,
                        after=tuple(range(first, len(ops))))
                )  # fmt: skip
        self._run_ops(ops, m)
        result: dict[str, Any] = {
            "budgets": applied, "below_minimum": below, "min_daily_budget": acct.min_daily_budget_minor,
        }  # fmt: skip
        if archived:
            result["archived"] = archived
        return result

    def _pause(self, c: MetaCampaign, m: PauseAds) -> dict[str, Any]:
        archived = self._sweep(m)
        # The ads first: an ad set is paused only once its ads' pauses were sent.
        ops = [_Op(Ad, a, {"status": "PAUSED"}) for a in m.ad_ids]
        ads = tuple(range(len(ops)))
        ops += [_Op(AdSet, s, {"status": "PAUSED"}, campaign_id=c.test_campaign_id, after=ads) for s in m.adset_ids]
        self._run_ops(ops, m)
        return {"archived": archived} if archived else {}

    def _scale(self, c: MetaCampaign, m: ScaleWinner) -> dict[str, Any]:
        st = self._key(m.key)
        if "ad" not in st.ids:
            parent = self._parent(c, m.parent_ad_id, m.campaign)
            if "ad" not in st.absent:
                self._existing_ad(c.campaign_id, m)
            if "ad" not in st.ids:
                creative_id = self._creative(c, parent, m.image, m.headline, m)

                def create_ad() -> str:
                    with self._boundary("create ad", m.campaign, m.key):
                        return str(
                            AdAccount(c.account_id, api=self.api).create_ad(
                                params={
                                    "name": m.key,
                                    "adset_id": parent.adset_id,
                                    "creative": {"creative_id": creative_id},
                                    "status": "PAUSED",
                                }
                            )["id"]
                        )

                self._ensure("ad", m, self._finder("ad", c.campaign_id, m.key, m.campaign), create_ad)
        ad_id = st.ids["ad"]
        # Both are ads (no ad-set grouping rule): one batch.
        self._run_ops([_Op(Ad, ad_id, {"status": "ACTIVE"}), _Op(Ad, m.parent_ad_id, {"status": "PAUSED"})], m)
        self._sweep(m, only_own=True)
        result: dict[str, Any] = {"ad_id": ad_id}
        if st.archived:
            result["archived"] = list(st.archived)
        return result

    # -- node updates in rounds -------------------------------------------------------
    def _run_ops(self, ops: list[_Op], m: Mutation) -> None:
        """Send node updates in rounds (see the module docstring); raise the worst failure.

        Each round is one request: the ready updates (whatever they must follow
        has been sent, whatever they require went through), at most
        ``batch_size`` of them and, under ``one_adset_per_campaign``, at most
        one ad set of a campaign.  A whole request that fails for a reason
        other than the platform refusing it (throttled, token, 5xx, timeout)
        stops the mutation there: it is retried whole, and updates are
        idempotent.
        """
        failures: list[ConnectorError] = []
        while True:
            # 1. an op whose prerequisite failed is skipped (an ad whose ad set was not updated stays paused)
            for op in ops:
                if op.outcome == "" and any(ops[r].outcome in ("failed", "skipped") for r in op.requires):
                    op.outcome = "skipped"
            ready = [
                i
                for i, op in enumerate(ops)
                if op.outcome == ""
                and all(ops[r].outcome == "ok" for r in op.requires)
                and all(ops[a].outcome != "" for a in op.after)
            ]
            if not ready:
                break
            # 2. one round: as many ready ops as the batch rules allow
            chosen: list[int] = []
            adset_campaigns: set[str] = set()
            for i in ready:
                if len(chosen) >= self.options.batch_size:
                    break
                op = ops[i]
                if op.cls is AdSet and self.options.one_adset_per_campaign:
                    if op.campaign_id in adset_campaigns:
                        continue
                    adset_campaigns.add(op.campaign_id)
                chosen.append(i)
            stop = self._send_round([ops[i] for i in chosen], m, failures)
            if stop is not None:
                failures.append(stop)
                break
        if failures:
            for err in failures:
                self._on_error(err)
            worst = min(failures, key=_severity)
            notes = []
            if len(failures) > 1:
                notes.append(f"and {len(failures) - 1} more failures")
            held = sum(1 for op in ops if op.outcome == "skipped")
            if held:
                notes.append(f"{held} ad activation(s) held back: their ad set's update failed")
            if notes:
                worst.message = f"{worst.message} ({'; '.join(notes)})"
                worst.args = (worst.message,)
            raise worst

    def _send_round(self, chosen: list[_Op], m: Mutation, failures: list[ConnectorError]) -> ConnectorError | None:
        """Send one round; per-op refusals go to ``failures``; returns an error that stops the mutation."""
        what = "batch update"
        if len(chosen) == 1:  # a batch of one is still one request: send it plainly
            op = chosen[0]
            kind = "ad set" if op.cls is AdSet else "ad"
            self.adapter.forget()
            try:
                with boundary(f"update {kind} {op.node_id}", campaign=m.campaign, key=m.key,
                              last_response=self.adapter.last_response):  # fmt: skip
                    op.cls(op.node_id, api=self.api).api_update(params=dict(op.params))
            except PlatformError as err:
                op.outcome = "failed"
                failures.append(err)
                return None
            except ConnectorError as err:
                op.outcome = "failed"
                return err
            op.outcome = "ok"
            return None

        def ok(op: _Op) -> Callable[[Any], None]:
            def done(resp: Any) -> None:
                op.outcome = "ok"

            return done

        def fail(op: _Op) -> Callable[[Any], None]:
            def failed(resp: Any) -> None:
                op.outcome = "failed"
                err = resp.error()
                if isinstance(err, FacebookRequestError):
                    failures.append(translate_request_error(err, what=what, campaign=m.campaign, key=m.key))
                else:  # pragma: no cover - the SDK always builds a FacebookRequestError
                    failures.append(TransientError(f"Meta {what}: {err}", campaign=m.campaign, key=m.key))

            return failed

        batch = self.api.new_batch()
        for op in chosen:
            op.cls(op.node_id, api=self.api).api_update(
                params=dict(op.params), batch=batch, success=ok(op), failure=fail(op)
            )
        self._count("meta_batch_items", float(len(chosen)))
        for attempt in range(1, 4):
            self.adapter.forget()
            try:
                with boundary(what, campaign=m.campaign, key=m.key, last_response=self.adapter.last_response):
                    batch = batch.execute()
            except ConnectorError as err:
                for op in chosen:
                    if op.outcome == "":
                        op.outcome = "failed"
                return err
            if batch is None:
                return None
            if attempt < 3:
                log.warning(
                    "Meta %s for %s: %d of %d requests were not run (no answer in the batch); "
                    "sending them again now (attempt %d of 3)", what, m.key, len(batch), len(chosen), attempt + 1,
                )  # fmt: skip
        for op in chosen:
            if op.outcome == "":
                op.outcome = "failed"
        return TransientError(f"Meta {what}: some requests were not run", campaign=m.campaign, key=m.key)
