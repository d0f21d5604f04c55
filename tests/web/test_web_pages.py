"""Every dashboard page over a database the real loop filled (ASGI test client)."""

from __future__ import annotations

import csv
import html as htmllib
import io
import re
import time
from datetime import UTC, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.testclient import TestClient

from loop.config import Config, to_major
from loop.web import create_app
from storage.counters import increment
from storage.db import make_engine
from storage.db import session as open_session
from storage.images import ImageStore
from storage.ledger import Ledger
from storage.models import AuditEvent, BanditDecision, Campaign, Creative, Experiment, TickRun

BASE_URL = "http://127.0.0.1"


def _waiting(engine: Engine) -> list[Experiment]:
    with open_session(engine) as s:
        return list(s.exec(select(Experiment).where(Experiment.state == "awaiting_approval")).all())


def test_the_fixture_waits_for_two_pro_renders(engine_of: Engine, lead: str) -> None:
    waiting = _waiting(engine_of)
    assert sorted(e.campaign_id for e in waiting) == ["lead-gen", "retarget"]
    assert lead in {e.id for e in waiting}
    assert {e.waiting_for for e in waiting} == {"pro"}


def test_overview_shows_campaigns_state_fatigue_and_cap_bars(client: TestClient, engine_of: Engine) -> None:
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    for campaign in ("lead-gen", "retarget"):
        assert f'data-campaign="{campaign}"' in html
    assert 'data-status="replacing"' in html  # a fatigued creative and the experiment replacing it
    assert "waiting for approval of the pro render" in html
    assert "2</strong> experiments" in html
    # A bar is red when what is left cannot fund one more test day at the loop's own minimum
    # (two arms at min_arm_daily_budget 1.00, x 1.25 overspend), whatever the share used.
    block = html[html.index('data-campaign="retarget"') :]
    with open_session(engine_of) as s:
        summary = Ledger(s).summary("retarget", "test")
    level = re.search(r'data-level="(\w+)" data-account="test"', block).group(1)  # type: ignore[union-attr]
    assert level == (
        "full" if summary.left < 250 else "warn" if summary.spent + summary.reserved >= 0.8 * summary.cap else "ok"
    )
    units, cents = divmod(summary.spent, 100)
    assert f"{units:,}.{cents:02d} spent" in block


def test_creative_page_has_the_fatigue_chart_and_the_verdict(client: TestClient, engine_of: Engine, lead: str) -> None:
    with open_session(engine_of) as s:
        exp = s.get(Experiment, lead)
        assert exp is not None
        reason = exp.verdict["reason"]
        parent = exp.parent_creative_id
    r = client.get(f"/creatives/{quote(parent, safe='')}")
    assert r.status_code == 200
    assert 'src="data:image/svg+xml;base64,' in r.text
    assert htmllib.escape(reason) in r.text
    assert exp.verdict["day"] in r.text  # the detection day
    assert client.get("/creatives/nope").status_code == 404


def test_experiment_page_has_arms_posteriors_allocation_and_seeds(
    client: TestClient, engine_of: Engine, lead: str
) -> None:
    r = client.get(f"/experiments/{quote(lead, safe='')}")
    assert r.status_code == 200
    html = r.text
    with open_session(engine_of) as s:
        decisions = s.exec(select(BanditDecision).where(BanditDecision.experiment_id == lead)).all()
        exp = s.get(Experiment, lead)
        assert exp is not None
    assert decisions
    for d in decisions:
        assert str(d.seed) in html  # the decision log keeps each day's seed
    arms = exp.plan["arms"]  # the arms the test plan launched
    assert 2 <= arms <= 6
    assert html.count('data-arm="') == arms and html.count("data-arm-row=") == arms  # a card and a table row per arm
    assert html.count("data:image/svg+xml;base64,") == 2  # every arm's posterior on one chart + the allocation
    assert "P(best)" in html and "winner" in html and "95% interval" in html
    assert "awaiting approval (pro)" in html  # the state timeline's current stage
    assert str(exp.seed) in html
    assert client.get("/experiments/nope").status_code == 404


def test_experiment_page_shows_the_delivery_mismatch_flag(client: TestClient, engine_of: Engine, lead: str) -> None:
    with open_session(engine_of) as s:
        s.add(
            AuditEvent(
                name="DeliveryMismatchFlagged", campaign_id="lead-gen", experiment_id=lead, data={"p_value": 0.001}
            )
        )
        s.commit()
    html = client.get(f"/experiments/{quote(lead, safe='')}").text
    assert 'data-flag="delivery-mismatch"' in html and "0.001" in html


