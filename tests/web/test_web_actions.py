"""Approve / reject from the dashboard, and the guards around every state change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from starlette.routing import Route
from starlette.testclient import TestClient

from loop.app import build_runtime
from loop.cli import main
from loop.config import Config
from loop.tick import tick
from loop.web import create_app
from loop.web.security import CSRF_COOKIE, Csrf
from policies.errors import ConfigError
from storage.db import session as open_session
from storage.images import ImageStore
from storage.models import AuditEvent, Experiment

BASE_URL = "http://127.0.0.1"
TOKEN = "a-long-enough-dashboard-token-0123"


def csrf_of(client: TestClient, page: str = "/approvals") -> str:
    html = client.get(page).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def _exp(engine: Engine, exp_id: str) -> Experiment:
    with open_session(engine) as s:
        exp = s.get(Experiment, exp_id)
        assert exp is not None
        return exp


def _events(engine: Engine, name: str, exp_id: str) -> list[AuditEvent]:
    with open_session(engine) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.name == name, AuditEvent.experiment_id == exp_id)).all())


# -- approve and reject -----------------------------------------------------------------
def test_approve_records_who_and_when_and_the_next_tick_scales(
    client: TestClient, engine_of: Engine, filled: Config, lead: str
) -> None:
    token = csrf_of(client)
    r = client.post(
        "/approvals/approve",
        data={"csrf_token": token, "experiment_id": lead, "who": "maria", "reason": "looks on brand"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"].startswith("/approvals?done=approve")
    exp = _exp(engine_of, lead)
    assert exp.approved_stage == "pro" and exp.state == "awaiting_approval"  # the next tick acts on it
    [approved] = _events(engine_of, "Approved", lead)
    assert approved.actor == "web:maria"
    assert approved.data == {"stage": "pro", "note": "looks on brand"}
    assert approved.at is not None
    page = client.get(r.headers["location"]).text
    assert f"Approved {lead}" in page
    assert 'value="maria"' in page  # remembered for the next decision
    assert "web:maria" in page  # in the recent decisions
    # The daemon's next tick puts the approved pro render live.
    rt = build_runtime(filled, engine=engine_of)
    tick(rt, rt.platform.today())  # type: ignore[attr-defined]
    assert _exp(engine_of, lead).state == "scaled"
    assert _events(engine_of, "WinnerScaled", lead)


def test_reject_needs_a_reason_and_abandons_with_it(client: TestClient, engine_of: Engine, retarget: str) -> None:
    token = csrf_of(client)
    r = client.post("/approvals/reject", data={"csrf_token": token, "experiment_id": retarget, "who": "li"})
    assert r.status_code == 400
    assert _exp(engine_of, retarget).state == "awaiting_approval"
    r = client.post(
        "/approvals/reject",
        data={"csrf_token": token, "experiment_id": retarget, "who": "li", "reason": "off-brand colours"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    exp = _exp(engine_of, retarget)
    assert exp.state == "abandoned"
    assert exp.reason == "rejected by web:li: off-brand colours"
    [rejected] = _events(engine_of, "Rejected", retarget)
    assert rejected.actor == "web:li" and rejected.data["reason"] == "off-brand colours"
    assert _events(engine_of, "ExperimentAbandoned", retarget)[0].actor == "web:li"


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"experiment_id": "no-such-experiment", "who": "ann"}, 404),
        ({"experiment_id": "<lead>", "who": ""}, 400),
        ({"experiment_id": "<lead>", "who": "<b>x</b>"}, 400),
    ],
)
def test_bad_decisions_are_refused(
    client: TestClient, engine_of: Engine, form: dict[str, str], status: int, lead: str
) -> None:
    form = {k: lead if v == "<lead>" else v for k, v in form.items()}
    r = client.post("/approvals/approve", data={"csrf_token": csrf_of(client), **form})
    assert r.status_code == status
    assert _exp(engine_of, lead).approved_stage is None


def test_deciding_twice_is_a_conflict(client: TestClient, engine_of: Engine, retarget: str) -> None:
    token = csrf_of(client)
    form = {"csrf_token": token, "experiment_id": retarget, "who": "li", "reason": "no"}
    assert client.post("/approvals/reject", data=form, follow_redirects=False).status_code == 303
    r = client.post("/approvals/approve", data=form)
    assert r.status_code == 409 and "was already rejected by web:li at" in r.text
    assert client.post("/approvals/reject", data=form).status_code == 409
    assert len(_events(engine_of, "Rejected", retarget)) == 1
    assert client.post("/approvals/launch", data=form).status_code == 404


def test_a_second_approval_and_a_reject_after_it_are_refused(client: TestClient, engine_of: Engine, lead: str) -> None:
    token = csrf_of(client)
    form = {"csrf_token": token, "experiment_id": lead, "who": "maria"}
    assert client.post("/approvals/approve", data=form, follow_redirects=False).status_code == 303
    r = client.post("/approvals/approve", data={**form, "who": "tom"})
    assert r.status_code == 409
    assert "the pro render already approved by web:maria at" in r.text and "the next tick acts on it" in r.text
    r = client.post("/approvals/reject", data={**form, "who": "tom", "reason": "too late"})
    assert r.status_code == 409 and "cannot be rejected" in r.text
    [approved] = _events(engine_of, "Approved", lead)
    assert approved.actor == "web:maria"
    assert not _events(engine_of, "Rejected", lead)
    exp = _exp(engine_of, lead)
    assert exp.state == "awaiting_approval" and exp.approved_stage == "pro"
    page = client.get("/approvals").text
    card = page[page.index(f'data-experiment="{lead}"') :]
    card = card[
        : min(i for i in (card.find('<div class="card" data-experiment=', 1), card.find("<h2>Recent")) if i > 0)
    ]
    assert "Approved by web:maria at" in card
    assert 'action="/approvals/' not in card  # a decided card offers no second decision


def test_the_cli_decides_each_stage_once(filled: Config, engine_of: Engine, lead: str, capsys) -> None:  # type: ignore[no-untyped-def]
    config = str(filled.path)
    assert main(["approve", lead, "--config", config]) == 0
    capsys.readouterr()
    assert main(["approve", lead, "--config", config]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already approved by" in err[0] and "Traceback" not in err[0]
    assert main(["reject", lead, "--config", config, "--reason", "too late"]) == 1
    assert "cannot be rejected" in capsys.readouterr().err
    assert len(_events(engine_of, "Approved", lead)) == 1 and not _events(engine_of, "Rejected", lead)


def test_state_changes_are_post_only(client: TestClient, lead: str) -> None:
    assert client.get("/approvals/approve").status_code == 405
    assert client.get(f"/approvals/approve?experiment_id={lead}&who=x").status_code == 405


# -- CSRF ----------------------------------------------------------------------------------
def _post_routes(client: TestClient) -> list[str]:
    app = client.app
    paths = []
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.methods and "POST" in route.methods:
            paths.append(route.path.replace("{action:str}", "approve"))
    return paths


def test_every_post_route_refuses_without_a_csrf_token(client: TestClient, engine_of: Engine, lead: str) -> None:
    csrf_of(client)  # the CSRF cookie is set; the form just does not echo it
    paths = _post_routes(client)
    assert "/approvals/approve" in paths
    for path in paths:
        r = client.post(path, data={"experiment_id": lead, "who": "mallory", "token": TOKEN})
        assert r.status_code == 403, path
        assert "CSRF" in r.text
    assert _exp(engine_of, lead).approved_stage is None
    assert not _events(engine_of, "Approved", lead)


def test_csrf_refusals(client: TestClient, engine_of: Engine, lead: str) -> None:
    good = csrf_of(client)
    form = {"experiment_id": lead, "who": "mallory"}
    # A token that is not the cookie's.
    other = Csrf(b"another secret").mint()
    assert client.post("/approvals/approve", data={**form, "csrf_token": other}).status_code == 403
    # A planted cookie (right shape, not signed by this server) echoed by the form.
    client.cookies.set(CSRF_COOKIE, other)
    assert client.post("/approvals/approve", data={**form, "csrf_token": other}).status_code == 403
    client.cookies.set(CSRF_COOKIE, good)
    # The right token, sent from another site.
    r = client.post("/approvals/approve", data={**form, "csrf_token": good}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.text
    assert _exp(engine_of, lead).approved_stage is None
    # And the same request from our own page goes through.
    r = client.post("/approvals/approve", data={**form, "csrf_token": good}, headers={"origin": BASE_URL})
    assert r.status_code == 200 or r.status_code == 303
    assert _exp(engine_of, lead).approved_stage == "pro"


def test_a_non_ascii_csrf_cookie_or_token_is_refused_not_a_500(
    client: TestClient, engine_of: Engine, lead: str
) -> None:
    # A quoted cookie value's octal escape decodes to a non-ASCII character (any site on localhost can set one).
    r = client.get("/", headers={"cookie": b'cl_csrf="a.\\351"'})
    assert r.status_code == 200 and CSRF_COOKIE in r.headers["set-cookie"]  # a fresh token, as for none
    csrf_of(client)
    r = client.post("/approvals/approve", data={"experiment_id": lead, "who": "mallory", "csrf_token": "é.é"})
    assert r.status_code == 403 and "CSRF" in r.text
    assert _exp(engine_of, lead).approved_stage is None


def test_a_form_is_refused_past_what_our_forms_post(client: TestClient, engine_of: Engine, lead: str) -> None:
    # Parsed before the CSRF check, so these come from anyone: no file, few fields, short fields.
    form = {"csrf_token": csrf_of(client), "experiment_id": lead, "who": "mallory"}
    r = client.post("/approvals/approve", data=form, files={"f": ("big.bin", b"x" * 2_000_000)})
    assert r.status_code == 400 and "files" in r.text
    r = client.post("/approvals/approve", data={**form, **{f"x{i}": "1" for i in range(30)}})
    assert r.status_code == 400 and "fields" in r.text
    r = client.post("/approvals/approve", data={**form, "reason": "x" * 100_000})
    assert r.status_code == 400 and "maximum size" in r.text
    assert _exp(engine_of, lead).approved_stage is None
    # The longest note the form allows, in a script that takes 9 bytes a character once encoded, still goes through.
    r = client.post("/approvals/approve", data={**form, "reason": "名" * 500}, follow_redirects=False)
    assert r.status_code == 303 and _exp(engine_of, lead).approved_stage == "pro"


def test_a_loopback_bind_answers_loopback_hosts_only(client: TestClient) -> None:
    assert client.get("/", headers={"host": "localhost:8080"}).status_code == 200
    r = client.get("/", headers={"host": "attacker.example"})  # DNS rebinding
    assert r.status_code == 400


# -- the access token on a non-local bind ----------------------------------------------------
def test_a_non_local_bind_without_a_token_refuses_to_start(
    filled: Config, engine_of: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CL_TEST_WEB_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="web.access_token_env.*CL_TEST_WEB_TOKEN"):
        create_app(filled, engine=engine_of, host="0.0.0.0")
    monkeypatch.setenv("CL_TEST_WEB_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(filled, engine=engine_of, host="0.0.0.0")
    monkeypatch.delenv("CL_TEST_WEB_TOKEN")
    assert main(["serve", "--config", str(filled.path), "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CL_TEST_WEB_TOKEN" in err[0] and "Traceback" not in err[0]


def test_serve_logs_as_the_config_says_with_tokens_redacted(
    filled: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging

    import uvicorn

    path = filled.path.with_name("json-logs.toml")
    path.write_text(filled.path.read_text().replace("[loop]\n", '[loop]\nlog_format = "json"\n', 1))
    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))  # the server itself is not under test
    assert main(["serve", "--config", str(path), "--port", "8765"]) == 0
    assert served
    capsys.readouterr()
    logging.getLogger("creative_loop.web").error("report failed: GET /x?access_token=EAAB-secret-value")
    [line] = capsys.readouterr().err.strip().splitlines()
    doc = json.loads(line)
    assert doc["logger"] == "creative_loop.web" and "EAAB-secret-value" not in line and "access_token=***" in doc["msg"]


@pytest.fixture
def public(filled: Config, engine_of: Engine, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CL_TEST_WEB_TOKEN", TOKEN)
    app = create_app(filled, engine=engine_of, images=ImageStore(filled.data_dir / "images"), host="0.0.0.0")
    return TestClient(app, base_url="http://dashboard.example")


def test_a_non_local_bind_requires_the_token(public: TestClient, engine_of: Engine, lead: str) -> None:
    for path in ("/", "/approvals", "/ledger.csv", "/metrics", "/audit", f"/images/{'0' * 64}.png"):
        r = public.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
    r = public.get("/approvals", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fapprovals"
    assert public.get("/", headers={"authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert public.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert public.get("/healthz").status_code in (200, 503)  # open to load balancers
    # A state change without the token is refused before anything else.
    r = public.post("/approvals/approve", data={"experiment_id": lead, "who": "x"})
    assert r.status_code == 401
    assert _exp(engine_of, lead).approved_stage is None


def test_a_non_ascii_bearer_token_or_auth_cookie_is_a_401_not_a_500(public: TestClient) -> None:
    for headers in ({"authorization": "Bearer é".encode()}, {"cookie": b'cl_auth="\\351"'}):
        r = public.get("/", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["x-frame-options"] == "DENY"


def test_login_sets_a_cookie_that_is_not_the_token(public: TestClient, engine_of: Engine, lead: str) -> None:
    page = public.get("/login?next=/approvals").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = public.post("/login", data={"csrf_token": token, "token": "nope", "next": "/approvals"})
    assert r.status_code == 401
    r = public.post(
        "/login", data={"csrf_token": token, "token": TOKEN, "next": "//evil.example/"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    assert TOKEN not in r.headers["set-cookie"]
    assert public.get("/approvals").status_code == 200
    r = public.post(
        "/approvals/approve",
        data={"csrf_token": csrf_of(public), "experiment_id": lead, "who": "ops"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert _exp(engine_of, lead).approved_stage == "pro"


def test_login_is_not_needed_on_loopback(client: TestClient) -> None:
    r = client.get("/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_report_command_and_simulate_report(filled: Config, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--config", str(filled.path), "--campaign", "lead-gen", "--out", str(out)]) == 0
    html = out.read_text()
    assert 'data-campaign="lead-gen"' in html and 'data-campaign="retarget"' not in html
    _assert_offline(html)
    assert main(["report", "--config", str(filled.path), "--campaign", "nope", "--out", str(out)]) == 2
    sim = tmp_path / "sim"
    rep = tmp_path / "sim-report.html"
    assert main(["simulate", "--days", "24", "--out", str(sim), "--report", str(rep), "--quiet"]) == 0
    html = rep.read_text()
    _assert_offline(html)
    assert "data:image/png;base64," in html and "data:image/svg+xml;base64," in html


def _assert_offline(html: str) -> None:
    """Nothing the page loads comes from anywhere but the file itself."""
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', html):
        assert value.startswith(("data:", "#")), f"{attr}={value[:80]}"
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_simulate_leaves_a_database_the_dashboard_shows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make run` then the command it prints: the dashboard shows the run (not "No campaigns yet")."""
    from loop.config import load_config

    out = tmp_path / "out"
    assert main(["simulate", "--days", "14", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"dashboard: (\S+) serve --config (\S+)", printed.replace("\n", " "))
    assert match, printed
    config = Path(match.group(2))
    assert config.resolve() == (out / "creative-loop.toml").resolve()
    cfg = load_config(config)
    assert cfg.database_url == f"sqlite:///{(out / 'simulate.db').resolve()}"
    app = create_app(cfg, default_actor="tester")
    with TestClient(app, base_url=BASE_URL) as c:
        html = c.get("/").text
        assert 'data-campaign="lead-gen"' in html and 'data-campaign="retarget"' in html
        assert "No campaigns yet" not in html
        assert c.get("/ledger").status_code == 200
    app.state.dashboard.engine.dispose()
