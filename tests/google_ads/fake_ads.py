"""A fake Google Ads API that the real ``google-ads`` client talks to: gRPC over TLS on loopback.

What it implements (``GoogleAdsService`` only: the connector sends everything through it):

- ``SearchStream`` with a GAQL subset: ``SELECT`` leaf fields ``FROM`` one of
  customer, campaign, campaign_budget, campaign_criterion, ad_group,
  ad_group_criterion, ad_group_ad, ad_group_ad_asset_view, asset;
  ``WHERE`` conditions joined by ``AND`` (``= != < > <= >= IN, NOT IN, LIKE,
  NOT LIKE, BETWEEN``; strings, numbers, booleans, enum names bare or quoted);
  ``ORDER BY`` and ``LIMIT``.  Metrics need ``segments.date`` (one row per ad
  and day that delivered, as Google leaves out rows with no activity);
  ``segments.conversion_action`` allows conversion metrics only (Google's
  rule).  Rows carry only the selected fields plus a ``field_mask``, in
  batches of ``batch_rows``.
- ``Mutate`` (atomic, or per operation with ``partial_failure``; a partial
  failure comes back as a ``google.rpc.Status`` holding a ``GoogleAdsFailure``)
  creating and updating assets, budgets, campaigns, campaign and ad group
  criteria, ad groups and ad group ads, with temporary negative ids.  The rules
  it enforces, each answered with Google's error code: resource-name formats
  and the request's customer; update masks; money in micros that are a
  multiple of the currency's minimum unit, not negative, not under the per-day
  minimum; a Demand Gen campaign's budget not shared; unique campaign, budget
  and ad group names; the EU political-advertising declaration of a Demand Gen
  ad group's campaign; bidding on every campaign; ``end_date_time`` as
  ``yyyy-MM-dd HH:mm:ss``; a Demand Gen image ad's required parts, its image
  assets' aspect ratios and minimum sizes.
- Authentication: the ``authorization`` bearer token, ``developer-token`` and
  ``login-customer-id`` metadata on every call; an OAuth token endpoint and
  the image URLs on a plain HTTP server beside it.
- Faults: scripted (:class:`Fault`) or at random (``fault_rate``): quota
  (``RESOURCE_EXHAUSTED``, not wrapped by the client), internal (``INTERNAL``,
  not wrapped), unavailable, concurrent modification, authentication, slow
  answers, a mutation applied whose answer is lost, and a stream cut mid-way.

:meth:`FakeGoogleAds.deliver` turns a day of budgets, statuses and true CTRs
into metrics rows, so the loop can run whole experiments against it.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import grpc
import numpy as np
from google.ads.googleads.v26.common.types import ad_asset, ad_type_infos  # noqa: F401 (types load with resources)
from google.ads.googleads.v26.errors.types import errors as error_types
from google.ads.googleads.v26.resources.types import (
    ad_group as ad_group_types,
)
from google.ads.googleads.v26.resources.types import (
    ad_group_ad as ad_group_ad_types,
)
from google.ads.googleads.v26.resources.types import (
    ad_group_ad_asset_view as view_types,
)
from google.ads.googleads.v26.resources.types import (
    ad_group_criterion as ad_group_criterion_types,
)
from google.ads.googleads.v26.resources.types import (
    asset as asset_types,
)
from google.ads.googleads.v26.resources.types import (
    campaign as campaign_types,
)
from google.ads.googleads.v26.resources.types import (
    campaign_budget as budget_types,
)
from google.ads.googleads.v26.resources.types import (
    campaign_criterion as campaign_criterion_types,
)
from google.ads.googleads.v26.resources.types import (
    customer as customer_types,
)
from google.ads.googleads.v26.services.types import google_ads_service as gas
from google.protobuf import any_pb2
from google.rpc import status_pb2
from google_tls import trusted_pair
from PIL import Image

VERSION = "v26"
SERVICE = f"google.ads.googleads.{VERSION}.services.GoogleAdsService"
FAILURE_KEY = f"google.ads.googleads.{VERSION}.errors.googleadsfailure-bin"
DEVELOPER_TOKEN = "dev-token-0123456789"
CLIENT_ID = "fake-client-id.apps.googleusercontent.com"
CLIENT_SECRET = "fake-client-secret-abcdef"
REFRESH_TOKEN = "1//fake-refresh-token-zyxwvu"
CUSTOMER = "1234567890"
MANAGER = "9876543210"

Row = gas.GoogleAdsRow.pb()
Failure = error_types.GoogleAdsFailure.pb()
Campaign = campaign_types.Campaign.pb()
Budget = budget_types.CampaignBudget.pb()
AdGroup = ad_group_types.AdGroup.pb()
AdGroupAd = ad_group_ad_types.AdGroupAd.pb()
Asset = asset_types.Asset.pb()
CampaignCriterion = campaign_criterion_types.CampaignCriterion.pb()
AdGroupCriterion = ad_group_criterion_types.AdGroupCriterion.pb()
Customer = customer_types.Customer.pb()
AssetView = view_types.AdGroupAdAssetView.pb()

COLLECTIONS = {
    "asset": "assets",
    "campaign_budget": "campaignBudgets",
    "campaign": "campaigns",
    "campaign_criterion": "campaignCriteria",
    "ad_group": "adGroups",
    "ad_group_criterion": "adGroupCriteria",
    "ad_group_ad": "adGroupAds",
}
MESSAGES = {
    "asset": Asset,
    "campaign_budget": Budget,
    "campaign": Campaign,
    "campaign_criterion": CampaignCriterion,
    "ad_group": AdGroup,
    "ad_group_criterion": AdGroupCriterion,
    "ad_group_ad": AdGroupAd,
}
_RN = {
    kind: re.compile(rf"^customers/([0-9]+)/{coll}/(-?[0-9]+)$")
    for kind, coll in COLLECTIONS.items()
    if kind not in ("ad_group_ad", "campaign_criterion", "ad_group_criterion")
}
_RN["ad_group_ad"] = re.compile(r"^customers/([0-9]+)/adGroupAds/([0-9]+)~([0-9]+)$")
_RN["campaign_criterion"] = re.compile(r"^customers/([0-9]+)/campaignCriteria/([0-9]+)~([0-9]+)$")
_RN["ad_group_criterion"] = re.compile(r"^customers/([0-9]+)/adGroupCriteria/([0-9]+)~([0-9]+)$")
UPDATABLE = {
    "campaign": ("status", "end_date_time", "start_date_time"),
    "campaign_budget": ("amount_micros",),
    "ad_group": ("status",),
    "ad_group_ad": ("status",),
}
BIDDING_TYPES = {
    "maximize_conversions": "MAXIMIZE_CONVERSIONS",
    "maximize_conversion_value": "MAXIMIZE_CONVERSION_VALUE",
    "target_cpa": "TARGET_CPA",
    "target_roas": "TARGET_ROAS",
    "target_spend": "TARGET_SPEND",
    "manual_cpc": "MANUAL_CPC",
    "target_cpc": "TARGET_CPC",
}
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SLOTS = {  # DemandGenMultiAssetAdInfo field -> (asset field type, ratio, min width, min height)
    "marketing_images": ("MARKETING_IMAGE", 1.91, 600, 314),
    "square_marketing_images": ("SQUARE_MARKETING_IMAGE", 1.0, 300, 300),
    "portrait_marketing_images": ("PORTRAIT_MARKETING_IMAGE", 0.8, 480, 600),
    "tall_portrait_marketing_images": ("TALL_PORTRAIT_MARKETING_IMAGE", 9 / 16, 600, 1067),
}


class ApiError(Exception):
    """A refusal the server answers with a GoogleAdsFailure."""

    def __init__(self, code: str, message: str, *, status: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
                 operation: int | None = None, retry_delay: int | None = None,
                 minimum_budget_micros: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.code, self.message, self.status, self.operation = code, message, status, operation
        self.retry_delay, self.minimum_budget_micros = retry_delay, minimum_budget_micros

    def to_error(self) -> Any:
        family, name = self.code.split(".")
        err = error_types.GoogleAdsError.pb()()
        fd = err.error_code.DESCRIPTOR.fields_by_name[family]
        setattr(err.error_code, family, fd.enum_type.values_by_name[name].number)
        err.message = self.message
        if self.operation is not None:
            err.location.field_path_elements.add(field_name="mutate_operations", index=self.operation)
        if self.retry_delay is not None:
            err.details.quota_error_details.retry_delay.seconds = self.retry_delay
        if self.minimum_budget_micros is not None:
            err.details.budget_per_day_minimum_error_details.minimum_budget_amount_micros = self.minimum_budget_micros
        return err


@dataclass
class Fault:
    """Answer matching calls with a failure, ``times`` times (None: forever).

    kind: quota | internal | unavailable | concurrent | auth | slow | lost | custom
    (``lost``: a Mutate is applied, then its answer fails; ``custom``: ``code``
    with ``status``).  ``after_rows``: a SearchStream fails after that many rows.
    """

    kind: str
    method: str | None = None  # "SearchStream" | "Mutate"
    times: int | None = 1
    contains: str = ""  # the query (SearchStream) or an operation's kind (Mutate) must contain this
    after_rows: int | None = None
    delay: float = 0.05
    code: str = ""
    status: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT

    def matches(self, method: str, text: str) -> bool:
        return (self.method is None or self.method == method) and self.contains in text and self.times != 0


@dataclass
class Seen:
    method: str
    customer_id: str
    text: str  # the query, or the kinds of the operations
    metadata: dict[str, str]
    partial_failure: bool = False
    operations: int = 0


# -- GAQL -----------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><=|>=|!=|=|<|>|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass
class Query:
    fields: list[str]
    resource: str
    where: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]
    limit: int | None


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError("query_error.BAD_SYMBOL", f"unexpected input at {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            s = m.group("str")[1:-1]
            out.append(("str", re.sub(r"\\(.)", r"\1", s)))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("num", float(n) if "." in n else int(n)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
    return out


def parse(text: str) -> Query:
    toks = _tokens(text)
    i = 0

    def peek(kind: str | None = None, value: Any = None) -> bool:
        if i >= len(toks):
            return False
        k, v = toks[i]
        return (kind is None or k == kind) and (
            value is None or (str(v).upper() == value if k == "word" else v == value)
        )

    def take(kind: str | None = None, value: Any = None, code: str = "query_error.UNEXPECTED_INPUT") -> Any:
        nonlocal i
        if not peek(kind, value):
            got = toks[i][1] if i < len(toks) else "end of query"
            raise ApiError(code if i < len(toks) else "query_error.UNEXPECTED_END_OF_QUERY", f"expected {value or kind}, got {got!r}")  # fmt: skip
        i += 1
        return toks[i - 1][1]

    def value() -> Any:
        if peek("str") or peek("num"):
            return take()
        word = take("word", code="query_error.BAD_VALUE")
        if word.upper() in ("TRUE", "FALSE"):
            return word.upper() == "TRUE"
        return word  # an enum constant

    take("word", "SELECT", "query_error.EXPECTED_SELECT")
    fields = [take("word", code="query_error.BAD_FIELD_NAME")]
    while peek("op", ","):
        take()
        fields.append(take("word", code="query_error.BAD_FIELD_NAME"))
    take("word", "FROM", "query_error.EXPECTED_FROM")
    resource = take("word", code="query_error.BAD_RESOURCE_TYPE_IN_FROM_CLAUSE")
    where: list[tuple[str, str, Any]] = []
    if peek("word", "WHERE"):
        take()
        while True:
            f = take("word", code="query_error.BAD_FIELD_NAME")
            if peek("word", "NOT"):
                take()
                op = "NOT " + take("word").upper()
            elif peek("word"):
                op = take("word").upper()
            else:
                op = take("op", code="query_error.BAD_OPERATOR")
            if op in ("IN", "NOT IN"):
                take("op", "(", "query_error.EXPECTED_LIST")
                items = [value()]
                while peek("op", ","):
                    take()
                    items.append(value())
                take("op", ")")
                where.append((f, op, items))
            elif op == "BETWEEN":
                lo = value()
                take("word", "AND", "query_error.EXPECTED_AND")
                where.append((f, op, (lo, value())))
            elif op in ("=", "!=", "<", ">", "<=", ">=", "LIKE", "NOT LIKE"):
                where.append((f, op, value()))
            else:
                raise ApiError("query_error.BAD_OPERATOR", f"operator {op!r}")
            if not peek("word", "AND"):
                break
            take()
    order: list[tuple[str, bool]] = []
    if peek("word", "ORDER"):
        take()
        take("word", "BY", "query_error.EXPECTED_BY")
        while True:
            f = take("word")
            desc = False
            if peek("word", "DESC") or peek("word", "ASC"):
                desc = take().upper() == "DESC"
            order.append((f, desc))
            if not peek("op", ","):
                break
            take()
    limit = None
    if peek("word", "LIMIT"):
        take()
        limit = int(take("num", code="query_error.BAD_LIMIT_VALUE"))
    if i != len(toks):
        raise ApiError("query_error.UNEXPECTED_INPUT", f"unexpected {toks[i][1]!r}")
    return Query(fields, resource, where, order, limit)


def like(pattern: str) -> re.Pattern[str]:
    out, j = "", 0
    while j < len(pattern):
        ch = pattern[j]
        if ch == "[" and j + 2 < len(pattern) and pattern[j + 2] == "]":
            out += re.escape(pattern[j + 1])
            j += 3
            continue
        out += ".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
        j += 1
    return re.compile(f"^{out}$", re.S)


def _fd(desc: Any, name: str) -> Any:
    """A field by its API name (proto-plus renames fields that are Python keywords: ``type`` -> ``type_``)."""
    return desc.fields_by_name.get(name) or desc.fields_by_name.get(name + "_")


def field_value(ctx: dict[str, Any], path: str) -> Any:
    """A row's value at ``path`` (enums by name, repeated fields as lists)."""
    head, *rest = path.split(".")
    msg = ctx.get(head)
    if msg is None:
        return None
    for part in rest[:-1]:
        fd = _fd(msg.DESCRIPTOR, part)
        if fd is None:
            raise ApiError("query_error.UNRECOGNIZED_FIELD", f"unrecognized field {path}")
        msg = getattr(msg, fd.name)
    fd = _fd(msg.DESCRIPTOR, rest[-1]) if rest else None
    if fd is None:
        raise ApiError("query_error.UNRECOGNIZED_FIELD", f"unrecognized field {path}")
    v = getattr(msg, fd.name)
    if fd.enum_type is not None:
        if fd.is_repeated:
            return [fd.enum_type.values_by_number[x].name for x in v]
        return fd.enum_type.values_by_number[v].name if v in fd.enum_type.values_by_number else str(v)
    if fd.is_repeated:
        return list(v)
    return v


