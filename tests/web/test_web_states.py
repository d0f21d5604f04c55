"""What the dashboard says, state by state, on SQLite and PostgreSQL (a hand-made database: web_states).

Statuses per state, the approval card's evidence, cap bars, one money format,
the platform's calendar, arms named as on their cards, hostile labels on
every page (charts included), the 500 page, paging, and approvals decided once.
"""

from __future__ import annotations

import base64
import csv
import html as htmllib
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.testclient import TestClient
from web_states import CAMPAIGN, HOSTILE, States, seed, write_site_config

from loop.config import Config, load_config
from loop.web import create_app
from loop.web.queries import GALLERY_PAGE
from policies.errors import CreativeLoopError
from storage.db import session as open_session
from storage.images import ImageStore
from storage.models import AuditEvent, Experiment

BASE_URL = "http://127.0.0.1"
MONEY = r"\d{1,3}(?:,\d{3})*\.\d\d"


@pytest.fixture
def site(tmp_path: Path) -> Config:
    return load_config(write_site_config(tmp_path / "site"))


def _client(cfg: Config, engine: Engine) -> TestClient:
    app = create_app(cfg, engine=engine, images=ImageStore(cfg.data_dir / "images"), default_actor="tester")
    return TestClient(app, base_url=BASE_URL)


@pytest.fixture
def states(engine: Engine) -> States:
    return seed(engine)


@pytest.fixture
def client(site: Config, engine: Engine, states: States) -> Iterator[TestClient]:
    with _client(site, engine) as c:
        yield c


def _row(html: str, attr: str, value: str) -> str:
    """The table row (or list item) carrying ``attr="value"``."""
    start = html.index(f'{attr}="{htmllib.escape(value)}"')
    return html[start : min(i for i in (html.find("</tr>", start), html.find("</li>", start)) if i > 0)]


def _status(html: str, attr: str, value: str) -> tuple[str, str, str]:
    """(key, text, detail) of the status pill in that row (the detail shown under it, or its tooltip)."""
    row = _row(html, attr, value)
    m = re.search(r'data-status="([^"]+)"(?: title="([^"]*)")?>([^<]*)<', row)
    assert m, value
    shown = re.search(r'<span class="why">([^<]*)</span>', row)
    detail = m.group(2) if m.group(2) is not None else (shown.group(1) if shown else "")
    return m.group(1), htmllib.unescape(m.group(3)), htmllib.unescape(detail)


# -- statuses -------------------------------------------------------------------------------
def test_every_creative_status_says_what_is_true(client: TestClient, states: States) -> None:
    html = client.get("/").text
    c, e = states.creatives, states.experiments
    assert _status(html, "data-creative", c["healthy"])[:2] == ("healthy", "healthy")
    key, text, detail = _status(html, "data-creative", c["fatigued"])
    assert (key, text) == ("fatigued", "live and fatigued") and "next tick opens an experiment" in detail
    assert _status(html, "data-creative", c["paused"])[0] == "paused"
    for state in ("detected", "exploring", "testing", "decided", "rendering", "awaiting:weak"):
        key, text, detail = _status(html, "data-creative", c[f"replacing:{state}"])
        assert key == "replacing" and text.startswith("fatigued, being replaced"), state
        assert f"experiment {e[state]} is replacing it" in detail, detail
    # Replaced: by which creative; the replacement itself is a healthy live creative.
    key, text, _ = _status(html, "data-creative", c["parent:scaled"])
    assert (key, text) == ("replaced", f"replaced by {states.labels[c['replacement']]}")
    assert _status(html, "data-creative", c["replacement"])[0] == "healthy"
    # The defect this replaces: an abandoned replacement left "replaced (abandoned)" on a live, fatigued ad.
    key, text, detail = _status(html, "data-creative", c["parent:abandoned"])
    assert (key, text) == ("fatigued", "live and fatigued, not replaced")
    assert "abandoned (test spend cap: no budget left to test variants)" in detail
    assert "replaced (abandoned)" not in html


