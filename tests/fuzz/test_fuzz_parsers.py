"""Hypothesis fuzz: random insight payloads and random configs through the parsers.

Whatever comes in, a parser either returns checked values or raises our one
error class with one line; never another exception, never a half result.
"""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ads.payloads import MAX_IMPRESSIONS, InvalidPayload, parse_insights
from loop.config import load_config
from policies.errors import ConfigError

SINCE, UNTIL = date(2026, 1, 1), date(2026, 1, 31)


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(doc: dict) -> str:
    """Enough of a TOML writer for the documents below."""
    lines = ["[loop]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.get("loop", {}).items()]
    for c in doc.get("campaigns", []):
        lines += ["[[campaigns]]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in c.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**13), 10**13), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["12", "0", "-1", "1e3", "8.50", "NaN", " 7 ", "2026-01-07", ""]),
)  # fmt: skip
days = st.dates(date(2025, 12, 25), date(2026, 2, 5)).map(date.isoformat) | scalars
row = st.fixed_dictionaries(
    {},
    optional={
        "ad_id": st.one_of(st.sampled_from(["42", "43", "../x", ""]), scalars),
        "date_start": days, "date_stop": days,
        "impressions": scalars, "clicks": scalars, "spend": scalars, "reach": scalars, "frequency": scalars,
        "actions": st.one_of(scalars, st.lists(st.dictionaries(st.sampled_from(["action_type", "value"]), scalars))),
    },
)  # fmt: skip
payloads = st.one_of(st.lists(row, max_size=6), st.fixed_dictionaries({"data": st.lists(row, max_size=6)}), scalars)


@settings(max_examples=400, deadline=None)
@given(payload=payloads, currency=st.one_of(st.sampled_from(["USD", "JPY", "EUR", "XYZ", "usd"]), scalars))
def test_insight_payloads_parse_or_fail_with_one_line(payload, currency) -> None:  # type: ignore[no-untyped-def]
    try:
        rows = parse_insights(payload, currency=currency, since=SINCE, until=UNTIL, campaign="shop")
    except InvalidPayload as exc:
        assert str(exc).startswith("campaign shop: ") and "\n" not in str(exc)
        return
    for r in rows:
        assert SINCE <= r.day <= UNTIL
        assert 0 <= r.clicks <= r.impressions <= MAX_IMPRESSIONS and r.spend_minor >= 0
    assert len({(r.ad_id, r.day) for r in rows}) == len(rows)


keys = st.sampled_from(
    ["database", "data_dir", "platform", "approval", "interval_minutes", "cron", "timezone", "log_format", "colour"]
)
values = st.one_of(
    st.integers(-5, 100), st.floats(-1, 1e3, allow_nan=False), st.booleans(), st.text(max_size=10),
    st.sampled_from(["sqlite:///x.db", "meta", "simulated", "none", "pro", "json", "*/5 * * * *", "99 * * * *", "UTC", "Nowhere/City"]),
)  # fmt: skip
campaign = st.fixed_dictionaries(
    {"id": st.sampled_from(["shop", "a/b", "", "x"])},
    optional={
        "test_spend_cap": st.floats(-10, 1000, allow_nan=False), "test_daily_budget": st.floats(-1, 500, allow_nan=False),
        "variants": st.integers(-1, 60), "policy": st.sampled_from(["thompson", "ucb1", "nope"]), "currency": st.text(max_size=4),
    },
)  # fmt: skip
configs = st.fixed_dictionaries(
    {},
    optional={
        "loop": st.dictionaries(keys, values, max_size=4),
        "campaigns": st.lists(campaign, min_size=1, max_size=3),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=configs)
def test_random_configs_load_or_fail_with_one_line(tmp_path: Path, doc: dict) -> None:
    path = tmp_path / "c.toml"
    path.write_text(to_toml(doc))
    expected = {"loop": {}, **{k: v for k, v in doc.items() if v}}
    assert {k: v for k, v in tomllib.loads(path.read_text()).items()} == expected
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        line = str(exc)
        assert line.startswith(f"{path}") and "\n" not in line and "Traceback" not in line
        return
    for c in cfg.model.campaigns:  # what loads is valid
        assert c.test_spend_cap is None or c.test_spend_cap >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_bytes_as_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