def test_gallery_shows_lineage_with_recipe_seed_model_tier_and_flags(
    client: TestClient, engine_of: Engine, lead: str
) -> None:
    with open_session(engine_of) as s:
        exp = s.get(Experiment, lead)
        assert exp is not None and exp.pro_creative_id
        pro = s.get(Creative, exp.pro_creative_id)
        assert pro is not None
        pro.flags = {"brand": {"ok": True, "worst_delta_e": 3.214}, "fidelity": {"ok": True, "ssim": 0.9312}}
        s.add(pro)
        s.commit()
        drafts = s.exec(select(Creative).where(Creative.experiment_id == lead, Creative.role == "draft")).all()
        with_drafts = {
            c.experiment_id for c in s.exec(select(Creative).where(Creative.role == "draft")).all() if c.experiment_id
        }
    r = client.get("/gallery?campaign=lead-gen")
    assert r.status_code == 200
    html = r.text
    assert "retarget:cart-reminder" not in html
    for d in drafts:
        assert f"/images/{d.image_hash}.png" in html
        assert str(d.seed) in html
    assert str(pro.model) in html and "brand ΔE" in html and "3.21 ✓" in html and "0.931 ✓" in html
    assert client.get("/gallery").text.count('class="card"') == len(with_drafts)


def test_ledger_page_and_csv_agree_with_the_ledger(client: TestClient, engine_of: Engine) -> None:
    assert client.get("/ledger").status_code == 200
    r = client.get("/ledger.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    with open_session(engine_of) as s:
        ledger = Ledger(s)
        for campaign in ("lead-gen", "retarget"):
            for account in ("test", "credit"):
                mine = [x for x in rows if x["campaign"] == campaign and x["account"] == account]
                assert mine
                summary = ledger.summary(campaign, account)
                assert sum(float(x["spent"]) for x in mine) == pytest.approx(to_major(summary.spent))
                assert float(mine[0]["cap"]) == to_major(summary.cap)
    html = client.get("/ledger").text
    assert "cost per winning asset" in html and "fast-tier generations" in html


def test_audit_log_filters(client: TestClient, engine_of: Engine) -> None:
    r = client.get("/audit?name=WinnerDeclared")
    assert r.status_code == 200
    table = r.text[r.text.index('id="events"') : r.text.index('id="mutations"')]
    assert table.count('<tr data-event="WinnerDeclared">') == 2  # two winners, one per campaign
    assert "FatigueDetected</td>" not in table
    r = client.get("/audit?campaign=retarget&name=ArmsLaunched")
    table = r.text[r.text.index('id="events"') : r.text.index('id="mutations"')]
    assert "lead-gen" not in table and "retarget" in table
    everything = client.get("/audit").text
    assert "LaunchTestArm" in everything  # platform mutations are listed too
    assert client.get("/audit?text=prob_best&limit=abc").status_code == 200


def test_healthz_reports_scheduler_and_database(filled: Config, engine_of: Engine) -> None:
    with open_session(engine_of) as s:
        last = s.exec(select(TickRun).order_by(col(TickRun.started_at).desc())).first()
        assert last is not None and last.finished_at is not None
    finished = last.finished_at.replace(tzinfo=UTC)
    images = ImageStore(filled.data_dir / "images")
    for now, code, alive in (
        (finished + timedelta(minutes=90), 200, True),
        (finished + timedelta(hours=3), 503, False),
    ):
        app = create_app(filled, engine=engine_of, images=images, clock=lambda now=now: now)
        with TestClient(app, base_url=BASE_URL) as c:
            r = c.get("/healthz")
        assert r.status_code == code
        body = r.json()
        assert body["database"] is True and body["scheduler_alive"] is alive
        assert body["last_tick"] == finished.isoformat(timespec="seconds")


def test_healthz_says_when_the_database_is_unreachable(filled: Config, tmp_path: Path) -> None:
    (tmp_path / "db-is-a-folder").mkdir()
    broken = make_engine(f"sqlite:///{tmp_path / 'db-is-a-folder'}")
    app = create_app(filled, engine=broken, images=ImageStore(tmp_path / "images"))
    with TestClient(app, base_url=BASE_URL) as c:
        r = c.get("/healthz")
    broken.dispose()
    assert r.status_code == 503
    assert r.json()["database"] is False


def test_metrics_in_prometheus_text_format(client: TestClient, engine_of: Engine) -> None:
    with open_session(engine_of) as s:
        increment(s, "api_calls", 3, backend="meta")
        increment(s, "throttles", 1, backend="meta")
        increment(s, "generations", 2, tier="pro", backend="diffusers")
        s.commit()
        spent = to_major(Ledger(s).summary("lead-gen", "test").spent)
        ticks = len(s.exec(select(TickRun)).all())
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert f'creative_loop_ticks_total{{ok="true"}} {float(ticks)!r}' in text
    assert "creative_loop_tick_duration_seconds_count" in text
    assert 'creative_loop_api_calls_total{backend="meta"} 3.0' in text
    assert 'creative_loop_throttles_total{backend="meta"} 1.0' in text
    assert 'creative_loop_generations_total{backend="diffusers",tier="pro"} 2.0' in text
    assert f'creative_loop_spent{{account="test",campaign="lead-gen",currency="USD"}} {spent!r}' in text
    assert 'creative_loop_cap{account="test",campaign="lead-gen",currency="USD"} 500.0' in text
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? -?[0-9.e+-]+$')
    for line in text.splitlines():
        assert line.startswith("# ") or sample.match(line), line


def test_images_are_served_by_hash_only(client: TestClient, engine_of: Engine, filled: Config) -> None:
    with open_session(engine_of) as s:
        c = s.exec(select(Creative).where(col(Creative.image_hash).is_not(None))).first()
        assert c is not None and c.image_hash
    r = client.get(f"/images/{c.image_hash}.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == ImageStore(filled.data_dir / "images").get_bytes(c.image_hash)
    assert client.get(f"/images/{'0' * 64}.png").status_code == 404
    assert client.get(f"/images/{c.image_hash.upper()}.png").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/images/..%2F..%2Floop.db.png",
        "/images/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/%2e%2e/%2e%2e/loop.db",
        "/images/../../loop.db",
        "/images/....//....//etc/passwd.png",
        "/images/%252e%252e%252fetc%252fpasswd.png",
    ],
)
def test_path_traversal_on_the_image_route_finds_nothing(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert b"SQLite format" not in r.content and b"root:" not in r.content


def test_security_headers_on_every_page(client: TestClient) -> None:
    r = client.get("/")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]  # no script may run at all
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_templates_escape_what_the_platform_returned(client: TestClient, engine_of: Engine, lead: str) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with open_session(engine_of) as s:
        camp = s.get(Campaign, "lead-gen")
        hero = s.get(Creative, "lead-gen:hero")
        assert camp is not None and hero is not None
        camp.halted_reason = evil
        hero.label = evil
        hero.headline = evil
        s.add_all([camp, hero])
        s.add(AuditEvent(name="MutationFailed", campaign_id="lead-gen", experiment_id=lead, data={"error": evil}))
        s.commit()
    for path in (
        "/",
        "/audit",
        "/gallery",
        "/approvals",
        f"/experiments/{quote(lead, safe='')}",
        "/reports",
    ):
        html = client.get(path).text
        assert "<script>" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;" in client.get("/").text