def test_every_experiment_status_says_what_is_true(client: TestClient, states: States) -> None:
    e = states.experiments
    html = client.get("/").text
    expected = {
        "detected": ("detected", "fatigue detected"),
        "exploring": ("exploring", "generating variants"),
        "testing": ("testing", "testing"),
        "decided": ("decided", "v2 won"),
        "rendering": ("rendering", "v2 rendered"),
        "awaiting:weak": ("awaiting_approval", "waiting for approval of the pro render"),
    }
    for state, (key, text) in expected.items():
        assert _status(html, "data-experiment-row", e[state])[:2] == (key, text), state
    for state, key, text in (("scaled", "scaled", "live as v2-pro-live"), ("abandoned", "abandoned", "abandoned")):
        page = client.get(f"/experiments/{quote(e[state], safe='')}").text
        m = re.search(r'<h1>.*?data-status="([^"]+)"[^>]*>([^<]*)<', page, re.S)
        assert m and (m.group(1), m.group(2)) == (key, text), state


def test_one_detection_date_on_the_overview_the_creative_and_the_experiment(
    client: TestClient, states: States, engine: Engine
) -> None:
    exp_id = states.experiments["testing"]
    with open_session(engine) as s:
        exp = s.get(Experiment, exp_id)
        assert exp is not None and exp.detected_on is not None
        detected = exp.detected_on.isoformat()
        assert exp.verdict["day"] != detected  # the verdict's data day differs: it must not be shown as the date
    overview = _row(client.get("/").text, "data-experiment-row", exp_id)
    assert f"<td>{detected}</td>" in overview
    creative = client.get(f"/creatives/{quote(exp.parent_creative_id, safe='')}").text
    assert f'data-detected="{detected}"' in creative
    page = client.get(f"/experiments/{quote(exp_id, safe='')}").text
    assert f"<dd>{detected} · " in page


# -- the approval card -------------------------------------------------------------------------
def _card(html: str, exp_id: str) -> str:
    start = html.index(f'data-experiment="{exp_id}"')
    end = html.find('<div class="card" data-experiment=', start + 1)
    return html[start : end if end > 0 else len(html)]


def test_the_approval_card_shows_the_evidence_and_warns_when_it_is_weak(client: TestClient, states: States) -> None:
    html = client.get("/approvals").text
    weak = _card(html, states.weak)
    assert 'data-evidence="weak"' in weak
    assert "P(best) of v4 is" in weak and "below the target 0.95" in weak
    assert "v4 has only 5 clicks on 212 impressions" in weak
    assert "test spend cap reached: best arm so far" in weak  # why the test ended
    for label, clicks in (("v1", 3), ("v2", 4), ("v3", 2), ("v4", 5)):
        row = weak[weak.index(f'data-arm-row="{label}"') :]
        row = row[: row.index("</tr>")]
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert cells[0] == "212" and cells[1] == str(clicks), label  # impressions, clicks
        assert re.fullmatch(r"\d\.\d{3}%", cells[2]) and re.fullmatch(r"\d\.\d{3}% – \d+\.\d{3}%", cells[3])
        assert re.fullmatch(r"[01]\.\d{3}", cells[4])  # P(best)
    assert "Approve despite weak evidence" in weak
    strong = _card(html, states.strong)
    assert 'data-evidence="weak"' not in strong and "P(best) reached the target: v2 has P(best)=1.0000" in strong
    assert "Approve</button>" in strong
    # The experiment page carries the same warning.
    page = client.get(f"/experiments/{quote(states.weak, safe='')}").text
    assert 'data-evidence="weak"' in page and "v4 has only 5 clicks" in page


