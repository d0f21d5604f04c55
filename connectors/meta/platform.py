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
    Batched node updates (``batch_size`` <= 50 per Graph batch): a positive
    budget sets ``daily_budget``, ``end_time`` (the day after ``end_day`` at
    midnight, account time: a dead loop cannot spend past what was reserved)
    and ``ACTIVE`` (and activates the arm's paused ad); 0 -- or a share under the
    account's minimum daily budget -- pauses the ad set.
``PauseAds``
    Batched ``status=PAUSED`` on the ads and ad sets.
``ScaleWinner``
    Upload the pro render, create its creative and a ``PAUSED`` ad in the
    parent's ad set, then one batch: activate it, pause the parent.

Idempotency: every object is named with the mutation key, and ``apply``
adopts an existing object of that name at each step (ad set, creative, ad)
instead of creating a second one; :meth:`find` reports a mutation whose
effect is already complete.  Budget and pause updates are idempotent by
nature and are simply resent.

Safety: the SDK objects all get ``api=`` (no ``set_default_api``), the
session is built here (no ``FacebookAdsApi.init``, so no crash reporter), and
the token only travels in the query string that ``requests`` builds.

Counting: every HTTP request goes through :class:`MeteredAdapter`, which
counts it (``meta_api_calls``) and reads the usage headers; batch items
(``meta_batch_items``), throttling errors (``meta_throttled``) and usage-gate
waits (``meta_usage_waits``) are counted too.  Counts accumulate in
``self.counts`` (read it in-process) and, when a ``counter_engine`` is
given (``from_config`` passes the loop's database), are added to
``storage.counters`` after every public call in a short session of their own.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
from facebook_business.adobjects.ad import Ad
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adcreative import AdCreative
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.campaign import Campaign
from facebook_business.api import FacebookAdsApi, FacebookSession
from facebook_business.exceptions import FacebookRequestError
from PIL import Image

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
from connectors.meta import insights as ins
from connectors.meta.errors import boundary, translate_request_error
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

log = logging.getLogger("creative_loop.meta")

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DEFAULT_CTA = "LEARN_MORE"


@dataclass(frozen=True)
class MetaCampaign:
    """Where one of the loop's campaigns lives on Meta."""

    id: str  # the loop's campaign id
    account_id: str  # act_<n>
    campaign_id: str  # the campaign whose ads are watched and scaled
    test_campaign_id: str  # an ABO campaign that holds the test ad sets

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
    min_daily_budget_minor: int = 100  # floor; the account's own min_daily_budget wins when larger
    image_max_bytes: int = 30 * 1024 * 1024
    image_max_pixels: int = 40_000_000
    image_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 50:
            raise ValueError(f"batch_size: expected 1..50 (Graph refuses larger batches), got {self.batch_size}")
        if self.page_size < 1 or self.async_after_days < 1:
            raise ValueError("page_size, async_after_days: expected >= 1")


@dataclass(frozen=True)
class AccountInfo:
    currency: str
    exponent: int
    min_daily_budget_minor: int
    utc_offset_hours: float


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
class _Batch:
    """Failures collected from one or more Graph batches."""

    errors: list[ConnectorError] = field(default_factory=list)


def _severity(err: ConnectorError) -> int:
    order = (AuthExpired, PlatformError, RateLimited, TransientError)
    return next((i for i, cls in enumerate(order) if isinstance(err, cls)), len(order))


class MetaAdPlatform(AdPlatform):
    """The ``AdPlatform`` of one or more Meta ad accounts (one ``MetaCampaign`` per loop campaign)."""

    name = "meta"

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
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._unflushed: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._lock = threading.Lock()
        self.counter_engine = counter_engine
        self.gate = gate or UsageGate(clock=clock, sleep=sleep)
        self.gate.on_wait = lambda how, seconds: self._count("meta_usage_waits", how=how)
        adapter = MeteredAdapter(self.gate, on_call=lambda method: self._count("meta_api_calls", method=method))
        session.requests.mount("http://", adapter)
        session.requests.mount("https://", adapter)
        self.session = session
        self.api = FacebookAdsApi(session, api_version=api_version)
        self._http = http
        self._accounts: dict[str, AccountInfo] = {}
        self._parents: dict[str, ParentInfo] = {}

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
    def from_config(cls, cfg: Any, counter_engine: Any = None) -> MetaAdPlatform:
        """The platform ``[meta]`` and ``[[campaigns]]`` describe; secrets from the environment."""
        import os

        m = cfg.model.meta
        token = cfg.secret(m.access_token_env, "meta.access_token_env")
        campaigns: dict[str, MetaCampaign] = {}
        for i, c in enumerate(cfg.model.campaigns):
            if cfg.platform_of(c.id) not in ("meta", "simulated"):
                continue  # a campaign on another real platform (loop.app routes its calls there)
            s = cfg.campaign_settings(c.id)
            for key in ("account_id", "campaign_id", "test_campaign_id"):
                if not getattr(s, key):
                    raise ConfigError(str(cfg.path), f"campaigns[{i}].{key}", "required when loop.platform = 'meta'")
            try:
                campaigns[s.id] = MetaCampaign(s.id, s.account_id, s.campaign_id, s.test_campaign_id)
            except ValueError as exc:
                raise ConfigError(str(cfg.path), f"campaigns[{i}]", str(exc)) from None
        if counter_engine is None:
            from storage.db import make_engine

            counter_engine = make_engine(cfg.database_url)
        return cls.connect(
            access_token=token,
            app_secret=os.environ.get(m.app_secret_env) or None,
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
            ),
            gate=UsageGate(GateSettings(slow_at=m.usage_slow_at, pause_at=m.usage_pause_at)),
            counter_engine=counter_engine,
        )

    def close(self) -> None:
        """Close the HTTP connections (Graph and image downloads) and store pending counters."""
        self._flush()
        self.session.requests.close()
        if self._http is not None:
            self._http.close()

    # -- counters -------------------------------------------------------------
    def _count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.counts[key] += amount
            self._unflushed[key] += amount

    def count(self, name: str, **labels: str) -> float:
        """The in-process total of one counter (all label values when none are given)."""
        with self._lock:
            return sum(
                v
                for (n, lbl), v in self.counts.items()
                if n == name and all(dict(lbl).get(k) == x for k, x in labels.items())
            )

    def flush_counters(self, session: Any) -> None:
        """Add the counts not yet stored to ``storage.counters`` (the caller commits)."""
        from storage.counters import increment

        with self._lock:
            pending, self._unflushed = self._unflushed, Counter()
        for (name, labels), amount in sorted(pending.items()):
            increment(session, name, amount, platform="meta", **dict(labels))

    def _flush(self) -> None:
        if self.counter_engine is None or not self._unflushed:
            return
        from storage.db import session as open_session

        try:
            with open_session(self.counter_engine) as s:
                self.flush_counters(s)
                s.commit()
        except Exception as exc:  # counters are telemetry: never fail a tick over them
            log.warning("could not store Meta API counters: %s", exc)

    def _on_error(self, err: ConnectorError) -> None:
        if isinstance(err, RateLimited) and not err.context.get("gate"):
            self._count("meta_throttled", code=str(err.context.get("code", "")))
            self.gate.throttled(err.retry_after)

    def _boundary(self, what: str, campaign: str | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
        return boundary(what, campaign=campaign, key=key, on_error=self._on_error)

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
            info = AccountInfo(
                currency=currency,
                exponent=ins.currency_exponent(currency),
                min_daily_budget_minor=max(self.options.min_daily_budget_minor, int(data.get("min_daily_budget") or 0)),
                utc_offset_hours=float(data.get("timezone_offset_hours_utc") or 0.0),
            )
            self._accounts[account_id] = info
        return info

    def _named(self, edge: Callable[..., Any], name: str, fields: list[str]) -> dict[str, Any] | None:
        """The first object of ``edge`` whose name is exactly ``name`` (the idempotency lookup)."""
        cursor = edge(
            fields=["id", "name", *fields],
            params={"filtering": [{"field": "name", "operator": "EQUAL", "value": name}], "limit": 25},
        )
        for obj in cursor:
            data = obj.export_all_data()
            if data.get("name") == name:
                return data
        return None

    # -- reads --------------------------------------------------------------------
    def list_ads(self, campaign: str) -> list[LiveAd]:
        c = self._campaign(campaign)
        try:
            out: list[LiveAd] = []
            with self._boundary("list ads", campaign):
                cursor = Campaign(c.campaign_id, api=self.api).get_ads(
                    fields=["id", "name", "status"], params={"limit": self.options.page_size}
                )
                rows = [obj.export_all_data() for obj in cursor]
            for row in rows:
                status = str(row.get("status", ""))
                if status in ("ACTIVE", "PAUSED"):
                    out.append(LiveAd(str(row["id"]), str(row.get("name", "")), status))
            return out
        finally:
            self._flush()

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        c = self._campaign(campaign)
        try:
            if until < since:
                return []
            acct = self.account(c.account_id)
            params = ins.insights_params(since, until, (c.campaign_id, c.test_campaign_id), self.options.page_size)
            account = AdAccount(c.account_id, api=self.api)
            raw = self._fetch(account, params, (until - since).days + 1, campaign)
            rows: dict[tuple[str, date], InsightRow] = {}
            for r in raw:
                row = ins.parse_row(r, acct.exponent, self.options.conversion_action)
                rows[(row.ad_id, row.day)] = row  # a row seen twice (late attribution) keeps its last numbers
            return list(rows.values())
        finally:
            self._flush()

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
        try:
            parent = self._parent(self._campaign(campaign), ad_id, campaign)
            url = parent.image_url or self._image_url(self._campaign(campaign), parent.image_hash, campaign)
            image = self._download(url, campaign)
            return SourceCreative(
                ad_id=ad_id, image=image, headline=parent.headline, message=parent.message,
                link=parent.link, call_to_action=parent.call_to_action,
            )  # fmt: skip
        finally:
            self._flush()

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
        try:
            c = self._campaign(mutation.campaign)
            if isinstance(mutation, LaunchTestArm):
                ad = self._find_ad(c.test_campaign_id, mutation)
                return {"adset_id": str(ad["adset_id"]), "ad_id": str(ad["id"])} if ad else None
            if isinstance(mutation, ScaleWinner):
                ad = self._find_ad(c.campaign_id, mutation)
                if ad is None or ad.get("status") != "ACTIVE":
                    return None
                with self._boundary("read parent ad", mutation.campaign, mutation.key):
                    parent = Ad(mutation.parent_ad_id, api=self.api).api_get(fields=["status"]).export_all_data()
                return {"ad_id": str(ad["id"])} if parent.get("status") != "ACTIVE" else None
            return None  # budget and pause updates are idempotent: resend them
        finally:
            self._flush()

    def _find_ad(self, campaign_id: str, m: Mutation) -> dict[str, Any] | None:
        with self._boundary("find ad by name", m.campaign, m.key):
            return self._named(Campaign(campaign_id, api=self.api).get_ads, m.key, ["adset_id", "status"])

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        try:
            c = self._campaign(mutation.campaign)
            if isinstance(mutation, LaunchTestArm):
                return self._launch(c, mutation)
            if isinstance(mutation, SetBudgets):
                return self._set_budgets(c, mutation)
            if isinstance(mutation, PauseAds):
                ops = [(Ad, a, {"status": "PAUSED"}) for a in mutation.ad_ids]
                ops += [(AdSet, s, {"status": "PAUSED"}) for s in mutation.adset_ids]
                self._run_batches(ops, mutation)
                return {}
            if isinstance(mutation, ScaleWinner):
                return self._scale(c, mutation)
            raise PlatformError(f"unsupported mutation {mutation.kind}", campaign=mutation.campaign, key=mutation.key)
        finally:
            self._flush()

    def _upload(self, c: MetaCampaign, image: bytes, m: Mutation) -> str:
        import base64

        with self._boundary("upload image", m.campaign, m.key):
            img = AdAccount(c.account_id, api=self.api).create_ad_image(
                params={"bytes": base64.b64encode(image).decode("ascii")}
            )
            return str(img["hash"])

    def _creative(self, c: MetaCampaign, parent: ParentInfo, image: bytes, headline: str, m: Mutation) -> str:
        """The mutation's creative (adopted by name, else created with the parent's copy)."""
        account = AdAccount(c.account_id, api=self.api)
        with self._boundary("find creative by name", m.campaign, m.key):
            found = self._named(account.get_ad_creatives, m.key, [])
        if found:
            return str(found["id"])
        if not parent.page_id:
            raise ConfigError("config", "meta.page_id", "the parent creative names no page: set [meta].page_id")
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

    def _launch(self, c: MetaCampaign, m: LaunchTestArm) -> dict[str, Any]:
        # 1. adopt a complete arm left by an earlier attempt
        found = self._find_ad(c.test_campaign_id, m)
        if found:
            return {"adset_id": str(found["adset_id"]), "ad_id": str(found["id"])}
        acct = self.account(c.account_id)
        parent = self._parent(c, m.parent_ad_id, m.campaign)
        account = AdAccount(c.account_id, api=self.api)
        # 2. the arm's own ad set in the test campaign, paused at the minimum budget
        with self._boundary("find ad set by name", m.campaign, m.key):
            adset = self._named(Campaign(c.test_campaign_id, api=self.api).get_ad_sets, m.key, [])
        if adset is None:
            params: dict[str, Any] = {
                "bid_strategy": "LOWEST_COST_WITHOUT_CAP",
                "billing_event": "IMPRESSIONS",
                "optimization_goal": "LINK_CLICKS",
                **parent.adset,
                "name": m.key,
                "campaign_id": c.test_campaign_id,
                "daily_budget": acct.min_daily_budget_minor,
                "status": "PAUSED",
            }
            with self._boundary("create ad set", m.campaign, m.key):
                adset = {"id": account.create_ad_set(params=params)["id"]}
        # 3. the creative: the variant's image with the parent's copy
        creative_id = self._creative(c, parent, m.image, m.headline, m)
        # 4. the ad, paused until SetBudgets gives its ad set a budget
        with self._boundary("create ad", m.campaign, m.key):
            ad = account.create_ad(
                params={
                    "name": m.key,
                    "adset_id": adset["id"],
                    "creative": {"creative_id": creative_id},
                    "status": "PAUSED",
                }
            )
        return {"adset_id": str(adset["id"]), "ad_id": str(ad["id"])}

    def _end_time(self, acct: AccountInfo, end_day: date) -> str:
        tz = timezone(timedelta(hours=acct.utc_offset_hours))
        return datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=tz).strftime(
            "%Y-%m-%dT%H:%M:%S%z"
        )

    def _set_budgets(self, c: MetaCampaign, m: SetBudgets) -> dict[str, Any]:
        acct = self.account(c.account_id)
        applied: dict[str, int] = {}
        below: list[str] = []
        ops: list[tuple[type, str, dict[str, Any]]] = []
        for adset_id, budget in m.budgets:
            if 0 < budget < acct.min_daily_budget_minor:
                below.append(adset_id)  # Meta would refuse it: the arm sits this window out
                budget = 0
            applied[adset_id] = int(budget)
            if budget > 0:
                params: dict[str, Any] = {"daily_budget": int(budget), "status": "ACTIVE"}
                if m.end_day is not None:
                    params["end_time"] = self._end_time(acct, m.end_day)
                ops.append((AdSet, adset_id, params))
            else:
                ops.append((AdSet, adset_id, {"status": "PAUSED"}))
        live = sorted(a for a, b in applied.items() if b > 0)
        if live:
            # Arms' ads are created paused; activate those still paused in a funded ad set.
            with self._boundary("read test ads", m.campaign, m.key):
                ads = [
                    a.export_all_data()
                    for a in Campaign(c.test_campaign_id, api=self.api).get_ads(
                        fields=["id", "adset_id", "status"],
                        params={"filtering": [{"field": "adset.id", "operator": "IN", "value": live}], "limit": 500},
                    )
                ]
            ops += [
                (Ad, str(a["id"]), {"status": "ACTIVE"})
                for a in ads
                if a.get("status") == "PAUSED" and str(a.get("adset_id")) in live
            ]
        self._run_batches(ops, m)
        return {"budgets": applied, "below_minimum": below, "min_daily_budget": acct.min_daily_budget_minor}

    def _scale(self, c: MetaCampaign, m: ScaleWinner) -> dict[str, Any]:
        parent = self._parent(c, m.parent_ad_id, m.campaign)
        ad = self._find_ad(c.campaign_id, m)
        if ad is None:
            creative_id = self._creative(c, parent, m.image, m.headline, m)
            with self._boundary("create ad", m.campaign, m.key):
                created = AdAccount(c.account_id, api=self.api).create_ad(
                    params={
                        "name": m.key,
                        "adset_id": parent.adset_id,
                        "creative": {"creative_id": creative_id},
                        "status": "PAUSED",
                    }
                )
            ad = {"id": str(created["id"])}
        self._run_batches([(Ad, str(ad["id"]), {"status": "ACTIVE"}), (Ad, m.parent_ad_id, {"status": "PAUSED"})], m)
        return {"ad_id": str(ad["id"])}

    def _run_batches(self, ops: list[tuple[type, str, dict[str, Any]]], m: Mutation) -> None:
        """Node updates in Graph batches of at most ``batch_size``; raise the worst failure."""
        failures = _Batch()

        def fail(resp: Any) -> None:
            err = resp.error()
            if isinstance(err, FacebookRequestError):
                failures.errors.append(
                    translate_request_error(err, what="batch update", campaign=m.campaign, key=m.key)
                )
            else:  # pragma: no cover - the SDK always builds a FacebookRequestError
                failures.errors.append(TransientError(f"Meta batch update: {err}", campaign=m.campaign, key=m.key))

        for chunk in _chunks(ops, self.options.batch_size):
            batch = self.api.new_batch()
            for cls, node_id, params in chunk:
                cls(node_id, api=self.api).api_update(params=dict(params), batch=batch, failure=fail)
            self._count("meta_batch_items", float(len(chunk)))
            for _ in range(3):
                with self._boundary("batch update", m.campaign, m.key):
                    batch = batch.execute()
                if batch is None:
                    break
            else:
                failures.errors.append(
                    TransientError("Meta batch update: some requests were not run", campaign=m.campaign, key=m.key)
                )
        if failures.errors:
            worst = min(failures.errors, key=_severity)
            for err in failures.errors:
                self._on_error(err)
            if len(failures.errors) > 1:
                worst.message = f"{worst.message} (and {len(failures.errors) - 1} more failures in the batch)"
                worst.args = (worst.message,)
            raise worst


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
