"""A fake Graph API server on loopback that the real ``facebook-business`` SDK talks to.

It honours what ../shared/reference/meta-graph-api.md marks [V]: versioned
URLs, node URLs with a trailing slash, edges without, ``access_token`` and
``appsecret_proof`` in the query string of every request, JSON-encoded
top-level params, cursor paging (``after``; ``next`` only when another page
exists), async report runs, ``adimages`` uploads (``bytes`` form field or a
multipart ``filename`` part), batches at ``POST /<v>/`` (more than 50
refused), usage headers on every response, and injected errors of every
class (including an HTML 502 page).

It also enforces the documented rules that a connector can get wrong, so
that the contract tests fail when it does:

- **batch grouping**: a batch holding two ad sets of one campaign is refused
  whole (Meta's batch documentation: one batch cannot contain multiple ad
  sets under the same campaign), like one of more than 50 requests;
- **edges scoped to their parent**: an edge exists only on the node types
  that have it (``/<campaign>/adcreatives`` is an error), objects are created
  only on the account's edges and only under parents of that account, and
  ``/<node>/insights`` reports that node's ads only;
- **late-committing writes** (:class:`LateCommit`): a create is carried out,
  answered only after the client has given up (or its connection dropped),
  and the object becomes visible ``visible_after`` seconds later on the
  server's ``clock`` (share the test's fake clock to make that exact);
- **ignored filters** (``ignore_filtering``): edges other than insights
  disregard ``filtering``, as Graph may for ``name``;
- **effective status**: ads in a paused ad set or campaign, disapproved ads
  and ads with issues report it in ``effective_status`` (and ``issues_info``)
  and do not deliver;
- **batch calls not run**: ``Fault(not_run=True)`` answers a call inside a
  batch with ``null`` (Graph did not run it; nothing is done), the entry the
  SDK hands back from ``execute()`` for a retry;
- **enums and offsets**: a ``status`` outside ACTIVE/PAUSED/DELETED/ARCHIVED is
  refused (code 100); spend is in whole units for Meta's offset-1 currencies
  (JPY, KRW, HUF, TWD, ... see ``OFFSET_1``), in units with cents otherwise;
- **async report runs**: "Job Not Started", "Job Running", then "Job
  Completed" at 100 %; a failed run carries ``error_code`` -2 / subcode
  2490547 "Report Failed"; the run's result is refused until it completed
  (that refusal's exact code is not verified: Graph may answer otherwise);
- **error bodies** as Graph sends them: ``message``, ``type``, ``code``,
  ``error_subcode``, ``is_transient``, ``error_user_title``,
  ``error_user_msg`` and a ``fbtrace_id`` per error.

It also delivers: :meth:`FakeGraph.deliver` turns a day of budgets, statuses
and true CTRs into insights rows, so the loop can run whole experiments
against it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
from PIL import Image

VERSION = "v26.0"
TOKEN = "EAAB-test-token-0123456789"
APP_SECRET = "fake-app-secret"


def _path_matches(pattern: str, path: str) -> bool:
    """``pattern`` occurs in ``path``; a trailing ``$`` anchors it at the end ("act_111/ads$" is not ".../adsets")."""
    return path.endswith(pattern[:-1]) if pattern.endswith("$") else pattern in path


@dataclass
class Fault:
    """Answer matching requests with an error, ``times`` times (None: forever)."""

    code: int | None = None
    subcode: int | None = None
    status: int = 400
    method: str | None = None
    path: str = ""  # substring of the path after the version, e.g. "act_111/insights" ("...$": ends there)
    times: int | None = 1
    transient: bool | None = None
    html: bool = False  # an HTML error page instead of a JSON error
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "injected"
    user_title: str | None = None  # error_user_title: Meta's explanation for people
    user_msg: str | None = None  # error_user_msg
    not_run: bool = False  # inside a batch: answered ``null`` (Graph did not run the call); never outside one

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and _path_matches(self.path, path) and self.times != 0


@dataclass
class LateCommit:
    """A write that Graph carries out but answers too late: the client gives up first.

    The request is processed at once; its answer is sent ``respond_after``
    seconds (real time) later, or never (``respond_after=None``: the connection
    is dropped, as a reset after sending); an object it creates is visible
    to reads only ``visible_after`` seconds later on the server's clock.
    """

    path: str  # substring of the path after the version, e.g. "act_111/adcreatives" ("...$": ends there)
    method: str = "POST"
    respond_after: float | None = 1.0
    visible_after: float = 3.0
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and _path_matches(self.path, path) and self.times != 0


@dataclass
class Seen:
    method: str
    path: str  # after the version, without the trailing slash
    params: dict[str, Any]
    query: str
    in_batch: bool = False


def _jsonish(value: str) -> Any:
    """Decode what the SDK JSON-encoded (dicts, lists, bools); ids and numbers stay strings."""
    if not value or value[0] not in "[{" and value not in ("true", "false"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


_TRACES = itertools.count(1)


def _bad_status(p: dict[str, Any]) -> dict | None:
    """Graph's refusal of a ``status`` outside the documented enum (None: no status, or a valid one)."""
    if "status" not in p or p["status"] in STATUSES:
        return None
    return _error(100, f"(#100) Param status must be one of {{{', '.join(STATUSES)}}}")