# -- money, calendar, arm names -------------------------------------------------------------------
def test_one_money_format_from_minor_units(client: TestClient, states: States) -> None:
    html = client.get("/").text
    assert "369.50 spent + 28.50 reserved / 400.00 USD cap" in html
    page = client.get(f"/experiments/{quote(states.experiments['testing'], safe='')}").text
    assert re.search(rf"test {MONEY} USD · credits {MONEY} USD", page)
    assert "budgets (USD)" in page and "v1 4.15 · v2 4.15 · v3 4.15" in page  # [415, 415, 415] minor units
    assert "<b>budgets</b> v1 4.15 · v2 4.15 · v3 4.15 USD" in page  # the AllocationSet event's data
    audit = client.get(f"/audit?experiment={quote(states.experiments['abandoned'], safe='')}").text
    assert "<b>left</b> 1.80 USD" in audit  # CapReached: left=180 minor units
    csv_text = client.get("/ledger.csv").text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    money_cols = ("cap", "reserved", "released", "spent", "open", "left")
    assert rows and all(re.fullmatch(r"\d+\.\d\d", r[k]) for r in rows for k in money_cols)
    # the fixture's campaigns cap their lifetime: the ledger reads by platform month, "left" running down
    assert all(re.fullmatch(r"\d{4}-\d\d", r["period"]) for r in rows)


def test_days_are_the_platform_calendar_and_wall_clock_only_for_what_a_person_did(
    client: TestClient, states: States
) -> None:
    scaled = states.experiments["scaled"]
    page = client.get(f"/experiments/{quote(scaled, safe='')}").text
    timeline = page[page.index('<ul class="timeline">') : page.index("</ul>")]
    assert 'detected <span class="small">· Mar 12</span>' in timeline  # platform day 10 (2026-03-12)
    assert 'scaled <span class="small">· Mar 16</span>' in timeline
    assert "Nov 0" not in timeline  # not the wall clock the ticks ran at
    audit = client.get(f"/audit?experiment={quote(scaled, safe='')}").text
    approved = _row(audit, "data-event", "Approved")
    assert "<td>–</td>" in approved and "2025-" in approved  # a person's decision: no platform day, its wall clock
    scaled_row = _row(audit, "data-event", "WinnerScaled")
    assert "<td>2026-03-16</td>" in scaled_row  # the loop's: the platform day of the tick that did it
    ledger = client.get("/ledger").text
    assert "<td>2026-03</td>" in ledger and "<td>2025-11</td>" not in ledger


def test_decision_notes_name_arms_as_on_their_cards(client: TestClient, states: States) -> None:
    page = client.get(f"/experiments/{quote(states.experiments['testing'], safe='')}").text
    assert "undecided: v1 has 0 &lt; 2000 impressions; v3 has 0 &lt; 2000 impressions" in page
    assert "arm 0" not in page and "arm 2" not in page