def copy_path(src: Any, dst: Any, parts: list[str]) -> None:
    for part in parts[:-1]:
        part = _fd(src.DESCRIPTOR, part).name
        if not src.HasField(part):
            return
        src, dst = getattr(src, part), getattr(dst, part)
    fd = _fd(src.DESCRIPTOR, parts[-1])
    leaf = fd.name
    if fd.is_repeated:
        getattr(dst, leaf).extend(getattr(src, leaf))
    elif fd.message_type is not None:
        if src.HasField(leaf):
            getattr(dst, leaf).CopyFrom(getattr(src, leaf))
    elif fd.has_presence:
        if src.HasField(leaf):
            setattr(dst, leaf, getattr(src, leaf))
    else:
        setattr(dst, leaf, getattr(src, leaf))


def check_field(path: str) -> None:
    head, *rest = path.split(".")
    fd = Row.DESCRIPTOR.fields_by_name.get(head)
    if fd is None or fd.message_type is None or not rest:
        raise ApiError("query_error.UNRECOGNIZED_FIELD", f"unrecognized field {path}")
    desc = fd.message_type
    for part in rest:
        f = _fd(desc, part) if desc is not None else None
        if f is None:
            raise ApiError("query_error.UNRECOGNIZED_FIELD", f"unrecognized field {path}")
        desc = f.message_type