def test_the_report_is_written_in_the_background_and_linked_when_done(client: TestClient) -> None:
    r = client.get("/report.html?campaign=retarget", follow_redirects=False)  # the old link: the form, no job
    assert r.status_code == 303 and r.headers["location"] == "/reports?campaign=retarget"
    page = client.get(r.headers["location"]).text
    assert '<option value="retarget" selected>' in page and "data-job=" not in page  # a GET queues nothing
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post("/reports", data={"csrf_token": token, "campaign": "retarget"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/reports?queued=")
    job = r.headers["location"].split("=", 1)[1]
    deadline = time.monotonic() + 180
    while True:
        page = client.get("/reports").text
        row = page[page.index(f'data-job="{job}"') :]
        row = row[: row.index("</tr>")]
        if 'data-state="done"' in row:
            break
        assert 'data-state="failed"' not in row, row
        assert time.monotonic() < deadline, "the report job did not finish"
        assert '<meta http-equiv="refresh"' in page  # the page refreshes itself while a job runs
        time.sleep(0.5)
    link = re.search(r'href="(/reports/[^"]+)" data-report-link', row).group(1)  # type: ignore[union-attr]
    report = client.get(link)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert 'data-campaign="retarget"' in report.text and 'data-campaign="lead-gen"' not in report.text
    # An unknown campaign: 404, nothing queued; only a file we wrote is served.
    assert client.get("/report.html?campaign=nope").status_code == 404
    assert client.post("/reports", data={"csrf_token": token, "campaign": "nope"}).status_code == 404
    assert client.get("/reports/report-x-20260101-000000-00000000.html").status_code == 404
    assert client.get("/reports/..%2F..%2Floop.db").status_code == 404


@pytest.mark.parametrize("campaign", ["café", "名前", "<x>$a$ ../..", "-" * 200])
def test_a_report_of_any_campaign_name_is_served_and_listed_after_a_restart(tmp_path: Path, campaign: str) -> None:
    import sys

    from loop.web.report import ReportJobs

    def command(campaign: str | None, out: Path) -> list[str]:
        return [sys.executable, "-c", f"open({str(out)!r}, 'w').write('<p>report</p>')"]

    jobs = ReportJobs(tmp_path / "reports", command)
    job = jobs.submit(campaign)
    deadline = time.monotonic() + 60
    while jobs.busy:
        assert time.monotonic() < deadline, "the report job did not finish"
        time.sleep(0.05)
    [done] = jobs.jobs()
    assert done.state == "done", done.error
    assert jobs.path(done.file) == tmp_path / "reports" / job.file  # the link on the page finds the file
    [listed] = ReportJobs(tmp_path / "reports", command).jobs()  # a restarted dashboard lists it
    assert (listed.file, listed.state) == (job.file, "done")