def _error(
    code: int | None,
    message: str,
    subcode: int | None = None,
    transient: bool | None = None,
    user_title: str | None = None,
    user_msg: str | None = None,
) -> dict:
    err: dict[str, Any] = {
        "message": message, "type": "OAuthException", "code": code, "fbtrace_id": f"AfakeTrace{next(_TRACES):05d}",
    }  # fmt: skip
    if subcode is not None:
        err["error_subcode"] = subcode
    if transient is not None:
        err["is_transient"] = transient
    if user_title is not None:
        err["error_user_title"] = user_title
    if user_msg is not None:
        err["error_user_msg"] = user_msg
    return {"error": err}


# Which edges each node type has (reads; creates go through the account's edges only).
EDGES = {
    "account": {"ads", "adsets", "adcreatives", "campaigns", "adimages", "insights"},
    "campaign": {"ads", "adsets", "insights"},
    "adset": {"ads", "insights"},
    "ad": {"insights", "adcreatives"},
    "run": {"insights"},
}
TYPE_NAMES = {"account": "AdAccount", "campaign": "Campaign", "adset": "AdSet", "ad": "Ad", "creative": "AdCreative",
              "run": "AdReportRun", "image": "AdImage"}  # fmt: skip
# Meta's currency table: these have offset 1 (no minor unit: budgets and spend in whole units); all others 100.
OFFSET_1 = frozenset({"CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"})
STATUSES = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED")  # the SDK's Ad/AdSet/Campaign.Status: all Graph takes
REVIEW = ("DISAPPROVED", "WITH_ISSUES", "PENDING_REVIEW", "IN_PROCESS", "PREAPPROVED")


HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, closed pools) are part of the tests


