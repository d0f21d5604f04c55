"""The creative-fatigue webhook: handshake, signatures, recorded signals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import select
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from connectors.meta.webhook import fatigue_changes, make_webhook_app, signature
from storage.db import session as open_session
from storage.models import Campaign, Creative, PlatformSignal

SECRET = "app-secret"
VERIFY = "verify-me"


def payload(*changes: dict[str, Any]) -> bytes:
    return json.dumps(
        {"object": "ad_account", "entry": [{"id": "act_111", "time": 1767225600, "changes": list(changes)}]}
    ).encode()


def mounted(engine: Any) -> TestClient:
    # Mounted as the dashboard will mount it.
    app = Starlette(routes=[Mount("/webhooks/meta", make_webhook_app(engine, app_secret=SECRET, verify_token=VERIFY))])
    return TestClient(app)


@pytest.fixture
def client(sqlite_engine: Any) -> TestClient:
    return mounted(sqlite_engine)


def test_handshake_echoes_the_challenge(client: TestClient) -> None:
    ok = client.get(
        "/webhooks/meta/", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = client.get(
        "/webhooks/meta/", params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert bad.status_code == 403
    odd = client.get("/webhooks/meta/", params={"hub.mode": "subscribe", "hub.verify_token": "é", "hub.challenge": "1"})
    assert odd.status_code == 403  # refused, not a 500 (compare_digest takes no non-ASCII str)


def test_signed_fatigue_notifications_are_recorded(engine: Any) -> None:
    client = mounted(engine)  # on SQLite and PostgreSQL
    with open_session(engine) as s:
        s.add(Campaign(id="lead-gen"))
        s.add(Creative(id="lead-gen:900", campaign_id="lead-gen", role="live", platform_ad_id="900"))
        s.commit()
    body = payload(
        {"field": "creative_fatigue", "value": {"ad_id": "900", "level": "FATIGUED", "score": 0.8}},
        {"field": "creative_fatigue", "value": {"ad_id": "901", "fatigue_level": "AT_RISK"}},
        {"field": "in_process_ad_objects", "value": {"id": "902", "status": "ACTIVE"}},
    )
    r = client.post("/webhooks/meta/", content=body, headers={"X-Hub-Signature-256": signature(body, SECRET)})
    assert r.status_code == 200 and r.json() == {"recorded": 2}
    with open_session(engine) as s:
        rows = s.exec(select(PlatformSignal).order_by(PlatformSignal.platform_ad_id)).all()
    assert [(x.platform_ad_id, x.campaign_id, x.name, x.level, x.value) for x in rows] == [
        ("900", "lead-gen", "creative_fatigue", "FATIGUED", 0.8),
        ("901", None, "creative_fatigue", "AT_RISK", None),
    ]
    assert rows[0].data["account"] == "act_111"


@pytest.mark.parametrize(
    "header", [None, "sha256=" + "0" * 64, "sha1=abc", signature(b"other body", SECRET), "sha256=é".encode()]
)
def test_bad_signatures_are_rejected(client: TestClient, sqlite_engine: Any, header: str | bytes | None) -> None:
    body = payload({"field": "creative_fatigue", "value": {"ad_id": "900", "level": "FATIGUED"}})
    headers = {"X-Hub-Signature-256": header} if header else {}
    assert client.post("/webhooks/meta/", content=body, headers=headers).status_code == 403
    with open_session(sqlite_engine) as s:
        assert s.exec(select(PlatformSignal)).first() is None


def test_wrong_secret_is_rejected(client: TestClient) -> None:
    body = payload({"field": "creative_fatigue", "value": {"ad_id": "900", "level": "FATIGUED"}})
    assert (
        client.post("/webhooks/meta/", content=body, headers={"X-Hub-Signature-256": signature(body, "x")}).status_code
        == 403
    )


def test_oversized_and_malformed_bodies(client: TestClient) -> None:
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert (
        client.post("/webhooks/meta/", content=big, headers={"X-Hub-Signature-256": signature(big, SECRET)}).status_code
        == 413
    )
    junk = b"not json"
    assert (
        client.post(
            "/webhooks/meta/", content=junk, headers={"X-Hub-Signature-256": signature(junk, SECRET)}
        ).status_code
        == 400
    )


def test_change_parsing_ignores_what_it_cannot_use() -> None:
    assert fatigue_changes([]) == []
    assert fatigue_changes({"entry": [{"changes": [{"field": "creative_fatigue", "value": {"level": "X"}}]}]}) == []
    assert fatigue_changes({"entry": ["x", {"changes": ["y", {"field": "creative_fatigue", "value": 3}]}]}) == []


def test_the_app_needs_its_secrets(sqlite_engine: Any) -> None:
    with pytest.raises(ValueError, match="app_secret"):
        make_webhook_app(sqlite_engine, app_secret="", verify_token=VERIFY)
    with pytest.raises(ValueError, match="verify_token"):
        make_webhook_app(sqlite_engine, app_secret=SECRET, verify_token="")


def test_the_loop_wires_the_webhook_from_the_environment(
    sqlite_engine: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from loop.app import meta_webhook
    from loop.config import load_config
    from policies.errors import ConfigError

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text('[meta]\napp_secret_env = "T_SECRET"\nwebhook_verify_token_env = "T_VERIFY"\n')
    cfg = load_config(cfg_path)
    monkeypatch.setenv("T_SECRET", SECRET)
    with pytest.raises(ConfigError, match="T_VERIFY"):
        meta_webhook(cfg, sqlite_engine)
    monkeypatch.setenv("T_VERIFY", VERIFY)
    c = TestClient(meta_webhook(cfg, sqlite_engine))
    assert c.get("/", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "7"}).text == "7"


def test_the_dashboard_answers_both_spellings_of_the_callback_url_directly(
    engine: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Meta verifies the URL as registered and does not follow redirects: no 307 to the slashed form."""
    from loop.config import load_config
    from loop.web.app import create_app

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(
        f'[loop]\ndatabase = "sqlite:///{tmp_path / "db.sqlite"}"\ndata_dir = "{tmp_path / "data"}"\n'
        '[meta]\napp_secret_env = "T_SECRET"\nwebhook_verify_token_env = "T_VERIFY"\n'
    )
    monkeypatch.setenv("T_SECRET", SECRET)
    monkeypatch.setenv("T_VERIFY", VERIFY)
    with open_session(engine) as s:
        s.add(Campaign(id="lead-gen"))
        s.add(Creative(id="lead-gen:900", campaign_id="lead-gen", role="live", platform_ad_id="900"))
        s.commit()
    app = create_app(load_config(cfg_path), engine=engine)
    client = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)
    hub = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "4711"}
    body = payload({"field": "creative_fatigue", "value": {"ad_id": "900", "level": "FATIGUED"}})
    for url in ("/webhooks/meta", "/webhooks/meta/"):
        got = client.get(url, params=hub)
        assert (got.status_code, got.text) == (200, "4711"), url
        sent = client.post(url, content=body, headers={"X-Hub-Signature-256": signature(body, SECRET)})
        assert (sent.status_code, sent.json()) == (200, {"recorded": 1}), url
    with open_session(engine) as s:
        assert len(s.exec(select(PlatformSignal)).all()) == 2


def test_webhook_routes_and_field_switches(sqlite_engine: Any) -> None:
    from connectors.meta.webhook import webhook_routes

    app = make_webhook_app(
        sqlite_engine, app_secret=SECRET, verify_token=VERIFY, fields=["ad_fatigue_v2"], level_keys=["state"]
    )
    client = TestClient(Starlette(routes=webhook_routes("/hooks/meta/", app)), follow_redirects=False)
    body = payload(
        {"field": "ad_fatigue_v2", "value": {"ad_id": "900", "state": "FATIGUED"}},
        {"field": "creative_fatigue", "value": {"ad_id": "901", "level": "FATIGUED"}},  # not this account's field
    )
    for url in ("/hooks/meta", "/hooks/meta/"):
        r = client.post(url, content=body, headers={"X-Hub-Signature-256": signature(body, SECRET)})
        assert (r.status_code, r.json()) == (200, {"recorded": 1})
    assert client.put("/hooks/meta").status_code == 405
    assert fatigue_changes(json.loads(body)) == [
        {"ad_id": "901", "level": "FATIGUED", "value": {"ad_id": "901", "level": "FATIGUED"}, "account": "act_111"}
    ]