def matches(ctx: dict[str, Any], where: list[tuple[str, str, Any]]) -> bool:
    for f, op, want in where:
        v = field_value(ctx, f)
        if op == "=":
            ok = v == want
        elif op == "!=":
            ok = v != want
        elif op == "IN":
            ok = v in want
        elif op == "NOT IN":
            ok = v not in want
        elif op == "LIKE":
            ok = isinstance(v, str) and bool(like(str(want)).match(v))
        elif op == "NOT LIKE":
            ok = not (isinstance(v, str) and like(str(want)).match(v))
        elif op == "BETWEEN":
            ok = want[0] <= v <= want[1]
        else:
            ok = {"<": v < want, ">": v > want, "<=": v <= want, ">=": v >= want}[op]
        if not ok:
            return False
    return True


# -- the server ---------------------------------------------------------------------------------
class FakeGoogleAds:
    """In-memory Google Ads accounts behind a gRPC server (TLS) and an HTTP server on 127.0.0.1."""

    def __init__(
        self,
        *,
        customer_id: str = CUSTOMER,
        currency: str = "USD",
        time_zone: str = "America/New_York",
        login_customer_id: str | None = MANAGER,
        seed: int = 7,
        fault_rate: float = 0.0,
        batch_rows: int = 10_000,
        min_daily_budget_micros: int = 1_000_000,
        workers: int = 8,
    ) -> None:
        self.lock = threading.RLock()
        self.customer_id = customer_id
        self.login_customer_id = login_customer_id
        self.currency = currency
        self.unit_micros = {0: 1_000_000, 2: 10_000, 3: 1_000}[3 if currency in ("BHD", "KWD", "OMR") else 0 if currency in ("JPY", "KRW", "CLP") else 2]  # fmt: skip
        self.min_daily_budget_micros = min_daily_budget_micros
        self.batch_rows = batch_rows
        self.customers: dict[str, Any] = {}
        self.store: dict[str, dict[str, Any]] = {k: {} for k in MESSAGES}
        self.images: dict[str, bytes] = {}  # asset resource name -> bytes
        self.image_size: dict[str, tuple[int, int]] = {}
        self.metrics: dict[tuple[str, str], dict[str, Any]] = {}  # (ad group ad rn, day) -> metrics
        self.labels: dict[tuple[str, str], str] = {}  # (ad group ad rn, asset rn) -> performance label
        self.main: set[str] = set()  # campaigns delivering by impressions (the advertiser's own)
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.fault_rate = fault_rate
        self.fault_rng = np.random.default_rng([seed, 5])
        self.random_faults: list[str] = []
        self.rng = np.random.default_rng(seed)
        self.ctr: Callable[[Any, date], float] = lambda ad, day: 0.01
        self.cpm_micros = 2_000_000  # per 1000 impressions
        self.overdelivery = 2.0  # Google may spend up to twice a daily budget on a day
        self.access_tokens: set[str] = set()
        self.developer_token = DEVELOPER_TOKEN
        self._seq = 1000
        self.add_customer(customer_id, currency, time_zone)
        cert, key = trusted_pair()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        self.server.add_generic_rpc_handlers([self._handlers()])
        self.port = self.server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        self.http = _QuietServer(("127.0.0.1", 0), self._http_handler())
        self.http.daemon_threads = True
        self._http_thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return f"{self.http_url}/token"

    def start(self) -> FakeGoogleAds:
        self.server.start()
        self._http_thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)  # fmt: skip
        self._http_thread.start()
        return self

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> FakeGoogleAds:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding and inspection ---------------------------------------------------------
    def add_customer(self, customer_id: str, currency: str = "USD", time_zone: str = "UTC") -> None:
        c = Customer(resource_name=f"customers/{customer_id}", id=int(customer_id), currency_code=currency,
                     time_zone=time_zone, descriptive_name=f"account {customer_id}")  # fmt: skip
        self.customers[customer_id] = c

    def new_id(self) -> int:
        with self.lock:
            self._seq += 1
            return 100_000 + self._seq

    def of(self, kind: str, **where: Any) -> list[Any]:
        """Stored objects of a kind whose fields equal ``where`` (enums by name)."""
        with self.lock:
            out = []
            for msg in self.store[kind].values():
                ctx = {kind: msg}
                if all(field_value(ctx, f"{kind}.{k}") == v for k, v in where.items()):
                    out.append(msg)
            return out

    def named(self, kind: str, name: str) -> list[Any]:
        if kind == "ad_group_ad":
            return [a for a in self.store[kind].values() if a.ad.name == name]
        return [o for o in self.store[kind].values() if o.name == name]

    def get(self, rn: str) -> Any:
        for store in self.store.values():
            if rn in store:
                return store[rn]
        raise KeyError(rn)

    def calls(self, method: str | None = None, contains: str = "") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if (method is None or s.method == method) and contains in s.text]

    def ad_rn(self, ad_id: str) -> str:
        """The ad group ad's resource name of a loop ad id (``<ad group>-<ad>``)."""
        return f"customers/{self.customer_id}/adGroupAds/{ad_id.replace('-', '~')}"

    def set_metrics(self, aga: str, day: date, **values: Any) -> None:
        with self.lock:
            self.metrics[(aga, day.isoformat())] = {"conversions_by_action": {}, **values}

    # -- delivery ---------------------------------------------------------------------------
    def deliver(self, day: date, main_impressions: int = 20000) -> None:
        """One day: the advertiser's campaigns by impressions, test campaigns by budget."""
        with self.lock:
            cust = self.customer_id
            action = f"customers/{cust}/conversionActions/{CONVERSION_ACTION}"
            for camp_rn, camp in list(self.store["campaign"].items()):
                if _enum(camp, "status") != "ENABLED":
                    continue
                if camp.HasField("end_date_time") and camp.end_date_time and day.isoformat() > camp.end_date_time[:10]:
                    continue
                groups = [g for g in self.store["ad_group"].values() if g.campaign == camp_rn and _enum(g, "status") == "ENABLED"]  # fmt: skip
                ads = [
                    (rn, a) for rn, a in self.store["ad_group_ad"].items()
                    if a.ad_group in {g.resource_name for g in groups} and _enum(a, "status") == "ENABLED"
                ]  # fmt: skip
                if not ads:
                    continue
                if camp_rn in self.main:
                    impressions = int(main_impressions)
                    cost = impressions * self.cpm_micros // 1000
                else:
                    budget = self.store["campaign_budget"][camp.campaign_budget].amount_micros
                    cost = int(budget * min(self.overdelivery, float(self.rng.lognormal(0.1, 0.3))))
                    impressions = cost * 1000 // self.cpm_micros
                for rn, ad in ads:
                    n = impressions // len(ads)
                    clicks = int(self.rng.binomial(n, min(0.5, self.ctr(ad, day)))) if n else 0
                    conv = round(clicks * 0.1, 2)
                    self.metrics[(rn, day.isoformat())] = {
                        "impressions": n, "clicks": clicks, "cost_micros": cost // len(ads) + 3,
                        "conversions": conv, "all_conversions": conv, "conversions_by_action": {action: conv},
                    }  # fmt: skip

    # -- gRPC ---------------------------------------------------------------------------------
    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "SearchStream": grpc.unary_stream_rpc_method_handler(
                    self._search_stream,
                    request_deserializer=gas.SearchGoogleAdsStreamRequest.pb().FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                ),
                "Mutate": grpc.unary_unary_rpc_method_handler(
                    self._mutate,
                    request_deserializer=gas.MutateGoogleAdsRequest.pb().FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                ),
            },
        )

    def _request_id(self) -> str:
        return f"req-{self.new_id()}"

    def _abort(self, context: grpc.ServicerContext, errors: list[ApiError], status: grpc.StatusCode | None = None) -> None:  # fmt: skip
        request_id = self._request_id()
        failure = Failure(request_id=request_id)
        for e in errors:
            failure.errors.append(e.to_error())
        context.set_trailing_metadata([(FAILURE_KEY, failure.SerializeToString()), ("request-id", request_id)])
        context.abort(status or errors[0].status, errors[0].message)

    def _check_auth(self, context: grpc.ServicerContext, customer_id: str) -> dict[str, str]:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        auth = md.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            raise ApiError("authentication_error.OAUTH_TOKEN_INVALID", "OAuth token in the header is not valid.",
                           status=grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip
        if md.get("developer-token") != self.developer_token:
            raise ApiError("authentication_error.DEVELOPER_TOKEN_INVALID", "The developer token is not valid.",
                           status=grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip
        if customer_id not in self.customers:
            raise ApiError("authentication_error.CUSTOMER_NOT_FOUND", f"No customer found for {customer_id}.",
                           status=grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip
        if self.login_customer_id and md.get("login-customer-id") != self.login_customer_id:
            raise ApiError("authorization_error.USER_PERMISSION_DENIED", "User doesn't have permission to access customer. "
                           "Note: If you're accessing a client customer, the manager's customer id must be set in the "
                           "'login-customer-id' header.", status=grpc.StatusCode.PERMISSION_DENIED)  # fmt: skip
        return md

    def _fault(self, method: str, text: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(method, text):
                    if f.times is not None:
                        f.times -= 1
                    return f
            if self.fault_rate and self.fault_rng.random() < self.fault_rate:
                kinds = ["quota", "internal", "unavailable", "slow"] + (["lost"] if method == "Mutate" else ["cut"])
                kind = str(self.fault_rng.choice(kinds))
                self.random_faults.append(kind)
                if kind == "cut":
                    return Fault("unavailable", after_rows=0)
                return Fault(kind)
        return None

    def _raise_fault(self, f: Fault, context: grpc.ServicerContext) -> None:
        if f.kind == "quota":
            self._abort(context, [ApiError("quota_error.RESOURCE_TEMPORARILY_EXHAUSTED",
                                           "Too many requests. Retry in 1 seconds.", retry_delay=1)],
                        grpc.StatusCode.RESOURCE_EXHAUSTED)  # fmt: skip
        if f.kind == "internal":
            self._abort(context, [ApiError("internal_error.INTERNAL_ERROR", "Internal error encountered.")], grpc.StatusCode.INTERNAL)  # fmt: skip
        if f.kind == "concurrent":
            self._abort(context, [ApiError("database_error.CONCURRENT_MODIFICATION", "Multiple requests were attempting to modify the same resource at once. Retry the request.")], grpc.StatusCode.ABORTED)  # fmt: skip
        if f.kind == "auth":
            self._abort(context, [ApiError("authentication_error.AUTHENTICATION_ERROR", "Authentication of the request failed.")], grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip
        if f.kind == "custom":
            self._abort(context, [ApiError(f.code, "injected", status=f.status)])
        context.abort(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")

    def _search_stream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            md = self._check_auth(context, request.customer_id)
        except ApiError as e:
            self._abort(context, [e])
        with self.lock:
            self.seen.append(Seen("SearchStream", request.customer_id, request.query, md))
        fault = self._fault("SearchStream", request.query)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.after_rows is None:
            self._raise_fault(fault, context)
        try:
            q = parse(request.query)
            rows = self.rows(request.customer_id, q)
        except ApiError as e:
            self._abort(context, [e])
        request_id = self._request_id()
        sent = 0
        for start in range(0, max(1, len(rows)), self.batch_rows):
            if fault is not None and fault.after_rows is not None and sent >= fault.after_rows:
                self._raise_fault(fault, context)
            batch = gas.SearchGoogleAdsStreamResponse.pb()(request_id=request_id)
            batch.results.extend(rows[start : start + self.batch_rows])
            batch.field_mask.paths.extend(q.fields)
            sent += len(batch.results)
            yield batch
        if fault is not None and fault.after_rows is not None:
            self._raise_fault(fault, context)

    def rows(self, customer_id: str, q: Query) -> list[Any]:
        """The rows of a parsed query (the GAQL subset of the module docstring)."""
        for f in q.fields + [w[0] for w in q.where] + [o[0] for o in q.order]:
            check_field(f)
        selected = set(q.fields) | {w[0] for w in q.where}
        if any(f.startswith("metrics.") for f in selected) and q.resource not in ("ad_group_ad",):
            raise ApiError("query_error.PROHIBITED_METRIC_IN_SELECT_OR_WHERE_CLAUSE", f"metrics from {q.resource} are not in this fake")  # fmt: skip
        by_action = any(f == "segments.conversion_action" for f in selected)
        if by_action and any(f in selected for f in ("metrics.impressions", "metrics.clicks", "metrics.cost_micros")):
            raise ApiError("query_error.PROHIBITED_METRIC_IN_SELECT_OR_WHERE_CLAUSE",
                           "Cannot select or filter on metrics.impressions with segments.conversion_action")  # fmt: skip
        dated = any(f.startswith(("metrics.", "segments.")) for f in selected)
        if dated and "segments.date" not in selected:
            raise ApiError("query_error.REQUIRED_SEGMENT_FIELD_MISSING", "this fake needs segments.date with metrics")
        with self.lock:
            out = [self._row(q.fields, ctx) for ctx in self._contexts(customer_id, q.resource, dated, by_action) if matches(ctx, q.where)]  # fmt: skip
        for f, desc in reversed(q.order):
            out.sort(key=lambda r, f=f: field_value({k.name: getattr(r, k.name) for k in Row.DESCRIPTOR.fields}, f), reverse=desc)  # fmt: skip
        return out[: q.limit] if q.limit is not None else out

    def _row(self, fields: list[str], ctx: dict[str, Any]) -> Any:
        row = Row()
        for f in fields:
            head, *rest = f.split(".")
            if ctx.get(head) is not None:
                copy_path(ctx[head], getattr(row, head), rest)
        return row

    def _contexts(self, customer_id: str, resource: str, dated: bool, by_action: bool) -> Iterator[dict[str, Any]]:
        prefix = f"customers/{customer_id}/"
        cust = self.customers[customer_id]
        s = self.store

        def mine(kind: str) -> Iterator[tuple[str, Any]]:
            for rn, msg in s[kind].items():
                if rn.startswith(prefix):
                    yield rn, msg

        if resource == "customer":
            yield {"customer": cust}
        elif resource == "campaign":
            for _, c in mine("campaign"):
                yield {"campaign": c, "campaign_budget": s["campaign_budget"].get(c.campaign_budget), "customer": cust}
        elif resource == "campaign_budget":
            for _, b in mine("campaign_budget"):
                yield {"campaign_budget": b, "customer": cust}
        elif resource == "campaign_criterion":
            for _, cc in mine("campaign_criterion"):
                yield {"campaign_criterion": cc, "campaign": s["campaign"].get(cc.campaign), "customer": cust}
        elif resource == "ad_group":
            for _, g in mine("ad_group"):
                yield {"ad_group": g, "campaign": s["campaign"].get(g.campaign), "customer": cust}
        elif resource == "ad_group_criterion":
            for _, gc in mine("ad_group_criterion"):
                g = s["ad_group"].get(gc.ad_group)
                yield {
                    "ad_group_criterion": gc,
                    "ad_group": g,
                    "campaign": s["campaign"].get(g.campaign) if g else None,
                }
        elif resource == "asset":
            for _, a in mine("asset"):
                yield {"asset": a, "customer": cust}
        elif resource == "ad_group_ad":
            segments_cls = Row.DESCRIPTOR.fields_by_name["segments"].message_type._concrete_class
            metrics_cls = Row.DESCRIPTOR.fields_by_name["metrics"].message_type._concrete_class
            by_ad: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            if dated:
                for (rn, day), m in self.metrics.items():
                    by_ad.setdefault(rn, []).append((day, m))
            for rn, a in mine("ad_group_ad"):
                g = s["ad_group"].get(a.ad_group)
                base = {"ad_group_ad": a, "ad_group": g, "campaign": s["campaign"].get(g.campaign) if g else None, "customer": cust}  # fmt: skip
                if not dated:
                    yield base
                    continue
                for day, m in sorted(by_ad.get(rn, ())):
                    if by_action:
                        for action, n in sorted(m.get("conversions_by_action", {}).items()):
                            yield {**base, "segments": segments_cls(date=day, conversion_action=action),
                                   "metrics": metrics_cls(conversions=n, all_conversions=n)}  # fmt: skip
                    else:
                        yield {**base, "segments": segments_cls(date=day), "metrics": metrics_cls(
                            impressions=m["impressions"], clicks=m["clicks"], cost_micros=m["cost_micros"],
                            conversions=m.get("conversions", 0.0), all_conversions=m.get("all_conversions", 0.0))}  # fmt: skip
        elif resource == "ad_group_ad_asset_view":
            for rn, a in mine("ad_group_ad"):
                g = s["ad_group"].get(a.ad_group)
                dg = a.ad.demand_gen_multi_asset_ad
                for slot, (field_type, *_r) in SLOTS.items():
                    for img in getattr(dg, slot):
                        view = AssetView(
                            resource_name=f"{rn}~{img.asset.rsplit('/', 1)[-1]}~{field_type}",
                            ad_group_ad=rn, asset=img.asset, enabled=True,
                        )  # fmt: skip
                        view.field_type = _enum_number(view, "field_type", field_type)
                        view.performance_label = _enum_number(view, "performance_label", self.labels.get((rn, img.asset), "PENDING"))  # fmt: skip
                        yield {"ad_group_ad_asset_view": view, "ad_group_ad": a, "ad_group": g,
                               "campaign": s["campaign"].get(g.campaign) if g else None,
                               "asset": s["asset"].get(img.asset), "customer": cust}  # fmt: skip
        else:
            raise ApiError("query_error.BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"resource {resource!r} is not in this fake")

    # -- Mutate -----------------------------------------------------------------------------------
    def _mutate(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            md = self._check_auth(context, request.customer_id)
        except ApiError as e:
            self._abort(context, [e])
        kinds = [op.WhichOneof("operation") or "" for op in request.mutate_operations]
        text = " ".join(f"{k}.{getattr(op, k).WhichOneof('operation') if k else ''}" for k, op in zip(kinds, request.mutate_operations, strict=True))  # fmt: skip
        with self.lock:
            self.seen.append(Seen("Mutate", request.customer_id, text, md, request.partial_failure, len(kinds)))
        fault = self._fault("Mutate", text)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind != "lost":
            self._raise_fault(fault, context)
        with self.lock:
            try:
                response = self.apply(request)
            except ApiError as e:
                self._abort(context, [e])
        if fault is not None:  # "lost": applied, but the answer never arrives
            context.abort(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
        context.set_trailing_metadata([("request-id", self._request_id())])
        return response

    def apply(self, request: Any) -> Any:
        """Run a MutateGoogleAdsRequest: all or nothing, or per operation with partial failure."""
        customer = request.customer_id
        if not request.mutate_operations:
            raise ApiError("request_error.OPERATION_REQUIRED", "At least one operation is required.")
        response = gas.MutateGoogleAdsResponse.pb()()
        temp: dict[str, str] = {}
        errors: list[ApiError] = []
        # Stored messages are never changed in place: a copy of the dicts is a snapshot.
        work = {k: dict(v) for k, v in self.store.items()}
        images: dict[str, bytes] = {}
        for i, op in enumerate(request.mutate_operations):
            if request.partial_failure:
                work, images = {k: dict(v) for k, v in self.store.items()}, {}
            try:
                result = self._operation(customer, op, work, temp, images)
            except ApiError as e:
                e.operation = i
                if not request.partial_failure:
                    raise  # nothing of the request is applied
                errors.append(e)
                response.mutate_operation_responses.add()
                continue
            response.mutate_operation_responses.append(result)
            if request.partial_failure:
                self.store = work
                self.images.update(images)
        if not request.partial_failure:
            self.store = work
            self.images.update(images)
        if errors:
            failure = Failure()
            for e in errors:
                failure.errors.append(e.to_error())
            status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=errors[0].message)
            detail = any_pb2.Any()
            detail.Pack(failure)
            status.details.append(detail)
            response.partial_failure_error.CopyFrom(status)
        return response

    def _operation(self, customer: str, op: Any, work: dict[str, dict[str, Any]], temp: dict[str, str], images: dict[str, bytes]) -> Any:  # fmt: skip
        kind_op = op.WhichOneof("operation")
        resp = gas.MutateOperationResponse.pb()()
        kind = kind_op[: -len("_operation")] if kind_op else ""
        if kind not in MESSAGES:
            raise ApiError("mutate_error.MUTATE_NOT_ALLOWED", f"operation {kind_op!r} is not in this fake")
        sub = getattr(op, kind_op)
        which = sub.WhichOneof("operation")
        if which == "create":
            rn = self._create(customer, kind, sub.create, work, temp, images)
        elif which == "update":
            rn = self._update(customer, kind, sub.update, list(sub.update_mask.paths), work, temp)
        else:
            raise ApiError("mutate_error.MUTATE_NOT_ALLOWED", f"{which} is not in this fake")
        getattr(resp, f"{kind}_result").resource_name = rn
        return resp

    def _resolve(self, customer: str, kind: str, rn: str, work: dict[str, dict[str, Any]], temp: dict[str, str]) -> str:
        rn = temp.get(rn, rn)
        m = _RN[kind].match(rn)
        if not m:
            raise ApiError("request_error.RESOURCE_NAME_MALFORMED", f"Resource name {rn!r} is malformed for {kind}.")
        if m.group(1) != customer:
            raise ApiError("request_error.INVALID_CUSTOMER_ID", f"{rn} is not in customer {customer}.")
        if rn not in work[kind]:
            raise ApiError("mutate_error.RESOURCE_NOT_FOUND", f"{rn} was not found.")
        return rn

    def _create(self, customer: str, kind: str, msg: Any, work: dict[str, dict[str, Any]], temp: dict[str, str], images: dict[str, bytes]) -> str:  # fmt: skip
        new = type(msg)()
        new.CopyFrom(msg)
        given = new.resource_name
        if given:
            m = _RN[kind].match(given) if kind in ("asset", "campaign_budget", "campaign", "ad_group") else None
            if not m or not m.group(2).startswith("-"):
                raise ApiError("request_error.RESOURCE_NAME_MALFORMED", f"a created {kind} takes a temporary id, got {given!r}")  # fmt: skip
            if m.group(1) != customer:
                raise ApiError("request_error.INVALID_CUSTOMER_ID", f"{given} is not in customer {customer}.")
        rid = self.new_id()
        coll = COLLECTIONS[kind]
        if kind == "asset":
            self._check_asset(new)
            rn = f"customers/{customer}/{coll}/{rid}"
            new.id = rid
            data = new.image_asset.data
            images[rn] = data
            with Image.open(io.BytesIO(data)) as img:
                self.image_size[rn] = img.size
                new.image_asset.mime_type = _enum_number(new.image_asset, "mime_type", f"IMAGE_{img.format}")
            new.image_asset.file_size = len(data)
            new.image_asset.ClearField("data")  # Google never returns the bytes, only a URL
            new.image_asset.full_size.url = f"{self.http_url}/img/{rid}"
            new.image_asset.full_size.width_pixels, new.image_asset.full_size.height_pixels = self.image_size[rn]
        elif kind == "campaign_budget":
            self._check_budget(new)
            if any(b.name == new.name and _enum(b, "status") != "REMOVED" for b in work[kind].values()):
                raise ApiError("campaign_budget_error.DUPLICATE_NAME", f"Budget name {new.name!r} already exists.")
            rn = f"customers/{customer}/{coll}/{rid}"
            new.id = rid
            new.status = _enum_number(new, "status", "ENABLED")
        elif kind == "campaign":
            if not new.name:
                raise ApiError("request_error.REQUIRED_FIELD_MISSING", "campaign.name is required.")
            if any(c.name == new.name and _enum(c, "status") != "REMOVED" for c in work[kind].values()):
                raise ApiError("campaign_error.DUPLICATE_CAMPAIGN_NAME", f"Campaign name {new.name!r} already exists.")
            new.campaign_budget = self._resolve(customer, "campaign_budget", new.campaign_budget, work, temp)
            budget = work["campaign_budget"][new.campaign_budget]
            if _enum(new, "advertising_channel_type") == "DEMAND_GEN" and budget.explicitly_shared:
                raise ApiError("campaign_error.CAMPAIGN_CANNOT_USE_SHARED_BUDGET", "Demand Gen campaigns cannot use a shared budget.")  # fmt: skip
            if not new.WhichOneof("campaign_bidding_strategy"):
                raise ApiError("request_error.REQUIRED_FIELD_MISSING", "campaign.campaign_bidding_strategy is required.")  # fmt: skip
            self._check_dates(new)
            rn = f"customers/{customer}/{coll}/{rid}"
            new.id = rid
            new.bidding_strategy_type = _enum_number(new, "bidding_strategy_type", BIDDING_TYPES.get(new.WhichOneof("campaign_bidding_strategy") or "", "UNKNOWN"))  # fmt: skip
        elif kind == "ad_group":
            new.campaign = self._resolve(customer, "campaign", new.campaign, work, temp)
            camp = work["campaign"][new.campaign]
            if not new.name:
                raise ApiError("ad_group_error.MISSING_ADGROUP_NAME", "ad_group.name is required.")
            if any(g.campaign == new.campaign and g.name == new.name for g in work[kind].values()):
                raise ApiError("ad_group_error.DUPLICATE_ADGROUP_NAME", f"Ad group name {new.name!r} already exists in the campaign.")  # fmt: skip
            if _enum(camp, "advertising_channel_type") == "DEMAND_GEN" and _enum(camp, "contains_eu_political_advertising") not in ("CONTAINS_EU_POLITICAL_ADVERTISING", "DOES_NOT_CONTAIN_EU_POLITICAL_ADVERTISING"):  # fmt: skip
                raise ApiError("ad_group_error.MISSING_EU_POLITICAL_ADVERTISING_SELF_DECLARATION",
                               "Demand Gen campaigns require EU political advertising self-declaration.")  # fmt: skip
            rn = f"customers/{customer}/{coll}/{rid}"
            new.id = rid
        elif kind == "ad_group_ad":
            new.ad_group = self._resolve(customer, "ad_group", new.ad_group, work, temp)
            self._check_ad(customer, new, work, temp, images)
            ad_id = self.new_id()
            new.ad.id = ad_id
            new.ad.type_ = _enum_number(new.ad, "type_", "DEMAND_GEN_MULTI_ASSET_AD")
            rn = f"customers/{customer}/{coll}/{new.ad_group.rsplit('/', 1)[1]}~{ad_id}"
            new.ad.resource_name = f"customers/{customer}/ads/{ad_id}"
        elif kind == "campaign_criterion":
            new.campaign = self._resolve(customer, "campaign", new.campaign, work, temp)
            if not new.WhichOneof("criterion"):
                raise ApiError("request_error.REQUIRED_FIELD_MISSING", "criterion is required.")
            rn = f"customers/{customer}/{coll}/{new.campaign.rsplit('/', 1)[1]}~{rid}"
            new.criterion_id = rid
            new.type_ = _enum_number(new, "type_", new.WhichOneof("criterion").upper())
        else:  # ad_group_criterion
            new.ad_group = self._resolve(customer, "ad_group", new.ad_group, work, temp)
            if not new.WhichOneof("criterion"):
                raise ApiError("request_error.REQUIRED_FIELD_MISSING", "criterion is required.")
            rn = f"customers/{customer}/{coll}/{new.ad_group.rsplit('/', 1)[1]}~{rid}"
            new.criterion_id = rid
            new.type_ = _enum_number(new, "type_", new.WhichOneof("criterion").upper())
        new.resource_name = rn
        if given:
            temp[given] = rn
        work[kind][rn] = new
        return rn

    def _update(self, customer: str, kind: str, msg: Any, paths: list[str], work: dict[str, dict[str, Any]], temp: dict[str, str]) -> str:  # fmt: skip
        rn = self._resolve(customer, kind, msg.resource_name, work, temp)
        if not paths:
            raise ApiError("field_mask_error.FIELD_MASK_MISSING", "The update mask is missing.")
        new = type(msg)()
        new.CopyFrom(work[kind][rn])
        for p in paths:
            try:
                parts = p.split(".")
                desc = new.DESCRIPTOR
                for part in parts:
                    fd = _fd(desc, part)
                    desc = fd.message_type
            except AttributeError:
                raise ApiError("field_mask_error.FIELD_NOT_FOUND", f"field {p!r} not found") from None
            if p not in UPDATABLE.get(kind, ()):
                raise ApiError("mutate_error.MUTATE_NOT_ALLOWED", f"updating {kind}.{p} is not in this fake")
            copy_path(msg, new, parts)
        if kind == "campaign_budget":
            self._check_budget(new)
        if kind == "campaign":
            self._check_dates(new)
        work[kind][rn] = new
        return rn

    def _check_budget(self, b: Any) -> None:
        if b.amount_micros < 0:
            raise ApiError("campaign_budget_error.NEGATIVE_MONEY_AMOUNT", "The budget amount is negative.")
        if b.amount_micros % self.unit_micros:
            raise ApiError("campaign_budget_error.NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT",
                           f"amount_micros {b.amount_micros} is not a multiple of {self.unit_micros}.")  # fmt: skip
        if b.amount_micros < self.min_daily_budget_micros:
            raise ApiError("campaign_budget_error.BUDGET_BELOW_PER_DAY_MINIMUM",
                           f"The budget is below the per-day minimum of {self.min_daily_budget_micros} micros.",
                           minimum_budget_micros=self.min_daily_budget_micros)  # fmt: skip

    def _check_dates(self, c: Any) -> None:
        for f in ("start_date_time", "end_date_time"):
            if c.HasField(f) and getattr(c, f) and not _DATE_TIME.match(getattr(c, f)):
                raise ApiError("date_error.INVALID_STRING_DATE_TIME_SECONDS", f"{f} {getattr(c, f)!r}: expected yyyy-MM-dd HH:mm:ss")  # fmt: skip

    def _check_asset(self, a: Any) -> None:
        if _enum(a, "type_") != "IMAGE" or not a.image_asset.data:
            raise ApiError("mutate_error.MUTATE_NOT_ALLOWED", "only image assets with data are in this fake")
        try:
            with Image.open(io.BytesIO(a.image_asset.data)) as img:
                img.verify()
        except Exception:
            raise ApiError("image_error.INVALID_IMAGE", "The image is not valid.") from None

    def _check_ad(self, customer: str, aga: Any, work: dict[str, dict[str, Any]], temp: dict[str, str], images: dict[str, bytes]) -> None:  # fmt: skip
        ad = aga.ad
        if not ad.HasField("demand_gen_multi_asset_ad"):
            raise ApiError("mutate_error.MUTATE_NOT_ALLOWED", "only Demand Gen image ads are in this fake")
        dg = ad.demand_gen_multi_asset_ad
        if not ad.final_urls:
            raise ApiError("ad_error.CANNOT_SET_WITHOUT_FINAL_URLS", "final_urls are required.")
        if not dg.marketing_images and not dg.square_marketing_images:
            raise ApiError("ad_error.MISSING_MARKETING_IMAGE_OR_PRODUCT_VIDEOS", "A marketing image or a square marketing image is required.")  # fmt: skip
        if not dg.headlines or not dg.descriptions:
            raise ApiError("ad_error.MISSING_HEADLINE" if not dg.headlines else "ad_error.MISSING_DESCRIPTION1", "headlines and descriptions are required.")  # fmt: skip
        if not dg.business_name:
            raise ApiError("ad_error.MISSING_BUSINESS_NAME", "business_name is required.")
        if not dg.logo_images:
            raise ApiError("ad_error.MISSING_IMAGE", "A logo image is required.")
        for slot, (_, ratio, min_w, min_h) in SLOTS.items():
            for img in getattr(dg, slot):
                img.asset = self._resolve(customer, "asset", img.asset, work, temp)
                w, h = self.image_size.get(img.asset) or _size(images[img.asset])
                if abs(w / h / ratio - 1) > 0.01:
                    raise ApiError("image_error.ASPECT_RATIO_NOT_ALLOWED", f"{slot}: {w}x{h} is not {ratio:.2f}:1")
                if w < min_w or h < min_h:
                    raise ApiError("image_error.IMAGE_TOO_SMALL", f"{slot}: {w}x{h} is below {min_w}x{min_h}")
        for img in dg.logo_images:
            img.asset = self._resolve(customer, "asset", img.asset, work, temp)

    # -- HTTP: OAuth token endpoint and image URLs ---------------------------------------------------
    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/img/"):
                    rid = self.path.rsplit("/", 1)[-1]
                    for rn, data in fake.images.items():
                        if rn.endswith(f"/assets/{rid}"):
                            self._send(200, data, f"image/{Image.open(io.BytesIO(data)).format.lower()}")
                            return
                self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/token":
                    self._send(404, b"not found", "text/plain")
                    return
                ok = (
                    form.get("grant_type") == "refresh_token" and form.get("refresh_token") == REFRESH_TOKEN
                    and form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
                )  # fmt: skip
                if not ok:
                    body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                    self._send(400, json.dumps(body).encode(), "application/json")
                    return
                token = f"ya29.fake-{fake.new_id()}"
                fake.access_tokens.add(token)
                body = {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/adwords"}  # fmt: skip
                self._send(200, json.dumps(body).encode(), "application/json")

        return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _enum(msg: Any, field_name: str) -> str:
    fd = _fd(msg.DESCRIPTOR, field_name)
    v = fd.enum_type.values_by_number.get(getattr(msg, fd.name))
    return v.name if v else ""


def _enum_number(msg: Any, field_name: str, name: str) -> int:
    fd = _fd(msg.DESCRIPTOR, field_name)
    v = fd.enum_type.values_by_name.get(name)
    if v is None:
        raise ApiError("request_error.INVALID_ENUM_VALUE", f"{field_name}: {name!r}")
    return v.number


# -- an account to test against --------------------------------------------------------------------------
CONVERSION_ACTION = 555


def png_bytes(seed: int = 0, size: tuple[int, int] = (600, 600)) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def seed_account(fake: FakeGoogleAds, ads: int = 2, image: bytes | None = None, customer: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A Demand Gen campaign with one ad group of ``ads`` image ads (the advertiser's own), criteria and assets."""
    cust = customer or fake.customer_id
    with fake.lock:
        work = fake.store
        temp: dict[str, str] = {}
        images: dict[str, bytes] = {}

        def create(kind: str, msg: Any) -> str:
            return fake._create(cust, kind, msg, work, temp, images)

        img = create("asset", Asset(name="hero image", type_=_enum_number(Asset(), "type_", "IMAGE"),
                                    image_asset={"data": image or png_bytes(1)}))  # fmt: skip
        logo = create("asset", Asset(name="logo", type_=_enum_number(Asset(), "type_", "IMAGE"),
                                     image_asset={"data": png_bytes(2, (128, 128))}))  # fmt: skip
        fake.images.update(images)
        budget = create("campaign_budget", Budget(name=f"main budget {fake.new_id()}", amount_micros=50_000_000, explicitly_shared=False))  # fmt: skip
        camp = Campaign(name=f"Demand Gen main {fake.new_id()}", campaign_budget=budget, target_spend={})
        camp.status = _enum_number(camp, "status", "ENABLED")
        camp.advertising_channel_type = _enum_number(camp, "advertising_channel_type", "DEMAND_GEN")
        camp.contains_eu_political_advertising = _enum_number(camp, "contains_eu_political_advertising", "DOES_NOT_CONTAIN_EU_POLITICAL_ADVERTISING")  # fmt: skip
        main = create("campaign", camp)
        fake.main.add(main)
        create("campaign_criterion", CampaignCriterion(campaign=main, location={"geo_target_constant": "geoTargetConstants/2840"}))  # fmt: skip
        create("campaign_criterion", CampaignCriterion(campaign=main, language={"language_constant": "languageConstants/1000"}))  # fmt: skip
        group_msg = AdGroup(name="main ad group", campaign=main)
        group_msg.status = _enum_number(group_msg, "status", "ENABLED")
        cc = group_msg.demand_gen_ad_group_settings.channel_controls
        cc.selected_channels.discover = True
        cc.selected_channels.gmail = True
        cc.selected_channels.youtube_in_feed = True
        group = create("ad_group", group_msg)
        age = AdGroupCriterion(ad_group=group)
        age.age_range.type_ = _enum_number(age.age_range, "type", "AGE_RANGE_25_34")
        create("ad_group_criterion", age)
        create("ad_group_criterion", AdGroupCriterion(ad_group=group, audience={"audience": f"customers/{cust}/audiences/77"}))  # fmt: skip
        out: dict[str, Any] = {"customer": cust, "main": main.rsplit("/", 1)[1], "ad_group": group.rsplit("/", 1)[1],
                               "image": img, "logo": logo, "ads": [], "budget": budget}  # fmt: skip
        for i in range(ads):
            aga = AdGroupAd(ad_group=group)
            aga.status = _enum_number(aga, "status", "ENABLED")
            aga.ad.name = f"hero-{i}"
            aga.ad.final_urls.append("https://example.com/offer")
            dg = aga.ad.demand_gen_multi_asset_ad
            dg.square_marketing_images.add(asset=img)
            dg.logo_images.add(asset=logo)
            dg.headlines.add(text=f"Hero {i}")
            dg.headlines.add(text="Fresh every week")
            dg.descriptions.add(text="Get the offer")
            dg.business_name = "Acme"
            dg.call_to_action_text = "Sign up"
            rn = create("ad_group_ad", aga)
            out["ads"].append(rn.rsplit("/", 1)[1].replace("~", "-"))  # the loop's ad id
        fake.conversion_action = f"customers/{cust}/conversionActions/{CONVERSION_ACTION}"
    return out


def day_range(start: date, days: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(days)]