class FakeGraph:
    """In-memory Graph objects behind a ``ThreadingHTTPServer`` on 127.0.0.1."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        app_secret: str | None = APP_SECRET,
        account: str = "act_111",
        currency: str = "USD",
        min_daily_budget: int = 100,
        utc_offset: float = 0.0,
        seed: int = 7,
        run_polls: int = 2,
        fault_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.clock = clock  # when late-committed objects become visible
        self.app_secret = app_secret
        self.account = account
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, Any]] = {}
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.images: dict[str, bytes] = {}
        self.static: dict[str, tuple[str, bytes]] = {}  # extra files: path -> (content type, body)
        self._insights_cache: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._row_writes = 0
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.late: list[LateCommit] = []
        self._answer = threading.local()  # how the HTTP handler answers this request (late, dropped)
        self.batch_grouping = True  # refuse a batch with two ad sets of one campaign
        self.ignore_filtering = False  # edges other than insights disregard `filtering`
        self.usage: dict[str, Any] = {}
        self.run_polls = run_polls
        # Random faults at this rate on top of the scripted ones: throttling (with a
        # regain-access estimate), transient errors, HTML 502 pages, slow answers, and
        # writes carried out whose answer is lost (an HTML 502 after the fact).
        self.fault_rate = fault_rate
        self.fault_rng = np.random.default_rng([seed, 5])
        self.random_faults: list[str] = []
        self.fail_runs = False
        self.rng = np.random.default_rng(seed)
        self.ctr: Callable[[dict[str, Any], date], float] = lambda ad, day: float(ad.get("true_ctr", 0.01))
        self.cpm_minor = 800  # per 1000 impressions
        self._seq = 1000
        self.objects[account] = {
            "id": account, "type": "account", "currency": currency, "min_daily_budget": min_daily_budget,
            "timezone_offset_hours_utc": utc_offset, "account_id": account[4:],
        }  # fmt: skip
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGraph:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding --------------------------------------------------------------------
    def new_id(self) -> str:
        with self.lock:
            self._seq += 1
            return str(120000000000 + self._seq)

    def add(self, type_: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            oid = str(fields.pop("id", None) or self.new_id())
            created = datetime(2026, 1, 1) + timedelta(seconds=self._seq)
            obj = {"id": oid, "type": type_, "created_seq": self._seq,
                   "created_time": created.strftime("%Y-%m-%dT%H:%M:%S+0000"), **fields}  # fmt: skip
            self.objects[oid] = obj
            return obj

    def visible(self, obj: dict[str, Any]) -> bool:
        """Whether reads see the object yet (a late-committed write is invisible for a while)."""
        return float(obj.get("visible_at", 0.0)) <= self.clock()

    def add_image(self, data: bytes, name: str = "upload.png") -> dict[str, Any]:
        h = hashlib.md5(data).hexdigest()
        with self.lock:
            self.images[h] = data
            obj = {"id": f"{self.account[4:]}:{h}", "type": "image", "hash": h, "name": name,
                   "url": f"{self.base_url}/img/{h}.png", "account": self.account}  # fmt: skip
            self.objects[obj["id"]] = obj
        return obj

    def of_type(self, type_: str, **where: Any) -> list[dict[str, Any]]:
        """Every object of a type (visible or not yet: the tests' view, not Graph's)."""
        with self.lock:
            return [
                o for o in self.objects.values() if o["type"] == type_ and all(o.get(k) == v for k, v in where.items())
            ]

    def named(self, type_: str, name: str, live: bool = False) -> list[dict[str, Any]]:
        """Objects of a type with exactly this name (``live``: not archived or deleted)."""
        return [o for o in self.of_type(type_, name=name) if not live or o.get("status") not in ("ARCHIVED", "DELETED")]

    def effective_status(self, obj: dict[str, Any]) -> str:
        """What Graph reports as ``effective_status``: the object's own status, then its parents', then review."""
        status = str(obj.get("status") or "ACTIVE")
        if status != "ACTIVE":
            return status
        if obj["type"] in ("ad", "adset"):
            camp = self.objects.get(str(obj.get("campaign_id")), {})
            if str(camp.get("status") or "ACTIVE") != "ACTIVE":
                return "CAMPAIGN_PAUSED"
        if obj["type"] == "ad":
            adset = self.objects.get(str(obj.get("adset_id")), {})
            if str(adset.get("status") or "ACTIVE") != "ACTIVE":
                return "ADSET_PAUSED"
            if obj.get("review") in REVIEW:
                return str(obj["review"])
        return "ACTIVE"

    def calls(self, method: str | None = None, contains: str = "", in_batch: bool | None = None) -> list[Seen]:
        with self.lock:
            return [
                s for s in self.seen
                if (method is None or s.method == method) and contains in s.path
                and (in_batch is None or s.in_batch == in_batch)
            ]  # fmt: skip

    def set_row(self, ad_id: str, day: date, **metrics: Any) -> None:
        with self.lock:
            self.rows[(ad_id, day.isoformat())] = metrics
            self._row_writes += 1

    # -- delivery -------------------------------------------------------------------
    def deliver(self, day: date, main_impressions: int = 20000) -> None:
        """One day of delivery: main ad sets by impressions, test ad sets by budget."""
        with self.lock:
            self._row_writes += 1
            for adset in self.of_type("adset"):
                if adset.get("status") != "ACTIVE" or self.effective_status(adset) != "ACTIVE":
                    continue
                ads = [a for a in self.of_type("ad", adset_id=adset["id"]) if self.effective_status(a) == "ACTIVE"]
                if not ads:
                    continue
                end = adset.get("end_time")
                if end and day >= datetime.strptime(end, "%Y-%m-%dT%H:%M:%S%z").date():
                    continue
                if adset.get("daily_budget") and not adset.get("main"):
                    budget = int(adset["daily_budget"])
                    spend = int(budget * min(1.25, float(self.rng.lognormal(0.0, 0.1))))
                    impressions = spend * 1000 // self.cpm_minor
                else:
                    impressions = int(main_impressions)
                    spend = impressions * self.cpm_minor // 1000
                for ad in ads:
                    n = impressions // len(ads)
                    clicks = int(self.rng.binomial(n, min(0.5, self.ctr(ad, day)))) if n else 0
                    self.rows[(ad["id"], day.isoformat())] = {
                        "impressions": n, "clicks": clicks, "spend_minor": spend // len(ads),
                        "reach": int(n * 0.8), "frequency": 1.25, "conversions": clicks // 10,
                    }  # fmt: skip

    # -- HTTP ------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        graph = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def _dispatch(self, method: str) -> None:
                url = urlsplit(self.path)
                if url.path in graph.static:
                    ctype, data = graph.static[url.path]
                    self._send(200, data, {"Content-Type": ctype})
                    return
                if url.path.startswith("/img/"):
                    h = url.path[5:].split(".")[0]
                    data = graph.images.get(h)
                    if data is None:
                        self._send(404, b"not found", {"Content-Type": "text/plain"})
                    else:
                        self._send(200, data, {"Content-Type": "image/png"})
                    return
                query = dict(parse_qsl(url.query, keep_blank_values=True))
                raw = self._body() if method == "POST" else b""
                params = dict(query)
                files: dict[str, tuple[str, bytes]] = {}
                ctype = self.headers.get("Content-Type", "")
                if method == "POST" and ctype.startswith("multipart/form-data"):
                    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        filename = part.get_filename()
                        payload = part.get_payload(decode=True) or b""
                        if filename:
                            files[name] = (filename, payload)
                        else:
                            params[name] = payload.decode()
                elif method == "POST":
                    params.update(dict(parse_qsl(raw.decode(), keep_blank_values=True)))
                graph._answer.late = None
                status, headers, body = graph.handle(method, url.path, params, files, url.query)
                late: LateCommit | None = graph._answer.late
                if late is not None:
                    if late.respond_after is None:  # carried out, then the connection drops
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    time.sleep(late.respond_after)  # carried out, answered after the client gave up
                self._send(status, body, headers)

        return Handler

    def _usage_headers(self) -> dict[str, str]:
        return {name: json.dumps(doc) for name, doc in self.usage.items()}

    def handle(
        self, method: str, path: str, params: dict[str, str], files: dict[str, tuple[str, bytes]], query: str,
        in_batch: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        headers = {"Content-Type": "application/json; charset=UTF-8", **self._usage_headers()}
        parts = path.strip("/").split("/")
        if not in_batch:
            if not parts or parts[0] != VERSION:
                return 400, headers, json.dumps(_error(2635, f"unknown version in {path}")).encode()
            parts = parts[1:]
        rel = "/".join(parts)
        with self.lock:
            self.seen.append(Seen(method, rel, dict(params), query, in_batch))
        # 1. authentication, as Graph checks it on every request
        if not in_batch:
            if params.get("access_token") != self.token:
                return 400, headers, json.dumps(_error(190, "Invalid OAuth access token.", 463)).encode()
            if self.app_secret:
                want = hmac.new(self.app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest()
                if params.get("appsecret_proof") != want:
                    return 400, headers, json.dumps(_error(100, "Invalid appsecret_proof")).encode()
        # 2. injected faults
        with self.lock:
            fault = next((f for f in self.faults if not f.not_run and f.matches(method, rel)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
        if fault is None and self.fault_rate and not in_batch:
            fault = self._random_fault()
        if fault is not None:
            h = {**headers, **fault.headers}
            if fault.html:
                h["Content-Type"] = "text/html"
                if fault.message == "lost":  # the write went through; its answer did not
                    self._route(method, parts, params, files, query)
                return fault.status, h, HTML_502
            err = _error(fault.code, fault.message, fault.subcode, fault.transient, fault.user_title, fault.user_msg)
            return fault.status, h, json.dumps(err).encode()
        # 3. a late commit: carried out now, answered (or dropped) after the client's timeout
        if not in_batch:
            with self.lock:
                late = next((x for x in self.late if x.matches(method, rel)), None)
                if late is not None and late.times is not None:
                    late.times -= 1
            if late is not None:
                self._answer.late = late
                before = set(self.objects)
                status, headers2, body = self._route(method, parts, params, files, query)
                with self.lock:
                    for oid in set(self.objects) - before:
                        self.objects[oid]["visible_at"] = self.clock() + late.visible_after
                return status, {**headers, **headers2}, body
        # 4. routing
        return self._route(method, parts, params, files, query, headers)

    def _route(
        self, method: str, parts: list[str], params: dict[str, str], files: dict[str, tuple[str, bytes]], query: str,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        headers = headers or {"Content-Type": "application/json; charset=UTF-8", **self._usage_headers()}
        clean = {k: _jsonish(v) for k, v in params.items() if k not in ("access_token", "appsecret_proof")}
        try:
            status, doc = self.route(method, parts, clean, files, query)
        except KeyError as exc:
            status, doc = 400, _error(100, f"Unsupported get request. Object with ID {exc} does not exist", 33)
        return status, headers, json.dumps(doc).encode()

    def _random_fault(self) -> Fault | None:
        with self.lock:
            if self.fault_rng.random() >= self.fault_rate:
                return None
            kind = str(self.fault_rng.choice(["throttle", "transient", "html502", "slow", "lost"]))
            self.random_faults.append(kind)
        if kind == "slow":
            time.sleep(0.05)  # a slow answer, then the real one
            return None
        if kind == "throttle":
            usage = {"act_111": [{"type": "ads_management", "call_count": 100, "estimated_time_to_regain_access": 0}]}
            return Fault(
                code=17, message="User request limit reached", headers={"X-Business-Use-Case-Usage": json.dumps(usage)}
            )
        if kind == "transient":
            return Fault(code=2, message="Service temporarily unavailable", transient=True, status=500)
        return Fault(status=502, html=True, message="lost" if kind == "lost" else "injected")

    def route(
        self, method: str, parts: list[str], p: dict[str, Any], files: dict[str, tuple[str, bytes]], query: str
    ) -> tuple[int, Any]:
        parts = [x for x in parts if x]
        if not parts:
            if method == "POST" and "batch" in p:
                return self.batch(p["batch"])
            return 400, _error(100, "no node")
        node_id = parts[0]
        obj = self.objects[node_id]
        if not self.visible(obj):
            raise KeyError(node_id)  # not committed yet: Graph does not know it
        if len(parts) == 1:
            if method == "GET":
                return 200, self.node_view(obj, p)
            if method == "POST":
                return self.update(obj, p)
            return self.delete(obj)
        edge = parts[1]
        if edge not in EDGES.get(obj["type"], set()):
            kind = TYPE_NAMES.get(obj["type"], obj["type"])
            return 400, _error(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type ({kind})")
        if method == "POST" and edge != "insights" and obj["type"] != "account":
            kind = TYPE_NAMES.get(obj["type"], obj["type"])
            return 400, _error(100, f"Unsupported post request: cannot create {edge} on node type ({kind})", 33)
        if edge == "insights":
            if method == "POST":
                run = self.add("run", params={**p, "_account": node_id}, polls=0, account=node_id)
                return 200, {"report_run_id": run["id"]}
            if obj["type"] == "run":
                if self.fail_runs or obj["polls"] < self.run_polls:  # [M]: Graph's exact refusal is not verified
                    return 400, _error(100, f"(#100) Report {obj['id']} is not ready: poll it until 'Job Completed'")
                return 200, self.page(self.insight_rows(obj["params"]), p, query, self._insight_view(obj["params"], p))
            return 200, self.page(self.insight_rows({**p, "_node": node_id}), p, query, self._insight_view(p, p))
        if edge == "adimages":
            if method == "POST":
                return self.upload(p, files)
            hashes = p.get("hashes") or []
            imgs = [o for o in self.of_type("image", account=node_id) if not hashes or o["hash"] in hashes]
            return 200, self.page(imgs, p, query)
        types = {"ads": "ad", "adsets": "adset", "adcreatives": "creative", "campaigns": "campaign"}
        if method == "POST":
            return self.create(types[edge], node_id, p)
        return 200, self.page(self.children(obj, types[edge], p), p, query)

    # -- objects ----------------------------------------------------------------------
    def node_view(self, obj: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        if obj["type"] == "run":
            with self.lock:
                obj["polls"] += 1
                done = obj["polls"] >= self.run_polls
            if self.fail_runs:  # what the Insights error table lists for a failed run
                return {"id": obj["id"], "async_status": "Job Failed", "async_percent_completion": 0,
                        "error_code": -2, "error_subcode": 2490547, "error_message": "Report Failed"}  # fmt: skip
            if done:
                status, pct = "Job Completed", 100
            else:
                status, pct = ("Job Not Started", 0) if obj["polls"] == 1 else ("Job Running", 50)
            return {"id": obj["id"], "async_status": status, "async_percent_completion": pct}
        return self.view(obj, p.get("fields"))

    def view(self, obj: dict[str, Any], fields: Any) -> dict[str, Any]:
        wanted = fields.split(",") if isinstance(fields, str) and fields else (fields or ["id"])
        out: dict[str, Any] = {"id": obj["id"]}
        for f in wanted:
            if f == "creative" and obj["type"] == "ad":
                out["creative"] = {"id": obj["creative_id"]}
            elif f == "effective_status" and obj["type"] in ("ad", "adset", "campaign"):
                out[f] = self.effective_status(obj)
            elif f == "issues_info" and obj["type"] == "ad":
                if obj.get("review") == "WITH_ISSUES":
                    out[f] = [{"level": "AD", "error_code": 1815869, "error_summary": obj.get("issue", "Ad has issues"),
                               "error_message": obj.get("issue", "Ad has issues")}]  # fmt: skip
            elif f in ("daily_budget", "min_daily_budget") and f in obj:
                out[f] = str(obj[f])
            elif f in obj:
                out[f] = obj[f]
        return out

    def children(self, parent: dict[str, Any], type_: str, p: dict[str, Any]) -> list[dict[str, Any]]:
        """The visible objects of one type under ``parent`` (scoped to it), filtered unless filters are ignored."""
        if parent["type"] == "ad":  # an ad's adcreatives: the one it uses
            items = [o for o in self.of_type(type_) if o["id"] == parent.get("creative_id")]
        else:
            key = {"account": "account", "campaign": "campaign_id", "adset": "adset_id"}[parent["type"]]
            items = [o for o in self.of_type(type_) if o.get(key) == parent["id"]]
        items = [o for o in items if self.visible(o)]
        for flt in [] if self.ignore_filtering else p.get("filtering") or []:
            fld, op, val = flt["field"], flt["operator"], flt["value"]
            attr = {"name": "name", "adset.id": "adset_id", "campaign.id": "campaign_id", "ad.name": "name"}[fld]
            if op == "EQUAL":
                items = [o for o in items if str(o.get(attr)) == str(val)]
            elif op == "CONTAIN":
                items = [o for o in items if str(val) in str(o.get(attr, ""))]
            elif op == "IN":
                items = [o for o in items if str(o.get(attr)) in {str(v) for v in val}]
            else:
                raise ValueError(f"operator {op}")
        items.sort(key=lambda o: o["created_seq"])
        fields = p.get("fields")
        return [self.view(o, fields) for o in items]

    def _parent_of(self, account: str, oid: str, type_: str) -> dict[str, Any]:
        """A visible object of this account named as a parent (else KeyError: Graph says it does not exist)."""
        obj = self.objects[oid]
        if obj["type"] != type_ or obj.get("account") != account or not self.visible(obj):
            raise KeyError(oid)
        return obj

    def create(self, type_: str, account: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not p.get("name"):
            return 400, _error(100, "Invalid parameter", 1487007, user_title="Missing name",
                               user_msg="Please give this object a name.")  # fmt: skip
        if (bad := _bad_status(p)) is not None:
            return 400, bad
        fields = dict(p)
        fields.pop("fields", None)
        fields["account"] = account
        if type_ == "adset":
            camp = self._parent_of(account, str(p["campaign_id"]), "campaign")
            fields["campaign_id"] = camp["id"]
            fields["daily_budget"] = int(p["daily_budget"])
            if fields["daily_budget"] < int(self.objects[account]["min_daily_budget"]):
                return 400, _error(100, "Invalid parameter", 1885272, user_title="Budget too low",
                                   user_msg="The daily budget is below the minimum of this account.")  # fmt: skip
            targeting = p.get("targeting")
            if not isinstance(targeting, dict) or not targeting.get("geo_locations"):
                return 400, _error(100, "Invalid parameter", 1885364, user_title="Invalid targeting spec",
                                   user_msg="The targeting spec is invalid: a location is required.")  # fmt: skip
        if type_ == "ad":
            adset = self._parent_of(account, str(p["adset_id"]), "adset")
            fields["campaign_id"] = adset["campaign_id"]
            fields["creative_id"] = str(p["creative"]["creative_id"])
            self._parent_of(account, fields["creative_id"], "creative")
            fields.pop("creative")
        if type_ == "creative":
            spec = p.get("object_story_spec") or {}
            h = ((spec.get("link_data") or {}).get("image_hash")) or ""
            if h not in self.images:
                return 400, _error(100, f"image hash {h!r} unknown", 1487242)
        obj = self.add(type_, **fields)
        return 200, {"id": obj["id"]}

    def update(self, obj: dict[str, Any], p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        changes = {k: v for k, v in p.items() if k != "fields"}
        if (bad := _bad_status(changes)) is not None:
            return 400, bad
        if "daily_budget" in changes:
            changes["daily_budget"] = int(changes["daily_budget"])
            if changes["daily_budget"] < int(self.objects[self.account]["min_daily_budget"]):
                return 400, _error(100, "Invalid parameter", 1885272, user_title="Budget too low",
                                   user_msg="The daily budget is below the minimum of this account.")  # fmt: skip
        with self.lock:
            obj.update(changes)
        return 200, {"success": True}

    def delete(self, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """DELETE /<id>: creatives only, and only one no live ad uses."""
        if obj["type"] != "creative":
            return 400, _error(100, "Unsupported delete request")
        users = [a for a in self.of_type("ad", creative_id=obj["id"]) if a.get("status") not in ("ARCHIVED", "DELETED")]
        if users:
            return 400, _error(100, "Invalid parameter", 1487174, user_title="Creative in use",
                               user_msg="This creative is used by an ad and cannot be deleted.")  # fmt: skip
        with self.lock:
            obj["status"] = "DELETED"
        return 200, {"success": True}

    def upload(self, p: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> tuple[int, Any]:
        if "bytes" in p:
            data = base64.b64decode(str(p["bytes"]))
            key = "bytes"
        elif "filename" in files:
            key, data = files["filename"]
        else:
            return 400, _error(100, "no image given")
        try:
            Image.open(io.BytesIO(data)).verify()
        except Exception:
            return 400, _error(100, "invalid image", 1487242)
        img = self.add_image(data, key)
        return 200, {"images": {key: {"hash": img["hash"], "url": img["url"], "name": key}}}

    def batch(self, calls: Any) -> tuple[int, Any]:
        if not isinstance(calls, list):
            return 400, _error(100, "batch must be a JSON array")
        if len(calls) > 50:
            err = _error(1, "Too many requests in batch message. Maximum batch size is 50")
            err["error"]["type"] = "GraphBatchException"
            return 400, err
        if self.batch_grouping:
            seen: dict[str, str] = {}
            for call in calls:
                node = urlsplit("/" + call["relative_url"].lstrip("/")).path.strip("/").split("/")
                if node and node[0].startswith(VERSION):
                    node = node[1:]
                obj = self.objects.get(node[0]) if node else None
                if obj is None or obj["type"] != "adset":
                    continue
                camp = str(obj.get("campaign_id"))
                if camp in seen and seen[camp] != obj["id"]:
                    err = _error(100, "A batch request cannot contain multiple ad sets under the same campaign "
                                      f"({seen[camp]} and {obj['id']} are both in campaign {camp})")  # fmt: skip
                    err["error"]["type"] = "GraphBatchException"
                    return 400, err
                seen[camp] = obj["id"]
        out: list[dict[str, Any] | None] = []
        for call in calls:
            rel = urlsplit("/" + call["relative_url"].lstrip("/"))
            params = dict(parse_qsl(rel.query, keep_blank_values=True))
            params.update(dict(parse_qsl(call.get("body", ""), keep_blank_values=True)))
            path = rel.path
            if path.lstrip("/").startswith(VERSION):
                path = path.lstrip("/")[len(VERSION) :]
            if self._not_run(call["method"], path.strip("/")):
                out.append(None)  # Graph's answer for a call it did not run: nothing was done
                continue
            status, headers, body = self.handle(call["method"], path, params, {}, rel.query, in_batch=True)
            out.append(
                {
                    "code": status,
                    "headers": [{"name": k, "value": v} for k, v in headers.items()],
                    "body": body.decode(),
                }
            )
        return 200, out

    def _not_run(self, method: str, rel: str) -> bool:
        with self.lock:
            fault = next((f for f in self.faults if f.not_run and f.matches(method, rel)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
        return fault is not None

    # -- insights -----------------------------------------------------------------------
    def insight_rows(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        # Pages of one read share the filtered, sorted list (the bench pages through 180,000 rows).
        key = json.dumps({k: v for k, v in p.items() if k not in ("after", "limit")}, sort_keys=True, default=str)
        with self.lock:
            stamp = (len(self.rows), self._row_writes)
            cached = self._insights_cache.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        out = self._insight_rows(p)
        with self.lock:
            self._insights_cache = {key: (stamp, out)}
        return out

    def _insight_rows(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        tr = p.get("time_range") or {}
        since, until = tr.get("since", "0000"), tr.get("until", "9999")
        camps: set[str] | None = None
        for flt in p.get("filtering") or []:
            if flt["field"] == "campaign.id":
                camps = {str(v) for v in flt["value"]}
        node = self.objects.get(str(p.get("_node") or p.get("_account") or ""), {})
        scope = {"account": "account", "campaign": "campaign_id", "adset": "adset_id", "ad": "id"}.get(
            node.get("type", "")
        )
        out = []
        with self.lock:
            items = sorted(self.rows.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            for (ad_id, day), m in items:
                if not since <= day <= until:
                    continue
                ad = self.objects.get(ad_id, {})
                if scope is not None and ad.get(scope, self.account if scope == "account" else None) != node["id"]:
                    continue  # /<node>/insights reports that node's ads only
                if camps is not None and str(ad.get("campaign_id")) not in camps:
                    continue
                out.append({"ad_id": ad_id, "day": day, **m})
        return out

    def _insight_view(self, req: dict[str, Any], p: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        fields = req.get("fields") or p.get("fields") or []
        if isinstance(fields, str):
            fields = fields.split(",")
        exp = 0 if self.objects[self.account]["currency"] in OFFSET_1 else 2

        def view(r: dict[str, Any]) -> dict[str, Any]:
            full = {
                "ad_id": r["ad_id"], "date_start": r["day"], "date_stop": r["day"],
                "impressions": str(r.get("impressions", 0)), "clicks": str(r.get("clicks", 0)),
                "spend": f"{r.get('spend_minor', 0) / 10**exp:.{exp}f}", "reach": str(r.get("reach", 0)),
                "frequency": str(r.get("frequency", 0)),
                "actions": [{"action_type": "link_click", "value": str(r.get("clicks", 0))},
                            {"action_type": "offsite_conversion.fb_pixel_lead", "value": str(r.get("conversions", 0))}],
            }  # fmt: skip
            return {k: v for k, v in full.items() if k in fields or k in ("date_start", "date_stop")}

        return view

    def page(
        self, items: list[Any], p: dict[str, Any], query: str, view: Callable[[Any], Any] | None = None
    ) -> dict[str, Any]:
        limit = int(p.get("limit") or 25)
        start = int(base64.b64decode(str(p["after"])).decode()) if p.get("after") else 0
        chunk = items[start : start + limit]
        data = (
            [view(x) for x in chunk]
            if view
            else [{k: v for k, v in x.items() if k not in ("type", "created_seq")} for x in chunk]
        )
        doc: dict[str, Any] = {
            "data": data,
            "paging": {
                "cursors": {
                    "before": base64.b64encode(str(start).encode()).decode(),
                    "after": base64.b64encode(str(start + len(chunk)).encode()).decode(),
                }
            },
        }
        if start + limit < len(items):
            q = dict(parse_qsl(query, keep_blank_values=True))
            q["after"] = doc["paging"]["cursors"]["after"]
            doc["paging"]["next"] = f"{self.base_url}/{VERSION}/?{urlencode(q)}"
        return doc


def png_bytes(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def seed_account(graph: FakeGraph, ads: int = 2, image: bytes | None = None) -> dict[str, Any]:
    """A main campaign with one ad set of ``ads`` live ads, and an empty ABO test campaign."""
    acct = graph.account
    main = graph.add("campaign", name="main", account=acct)
    test = graph.add("campaign", name="tests (ABO)", account=acct)
    adset = graph.add(
        "adset", name="main ad set", account=acct, campaign_id=main["id"], status="ACTIVE", main=True,
        daily_budget=5000, optimization_goal="LINK_CLICKS", billing_event="IMPRESSIONS",
        bid_strategy="LOWEST_COST_WITHOUT_CAP",
        targeting={"geo_locations": {"countries": ["US"]}, "age_min": 25, "age_max": 54},
    )  # fmt: skip
    img = graph.add_image(image or png_bytes(1, (96, 64)), "hero.png")
    out = {"main": main["id"], "test": test["id"], "adset": adset["id"], "ads": [], "image": img}
    for i in range(ads):
        creative = graph.add(
            "creative", name=f"hero {i}", account=acct, image_url=img["url"], image_hash=img["hash"],
            object_story_spec={"page_id": "5550001", "link_data": {
                "image_hash": img["hash"], "link": "https://example.com/offer", "message": "Get the offer",
                "name": f"Hero {i}", "call_to_action": {"type": "SIGN_UP"}}},
        )  # fmt: skip
        ad = graph.add(
            "ad", name=f"hero-{i}", account=acct, campaign_id=main["id"], adset_id=adset["id"],
            creative_id=creative["id"], status="ACTIVE", true_ctr=0.02,
        )  # fmt: skip
        out["ads"].append(ad["id"])
    return out


def day_range(start: date, days: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(days)]