# -- hostile labels --------------------------------------------------------------------------------
def _drawn(ch: str, svg: str) -> bool:
    """Whether the SVG draws the glyph of ``ch`` (text is drawn as paths, one definition per glyph and face)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    index = FT2Font(findfont(FontProperties(family=["sans-serif"]))).get_char_index(ord(ch))
    return re.search(rf'id="DejaVuSans(?:-[A-Za-z]+)?-{index:x}"', svg) is not None


def _charts(html: str) -> list[str]:
    return [base64.b64decode(b).decode() for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)]


def _pages(client: TestClient, engine: Engine) -> list[str]:
    from storage.models import Creative

    with open_session(engine) as s:
        creatives = [c.id for c in s.exec(select(Creative)).all()]
        exps = [e.id for e in s.exec(select(Experiment)).all()]
    paths = ["/", "/approvals", "/gallery", "/ledger", "/ledger.csv", "/audit", "/audit?text=%24%24", "/reports"]
    paths += [f"/creatives/{quote(c, safe='')}" for c in creatives]
    paths += [f"/experiments/{quote(e, safe='')}" for e in exps]
    return paths


def _wait_for_report(client: TestClient, job: str, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = client.get("/reports").text
        row = _row(page, "data-job", job)
        if 'data-state="done"' in row:
            return re.search(r'href="(/reports/[^"]+)"', row).group(1)  # type: ignore[union-attr]
        assert 'data-state="failed"' not in row, row
        time.sleep(0.5)
    raise AssertionError(f"report {job} not done after {timeout_s} s")


def test_hostile_labels_reach_no_parser_on_any_page(site: Config, engine: Engine) -> None:
    states = seed(engine, hostile=True)
    with _client(site, engine) as client:
        for path in _pages(client, engine):
            r = client.get(path)
            assert r.status_code == 200, path
            assert "<script>alert" not in r.text, path
        overview = client.get("/").text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in overview
        assert htmllib.escape("Win $$ now") in overview and htmllib.escape("שלום עולם") in overview
        # Charts draw "$" and a leading "_" as written: the "$" glyph is in the SVG (math text would eat it),
        # and so is "_" (a legend drops a label starting with "_" unless told otherwise).
        dollar = next(c for c, label in states.labels.items() if label.startswith("Save $5"))
        chart = _charts(client.get(f"/creatives/{quote(dollar, safe='')}").text)[0]
        assert _drawn("$", chart)
        # The report, written in the background, carries them too.
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/reports").text).group(1)  # type: ignore[union-attr]
        r = client.post("/reports", data={"csrf_token": token, "campaign": CAMPAIGN}, follow_redirects=False)
        assert r.status_code == 303
        link = _wait_for_report(client, r.headers["location"].split("queued=")[1])
        report = client.get(link)
        assert report.status_code == 200 and f'data-campaign="{CAMPAIGN}"' in report.text
        assert "<script>alert" not in report.text and "&lt;script&gt;" in report.text
        assert report.headers["x-frame-options"] == "DENY"


def test_a_chart_label_is_plain_text() -> None:
    from datetime import date

    from loop.web.charts import LABEL_LIMIT, MISSING_GLYPH, allocation_chart, plain, posteriors_chart

    # A legend draws "$" as written (math text would eat it) and keeps a label that starts with "_".
    svg = allocation_chart([date(2026, 3, 2)], [[0.5, 0.5]], ["Save $5 on $20+", "_x"]).decode()
    assert _drawn("$", svg) and _drawn("_", svg)
    svg = posteriors_chart([3, 5], [200, 200], ["Win $$ now", "_x"], [0, 1]).decode()
    assert _drawn("$", svg) and _drawn("_", svg)
    assert not _drawn("$", allocation_chart([date(2026, 3, 2)], [[0.5, 0.5]], ["a", "b"]).decode())

    assert plain("Win $$ now") == "Win $$ now" and plain("_x") == "_x"
    assert plain("a\x00b\tc\u202ed") == "ab cd"  # controls and bidi overrides are not drawn
    assert plain("\U00013000 hieroglyph") == f"{MISSING_GLYPH} hieroglyph"  # the font has no glyph for it
    assert len(plain(HOSTILE[-1])) == LABEL_LIMIT and plain(HOSTILE[-1]).endswith("…")


# -- errors -------------------------------------------------------------------------------------------
def test_a_500_has_the_security_headers_and_an_error_id_that_is_in_the_log(
    site: Config, engine: Engine, states: States, caplog: pytest.LogCaptureFixture
) -> None:
    exp_id = states.experiments["testing"]
    with open_session(engine) as s:
        exp = s.get(Experiment, exp_id)
        assert exp is not None
        exp.verdict = {**exp.verdict, "day": "not a date"}  # data no page expects
        s.add(exp)
        s.commit()
        parent = exp.parent_creative_id
    with _client(site, engine) as client, caplog.at_level(logging.ERROR, logger="creative_loop.web"):
        r = client.get(f"/creatives/{quote(parent, safe='')}")
    assert r.status_code == 500
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    error_id = r.headers["x-error-id"]
    assert re.fullmatch(r"[0-9a-f]{12}", error_id)
    assert f'data-error-id="{error_id}"' in r.text and "Traceback" not in r.text and "not a date" not in r.text
    [record] = [rec for rec in caplog.records if error_id in rec.getMessage()]
    assert record.exc_info is not None and "ValueError" in caplog.text


@pytest.mark.parametrize(
    "path",
    ["/creatives/a%00b", "/experiments/a%00", "/gallery?campaign=%00", "/audit?campaign=x%00", "/audit?experiment=%00",
     "/audit?actor=%00", "/audit?name=%00", "/report.html?campaign=%00", "/insights?campaign=%00"],
)  # fmt: skip
def test_a_nul_character_in_a_request_is_a_400(client: TestClient, states: States, path: str) -> None:
    # PostgreSQL refuses a query with one: it was a 500 there, a 404 or a page on SQLite.
    r = client.get(path)
    assert r.status_code == 400 and "NUL" in r.text, path
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/approvals").text).group(1)  # type: ignore[union-attr]
    for route, form in [
        ("/approvals/approve", {"experiment_id": "a\x00b", "who": "x"}),
        ("/approvals/approve", {"experiment_id": states.weak, "who": "x", "reason": "a\x00b"}),
        ("/reports", {"campaign": "a\x00"}),
    ]:
        r = client.post(route, data={"csrf_token": token, **form}, follow_redirects=False)
        assert r.status_code == 400 and "NUL" in r.text, form
    assert client.get("/audit?text=%2500").status_code == 200  # the text "%00" is no NUL


def test_the_ledger_csv_holds_no_formula(client: TestClient, engine: Engine) -> None:
    from storage.models import Campaign, LedgerEntry

    hostile = ['=HYPERLINK("http://evil.example")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]
    with open_session(engine) as s:
        for i, cid in enumerate(hostile):
            s.add(Campaign(id=cid, currency="USD", test_spend_cap_minor=1_000, credit_cap_minor=1_000))
            s.flush()
            s.add(LedgerEntry(campaign_id=cid, account="test", kind="reserve", key=f"k{i}", amount_minor=100))
        s.commit()
    rows = list(csv.DictReader(io.StringIO(client.get("/ledger.csv").text)))
    shown = {r["campaign"] for r in rows}
    assert {"'" + cid for cid in hostile} <= shown
    assert all(r["reserved"][:1].isdigit() for r in rows)  # amounts stay numbers


# -- paging --------------------------------------------------------------------------------------------
def test_the_gallery_is_paged_and_prints_no_recipe(client: TestClient, engine: Engine, states: States) -> None:
    with open_session(engine) as s:
        parent = s.get(Experiment, states.experiments["detected"])
        assert parent is not None
        for i in range(GALLERY_PAGE):
            s.add(Experiment(id=f"{parent.parent_creative_id}:extra-{i:02d}", campaign_id=CAMPAIGN,
                             parent_creative_id=parent.parent_creative_id, state="abandoned", reason="old"))  # fmt: skip
        s.commit()
        total = len(s.exec(select(Experiment)).all())
    first = client.get("/gallery").text
    assert first.count('<div class="card">') == GALLERY_PAGE
    assert f"page 1 of 2 · {total} experiments" in first and 'rel="next"' in first
    second = client.get(f"/gallery?campaign={CAMPAIGN}&page=2").text
    assert second.count('<div class="card">') == total - GALLERY_PAGE and 'rel="prev"' in second
    assert client.get("/gallery?page=99").status_code == 200 and client.get("/gallery?page=x").status_code == 200
    for html in (first, second):
        assert "palette" not in html  # the recipe is on the creative's own page
    draft = f"{states.experiments['testing']}:v1"
    assert "palette" in client.get(f"/creatives/{quote(draft, safe='')}").text


# -- approvals, once --------------------------------------------------------------------------------------
def test_simultaneous_approvals_record_one(site: Config, engine: Engine, states: States) -> None:
    from loop.reports import decide_approval

    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def approve(who: str) -> None:
        barrier.wait()
        try:
            decide_approval(site, states.weak, True, f"web:{who}", engine=engine)
            outcomes.append("approved")
        except CreativeLoopError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("approved") == 1, outcomes
    assert all("already approved by web:p" in o for o in outcomes if o != "approved"), outcomes
    with open_session(engine) as s:
        approved = s.exec(
            select(AuditEvent).where(AuditEvent.experiment_id == states.weak, AuditEvent.name == "Approved")
        ).all()
        exp = s.get(Experiment, states.weak)
        assert len(approved) == 1 and exp is not None and exp.approved_stage == "pro"
    with pytest.raises(CreativeLoopError, match="an approved stage cannot be rejected"):
        decide_approval(site, states.weak, False, "web:late", "changed my mind", engine=engine)
    with open_session(engine) as s:
        exp = s.get(Experiment, states.weak)
        assert exp is not None and exp.state == "awaiting_approval"
        assert not s.exec(select(AuditEvent).where(AuditEvent.name == "Rejected")).all()


# -- cap bars --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("account", "used", "level"),
    [
        ("test", 5_000, "ok"),
        ("test", 8_500, "warn"),  # 85 % used, a full day still fits
        ("test", 10_000 - 260, "warn"),  # 97.4 %: a day at the two-arm minimum still fits (208 >= 200 a day)
        ("test", 10_000 - 249, "full"),  # 97.5 %: it does not; the loop stops testing, finance sees red
        ("test", 9_980, "full"),  # the 99.8 % that used to be amber
        ("credit", 500, "ok"),
        ("credit", 1_000 - 70, "warn"),  # room for an experiment, not for its six variants
        ("credit", 1_000 - 63, "full"),  # not even the pro render and two variants (64)
    ],
)
def test_a_cap_bar_is_red_when_what_is_left_cannot_fund_the_next_step(account: str, used: int, level: str) -> None:
    from loop.web.queries import Bar
    from policies.budget import CapState

    from loop_helpers import plan_for

    plan = plan_for("shop")  # test cap 100.00, 20.00 a day, min 1.00 an arm; credit cap 10.00, 0.02 fast, 0.60 pro
    cap = plan.test_spend_cap if account == "test" else plan.credit_cap
    bar = Bar.of("shop", "USD", account, CapState(cap=cap, spent=used), plan)
    assert bar.level == level, bar.why
    if level == "full":
        assert "cannot fund" in bar.why and "USD" in bar.why
    # Without a plan (a campaign gone from the config) only the share is known.
    assert Bar.of("shop", "USD", account, CapState(cap=cap, spent=cap), None).level == "full"


def test_the_overviews_grouped_ledger_sums_are_ledger_state(engine: Engine, states: States) -> None:
    from storage.ledger import ACCOUNTS, Ledger
    from storage.models import Campaign, LedgerEntry

    with open_session(engine) as s:
        s.add(Campaign(id="other", currency="EUR", test_spend_cap_minor=5_000, credit_cap_minor=700))
        s.flush()
        for key, kind, amount in (("t1", "reserve", 900), ("t1", "actual", 850), ("t1", "release", 900),
                                  ("t2", "reserve", 400), ("c1", "reserve", 60)):  # fmt: skip
            s.add(LedgerEntry(campaign_id="other", account="credit" if key == "c1" else "test", kind=kind, key=key,
                              amount_minor=amount))  # fmt: skip
        s.commit()
        ledger = Ledger(s)
        every = ledger.states()
        assert set(every) == {(c, a) for c in (CAMPAIGN, "other") for a in ACCOUNTS}
        for (campaign, account), state in every.items():
            assert state == ledger.state(campaign, account), (campaign, account)
        assert ledger.states(["other"]) == {k: v for k, v in every.items() if k[0] == "other"}
        assert every[("other", "test")].spent == 850 and every[("other", "test")].reserved == 400
