"""Bad input, class by class: one clear line (exit 2 from the CLI), and nothing stored lost or half-written."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import (
    ROOT,
    SCENARIO,
    make_runtime,
    run_days,
    snapshot,
    subprocess_env,
    write_config,
    write_scenario,
)
from sqlmodel import select

from connectors.ads.base import InsightRow, SourceCreative
from connectors.ads.payloads import InvalidPayload, check_rows, parse_insights
from connectors.ads.simulated import SimulatedAdPlatform
from storage.db import session as open_session
from storage.imagecheck import ImageRejected, load_image
from storage.ledger import Ledger
from storage.models import Creative, DailyMetric, Experiment
from storage.safenames import UnsafePath, contained, safe_component


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """The CLI run in this process sets up logging on pytest's captured stream: put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loop", *args], env=env or subprocess_env(), cwd=ROOT, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a day of history, written once by a real tick process with a good config."""
    folder = tmp_path_factory.mktemp("good")
    good = write_config(folder / "good", f"sqlite:///{folder / 'db.sqlite'}", write_scenario(folder))
    proc = cli("tick", "--config", str(good))
    assert proc.returncode == 0, proc.stderr
    return folder / "db.sqlite"


# -- config ----------------------------------------------------------------------------
CAMPAIGN = '[[campaigns]]\nid = "x"\ntest_spend_cap = 100.0\ncredit_cap = 10.0\ntest_daily_budget = 10.0\nfast_credit_cost = 0.1\npro_credit_cost = 1.0\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[loop]\ncolour = "red"\n', "loop.colour: unknown key (allowed: database, data_dir"),
        ('[loop]\ninterval_minutes = "often"\n', "loop.interval_minutes: Input should be a valid number"),
        (
            '[[campaigns]]\nid = "x"\ntest_spend_cap = -5.0\n',
            "campaigns[0].test_spend_cap: Input should be greater than or equal to 0",
        ),
        (
            '[[campaigns]]\nid = "x"\ntest_spend_cap = 10.0\ntest_daily_budget = 20.0\n',
            "campaigns[0]: test_daily_budget 20.0 x overspend 1.25 exceeds test_spend_cap 10.0",
        ),
        ('[loop]\ncron = "61 * * * *"\n', "loop.cron: invalid cron expression '61 * * * *'"),
        ('[loop]\ntimezone = "Mars/Olympus"\n', "loop.timezone: unknown time zone 'Mars/Olympus'"),
        ('[loop]\ndatabase = "postgres://u:hunter2@host/db"\n', "loop.database: unsupported database 'postgres'"),
        ('[loop]\ndatabase = "not a url"\n', "loop.database: not a database URL"),
        (
            '[loop]\nplatform = "meta"\n' + CAMPAIGN,
            "meta.access_token_env: environment variable META_ACCESS_TOKEN is not set",
        ),
        ("[loop\n", "invalid TOML"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "negative-cap",
        "cap-below-a-day",
        "invalid-cron",
        "timezone",
        "database-backend",
        "database-url",
        "missing-secret",
        "not-toml",
    ],
)
def test_bad_config_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path,
    good_db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    expected: str,
) -> None:
    # The CLI's entry point in this process (a subprocess per case costs seconds each; the
    # crash and daemon tests run real processes): the exit code is what `creative-loop` returns.
    from loop.cli import main

    db = tmp_path / "db.sqlite"
    db.write_bytes(good_db.read_bytes())
    before = db.read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[loop]\ndatabase = "sqlite:///{db}"\n' if "[loop]" not in text else "")
    bad.write_text(bad.read_text() + text)
    monkeypatch.delenv("META_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("CREATIVE_LOOP_DATABASE", raising=False)
    capsys.readouterr()
    code = main(["tick", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"creative-loop: {bad}") and expected in lines[0], lines[0]
    assert "hunter2" not in err
    assert db.read_bytes() == before


# -- scenario files --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.replace("seed = 11", "seed = 11\ncolour = 1"), "colour: unknown key"),
        (
            lambda s: s.replace("ctr = 0.02", "ctr = -0.02"),
            "campaigns[0].creatives[0].ctr: Input should be greater than 0",
        ),
        (
            lambda s: s.replace("ctr = 0.02", 'ctr = "high"'),
            "campaigns[0].creatives[0].ctr: Input should be a valid number",
        ),
        (lambda s: s.replace('id = "steady"', 'id = "hero"'), "creative ids must be unique"),
        (
            lambda s: s.replace('id = "hero"', 'id = "../../etc/passwd"'),
            "campaigns[0].creatives[0].id: String should match pattern",
        ),
        (
            lambda s: s.replace("daily_impressions = 30000\n", ""),
            "campaigns[0].daily_impressions: missing required key",
        ),
        (lambda s: s + "[[[", "invalid TOML"),
    ],
    ids=["unknown-key", "negative", "wrong-type", "duplicate", "path-like-id", "missing", "not-toml"],
)
def test_bad_scenario_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, expected: str
) -> None:  # type: ignore[no-untyped-def]
    from reliability_helpers import SCENARIO

    from loop.cli import main

    scenario = write_scenario(tmp_path, mutate(SCENARIO))
    capsys.readouterr()
    code = main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "out"), "--quiet", "--days", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"creative-loop: {scenario}") and expected in lines[0], err
    assert not (tmp_path / "out" / "result.json").exists()


# -- platform payloads -------------------------------------------------------------------
GOOD = {
    "ad_id": "42",
    "date_start": "2026-01-07",
    "date_stop": "2026-01-07",
    "impressions": "1000",
    "clicks": "12",
    "spend": "8.50",
}
WINDOW = {"since": date(2026, 1, 5), "until": date(2026, 1, 8), "campaign": "shop"}


def test_a_good_payload_parses() -> None:
    rows = parse_insights({"data": [GOOD, {**GOOD, "ad_id": "43"}, dict(GOOD)]}, currency="EUR", **WINDOW)
    assert rows == [
        InsightRow("42", date(2026, 1, 7), 1000, 12, 850),
        InsightRow("43", date(2026, 1, 7), 1000, 12, 850),
    ]
    assert parse_insights([GOOD], currency="JPY")[0].spend_minor == 9  # no minor units in yen


@pytest.mark.parametrize(
    ("rows", "currency", "expected"),
    [
        ([{k: v for k, v in GOOD.items() if k != "clicks"}], "USD", "insights row 0: missing field(s) clicks"),
        ([{**GOOD, "impressions": None}], "USD", "insights row 0 (ad 42, 2026-01-07): impressions: missing or null"),
        ([{**GOOD, "clicks": "12abc"}], "USD", "clicks: expected a whole number, got '12abc'"),
        ([{**GOOD, "clicks": 1.5}], "USD", "clicks: expected a whole number, got 1.5"),
        ([{**GOOD, "spend": "lots"}], "USD", "spend: expected a decimal amount, got 'lots'"),
        ([{**GOOD, "spend": "NaN"}], "USD", "spend: expected a decimal amount"),
        ([{**GOOD, "clicks": "-3"}], "USD", "clicks: negative (-3)"),
        ([{**GOOD, "spend": "-1.00"}], "USD", "spend: negative"),
        ([{**GOOD, "impressions": str(10**12)}], "USD", "impressions: absurd value"),
        ([{**GOOD, "clicks": "5000"}], "USD", "clicks (5000) exceed impressions (1000)"),
        (
            [GOOD, {**GOOD, "clicks": "13"}],
            "USD",
            "insights row 1 (ad 42, 2026-01-07): the same ad and day reported twice",
        ),
        ([{**GOOD, "date_start": "2026-01-02", "date_stop": "2026-01-02"}], "USD", "day outside the window asked for"),
        ([{**GOOD, "date_stop": "2026-01-06"}], "USD", "not a daily row: 2026-01-07..2026-01-06"),
        ([{**GOOD, "date_start": "yesterday"}], "USD", "date_start: expected a date YYYY-MM-DD"),
        ([{**GOOD, "ad_id": "../../x"}], "USD", "ad_id: expected an id, got '../../x'"),
        ([GOOD], "XYZ", "account: unknown currency 'XYZ'"),
        ([GOOD], None, "unknown currency None"),
        ("rows", "USD", "insights: expected a list of rows, got str"),
    ],
)
def test_bad_payloads_are_refused_with_one_line(rows, currency, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPayload) as err:
        parse_insights(rows, currency=currency, **WINDOW)
    message = str(err.value)
    assert message.startswith("campaign shop: ") and expected in message and "\n" not in message, message


def test_connector_rows_are_checked_too() -> None:
    row = InsightRow("42", date(2026, 1, 7), 100, 3, 50)
    assert check_rows([row, row]) == [row]  # an exact repeat collapses
    with pytest.raises(InvalidPayload, match="impressions: negative"):
        check_rows([InsightRow("42", date(2026, 1, 7), -1, 0, 0)])
    with pytest.raises(InvalidPayload, match="spend_minor: expected a whole number, got '5'"):
        check_rows([InsightRow("42", date(2026, 1, 7), 1, 0, "5")])  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload, match="frequency"):
        check_rows([InsightRow("42", date(2026, 1, 7), 1, 0, 0, frequency=float("inf"))])


class LyingPlatform(SimulatedAdPlatform):
    """A simulated platform that, from ``bad_from`` on, reports one impossible row among good ones."""

    bad_from = 10**9

    def insights(self, campaign, since, until):  # type: ignore[no-untyped-def]
        rows = super().insights(campaign, since, until)
        if self.day >= self.bad_from and rows:
            rows = [*rows[:-1], InsightRow(rows[-1].ad_id, rows[-1].day, 10, 50, 1)]
        return rows


def test_a_bad_payload_stores_nothing_and_the_loop_resumes(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path / "run", write_scenario(tmp_path))
    lying = LyingPlatform(rt.platform.scenario, state_path=rt.platform.state_path)
    rt.platform = lying
    assert run_days(rt, 5) == []
    with open_session(sqlite_engine) as s:
        before = sorted((m.creative_id, m.day, m.clicks) for m in s.exec(select(DailyMetric)))
    lying.bad_from = lying.day
    errors = run_days(rt, 2)
    assert len(errors) == 2 and all("clicks (50) exceed impressions (10)" in e for e in errors), errors
    with open_session(sqlite_engine) as s:  # not one row of the bad batches was written
        assert sorted((m.creative_id, m.day, m.clicks) for m in s.exec(select(DailyMetric))) == before
    lying.bad_from = 10**9
    assert run_days(rt, 1) == []  # the platform is sane again: the next tick catches up on every missed day
    with open_session(sqlite_engine) as s:
        days = {m.day for m in s.exec(select(DailyMetric))}
    assert len(days) == lying.day - 1


# -- images ----------------------------------------------------------------------------
def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty, expected image bytes"),
        (b"hello, not an image", "not an image"),
        (png(Image.new("RGB", (64, 64)), "BMP"), "not an image (or not one of PNG, JPEG, WEBP, GIF)"),
        (png(Image.effect_noise((256, 256), 60).convert("RGB"))[:3000], "truncated or corrupt PNG image"),
        (png(Image.new("1", (8000, 8000))), "decompression bomb refused: 8000x8000 = 64000000 pixels"),
        (png(Image.new("1", (30000, 10))), "decompression bomb refused: 30000x10"),
    ],
    ids=["empty", "text", "bmp", "truncated", "bomb", "long-side"],
)
def test_bad_images_are_refused(data: bytes, expected: str) -> None:
    with pytest.raises(ImageRejected) as err:
        load_image(data, where="ad 42 source image")
    assert str(err.value).startswith("ad 42 source image: ") and expected in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("image", "fmt", "pixel"),
    [
        (Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (Image.new("RGBA", (16, 16), (0, 0, 255, 0)), "PNG", (255, 255, 255)),  # transparent: flattened onto white
        (Image.new("LA", (16, 16), (0, 255)), "PNG", (0, 0, 0)),
        (Image.new("L", (16, 16), 128), "PNG", (128, 128, 128)),
        (Image.new("P", (16, 16), 3), "GIF", None),
    ],
    ids=["cmyk", "rgba", "la", "grey", "palette"],
)
def test_image_modes_are_normalised_to_rgb(image: Image.Image, fmt: str, pixel) -> None:  # type: ignore[no-untyped-def]
    out = load_image(png(image, fmt))
    assert out.mode == "RGB" and out.size == (16, 16)
    if pixel is not None:
        assert all(abs(a - b) <= 3 for a, b in zip(out.getpixel((8, 8)), pixel, strict=True)), out.getpixel((8, 8))


def test_16_bit_greyscale_keeps_its_range() -> None:
    deep = Image.new("I;16", (4, 1))
    deep.putdata([0, 1000, 30000, 65535])
    out = load_image(png(deep))
    assert out.mode == "RGB" and [out.getpixel((x, 0))[0] for x in range(4)] == [0, 3, 116, 255]


class BadImagePlatform(SimulatedAdPlatform):
    def source_creative(self, campaign, ad_id):  # type: ignore[no-untyped-def]
        good = super().source_creative(campaign, ad_id)
        return SourceCreative(ad_id, good.image[: len(good.image) // 3], headline=good.headline)


def test_a_bad_source_image_abandons_the_experiment_and_frees_its_credits(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path / "run", write_scenario(tmp_path))
    rt.platform = BadImagePlatform(rt.platform.scenario, state_path=rt.platform.state_path)
    errors = run_days(rt, 30)
    assert errors == []  # the tick went on; the experiment says why it stopped
    with open_session(sqlite_engine) as s:
        exps = s.exec(select(Experiment)).all()
        assert exps and all(e.state == "abandoned" for e in exps)
        assert "source image rejected: truncated or corrupt PNG image" in exps[0].reason
        credit = Ledger(s).state("shop", "credit")
        assert credit.reserved == 0 and credit.spent == 0


# -- names near paths ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..", ".", "", "a/b", "a\\b", "nul\x00byte", "/abs", "-rf", "ünïcødé", "x" * 500, "con"],
)
def test_platform_names_become_one_safe_component(tmp_path: Path, name: str) -> None:
    part = safe_component(name)
    assert part and "/" not in part and "\\" not in part and "\x00" not in part and part not in (".", "..")
    assert not part.startswith((".", "-")) and len(part) <= 111 and part.isascii()
    assert contained(tmp_path, name, name).parent.parent == tmp_path.resolve()


def test_different_names_never_share_a_file() -> None:
    names = ["a/b", "a_b", "a\\b", "a b", "a:b", "../a_b", "A_B"]
    assert len({safe_component(n) for n in names}) >= len(names) - 1  # "a:b" is our own id style, kept readable
    assert safe_component("shop:hero:2026-01-21") == "shop_hero_2026-01-21"


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    os.symlink("/", tmp_path / "root" / "escape")
    with pytest.raises(UnsafePath, match="resolves outside"):
        contained(tmp_path / "root", "escape", "etc")


def test_gallery_export_keeps_platform_names_inside(sqlite_engine, tmp_path: Path) -> None:
    from loop.simulate import export_gallery

    rt = make_runtime(sqlite_engine, tmp_path / "run", write_scenario(tmp_path))
    digest = rt.images.put(Image.new("RGB", (8, 8)))
    run_days(rt, 1)
    with open_session(sqlite_engine) as s:
        for i, label in enumerate(["../../../escaped", "/etc/cron.d/x", "a/b", "a_b"]):
            s.add(Creative(id=f"shop:evil{i}", campaign_id="shop", role="live", label=label, image_hash=digest))
        s.commit()
    written = export_gallery(rt, tmp_path / "out")
    root = (tmp_path / "out" / "gallery").resolve()
    assert len(written) == 4 and len(set(written)) == 4
    assert all(root in p.resolve().parents for p in written)
    assert not (tmp_path / "escaped.png").exists()


def test_snapshot_helper_reads_the_state(sqlite_engine, tmp_path: Path) -> None:
    rt = make_runtime(sqlite_engine, tmp_path / "run", write_scenario(tmp_path))
    run_days(rt, 2)
    assert snapshot(sqlite_engine, tmp_path / "run" / "platform.json")["platform_day"] == 2


# -- issue 15: every bad input the reliability probe found, through the real CLI --------------------------
# One table; each case is a config (and perhaps a scenario) pointing at a database with history, a
# command, and the one line it must give. Config and scenario cases run through the CLI's entry point
# in this process (a subprocess per case costs seconds each); `run`, outages and anything that needs
# its own environment run `python -m loop` in a subprocess. The database, on each backend, is shared
# by the cases and must be byte-identical (SQLite) or row-identical (PostgreSQL) after every one.
LONG = "x" * 5000


def _scenario(old: str, new: str) -> str:
    assert old in SCENARIO, old
    return SCENARIO.replace(old, new)


def _merge(base: str, extra: str) -> str:
    """``base`` with ``extra``'s lines: a table both have gets them (they win over its keys; TOML allows
    one of each table), anything else goes after ``base``."""

    def tables(text: str, tag: str) -> tuple[dict[str, list[str]], list[str]]:
        found: dict[str, list[str]] = {"": []}
        order, current = [""], ""
        for line in text.splitlines():
            if line.startswith("["):
                # An array of tables ([[campaigns]]) is a new entry every time: never merged.
                current = f"{line}#{tag}{len(order)}" if line.startswith("[[") else line
                found[current] = []
                order.append(current)
            elif line.strip():
                found[current].append(line)
        return found, order

    have, order = tables(base, "b")
    more, more_order = tables(extra, "e")
    for header in more_order:
        if header in have:
            keys = {line.split("=")[0].strip() for line in more[header]}
            have[header] = more[header] + [ln for ln in have[header] if ln.split("=")[0].strip() not in keys]
        else:
            have[header] = more[header]
            order.append(header)
    out: list[str] = []
    for header in order:
        out += ([header.split("#")[0]] if header else []) + have[header]
    return "\n".join(out) + "\n"


BAD_INPUTS = [
    # id, config lines, scenario text (or None: the good one), command, exit code, expected in the line
    ("test-spend-cap-1e308", '[[campaigns]]\nid = "shop"\ntest_spend_cap = 1e308\n', None, ["tick"], 2,
     "campaigns[0].test_spend_cap: Input should be less than or equal to 20000000"),
    ("test-spend-cap-inf", '[[campaigns]]\nid = "shop"\ntest_spend_cap = inf\n', None, ["tick"], 2,
     "campaigns[0].test_spend_cap: Input should be a finite number"),
    ("credit-cap-nan", '[defaults]\noverspend = nan\n', None, ["tick"], 2, "defaults.overspend: Input should be a finite number"),
    ("scenario-cpm-inf", "", _scenario("cpm = 8.0", "cpm = inf"), ["tick"], 2,
     "campaigns[0].cpm: Input should be a finite number"),
    ("scenario-budget-over-cap", "", _scenario("test_daily_budget = 60.0", "test_daily_budget = 450.0"), ["tick"], 2,
     "campaigns[shop]: test_daily_budget 450.0 x overspend 1.25 exceeds test_spend_cap 500.0"),
    ("scenario-1e17-impressions", "", _scenario("daily_impressions = 30000", "daily_impressions = 100000000000000000"),
     ["tick"], 2, "campaigns[0].daily_impressions: Input should be less than or equal to 1000000000"),
    ("scenario-long-creative-id", "", _scenario('id = "steady"', f'id = "{"s" * 101}"'), ["tick"], 2,
     "campaigns[0].creatives[1].id: String should have at most 100 characters"),
    ("start-date-yesterday", '[simulated]\nstart_date = "yesterday"\n', None, ["tick"], 2,
     "simulated.start_date: expected a date YYYY-MM-DD, got 'yesterday'"),
    ("scenario-file-missing", '[simulated]\nscenario = "/nonexistent/scenario.toml"\n', None, ["tick"], 2,
     "simulated.scenario: no scenario file '/nonexistent/scenario.toml'"),
    ("interval-1e308", "[loop]\ninterval_minutes = 1e308\n", None, ["run"], 2,
     "loop.interval_minutes: Input should be less than or equal to 527040"),
    ("data-dir-too-long", f'[loop]\ndata_dir = "{"d" * 300}"\n', None, ["tick"], 2,
     "loop.data_dir: path too long (300 characters"),
    ("data-dir-a-file", '[loop]\ndata_dir = "{tmp}/a-file"\n', None, ["tick"], 2, "loop.data_dir: is a file, expected a folder"),
    ("data-dir-read-only", '[loop]\ndata_dir = "{tmp}/read-only"\n', None, ["tick"], 2, "loop.data_dir: is not writable"),
    ("campaign-id-5000-chars", f'[[campaigns]]\nid = "{LONG}"\n', None, ["tick"], 2,
     "campaigns[0].id: String should have at most 64 characters"),
    ("actor-5000-chars", "", None, ["approve", "shop:hero:2026-01-20"], 2,
     "CREATIVE_LOOP_USER: expected a user name of at most 100 printable characters, got 5000"),
    ("empty-default-config", None, None, ["status"], 2, "creative-loop.toml: the file is empty; add settings, or pass --config"),
    ("database-folder-a-file", '[loop]\ndatabase = "sqlite:///{tmp}/a-file/db.sqlite"\n', None, ["status"], 2,
     "loop.database: cannot create the database's folder {tmp}/a-file"),
    ("postgres-down-tick", '[loop]\ndatabase = "postgresql+psycopg://postgres:hunter2@127.0.0.1:{closed}/test"\n', None,
     ["tick"], 1, "cannot use PostgreSQL at 127.0.0.1:{closed}, database 'test': Connection refused (check that the server is running"),
    ("postgres-down-status", '[loop]\ndatabase = "postgresql+psycopg://postgres:hunter2@127.0.0.1:{closed}/test"\n', None,
     ["status"], 1, "cannot use PostgreSQL at 127.0.0.1:{closed}"),
    ("postgres-down-spend", '[loop]\ndatabase = "postgresql+psycopg://postgres:hunter2@127.0.0.1:{closed}/test"\n', None,
     ["spend"], 1, "cannot use PostgreSQL at 127.0.0.1:{closed}"),
    ("postgres-database-missing", '[loop]\ndatabase = "{pg_server}/no_such_database_15"\n', None, ["status"], 1,
     "database 'no_such_database_15': database \"no_such_database_15\" does not exist (create it with createdb"),
    ("postgres-driver-missing", '[loop]\ndatabase = "postgresql+psycopg://postgres@127.0.0.1:{closed}/test"\n', None,
     ["status"], 2, "loop.database: the PostgreSQL driver is not installed (psycopg missing): pip install 'creative-loop[postgres]'"),
]  # fmt: skip
SUBPROCESS = {"interval-1e308", "data-dir-read-only", "postgres-driver-missing", "actor-5000-chars"}
NEEDS_SERVER = {"postgres-database-missing"}  # the other postgres-* cases need no server: they run once


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A database with two days of history on each backend, written by `tick` with a good config."""
    from loop.cli import main

    folder = tmp_path_factory.mktemp(f"history-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{folder / 'db.sqlite'}"
        else:
            base = request.config.getoption("--pg") or os.environ.get("CREATIVE_LOOP_TEST_PG") or None
            if not base:
                pytest.skip("PostgreSQL not selected (set CREATIVE_LOOP_TEST_PG or --pg)")
            from reliability_helpers import pg_schema

            url = stack.enter_context(pg_schema(base))
        good = write_config(folder / "good", url, write_scenario(folder))
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            for _ in range(2):
                assert main(["tick", "--config", str(good)]) == 0
        finally:
            import loop.daemon

            for engine in loop.daemon._ENGINES.values():
                engine.dispose()
            loop.daemon._ENGINES.clear()
            root.handlers[:] = handlers
            root.setLevel(level)
        yield url, folder


def _database_image(url: str) -> object:
    """What must not change: the SQLite file's bytes, or every row of every table."""
    if url.startswith("sqlite"):
        db = Path(url.removeprefix("sqlite:///"))
        return {p.name: p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()}
    from sqlalchemy import select as sa_select
    from sqlmodel import SQLModel

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted(map(repr, conn.execute(sa_select(t)).all())) for t in SQLModel.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once it is closed


def _read_only_wrapper(folder: Path) -> list[str] | None:
    """A command prefix that runs the CLI with ``folder`` read-only (None if this machine cannot)."""
    import shutil

    if os.geteuid() != 0:
        folder.chmod(0o500)
        return []
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "none", str(folder)], capture_output=True)
    if probe.returncode != 0:
        return None
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh"]


@pytest.mark.parametrize(
    ("case", "config", "scenario", "command", "code", "expected"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_every_bad_input_is_one_line_and_changes_nothing(
    history, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    case: str, config: str | None, scenario: str | None, command: list[str], code: int, expected: str,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    url, folder = history
    if case in NEEDS_SERVER and url.startswith("sqlite"):
        pytest.skip("needs the PostgreSQL server")
    if case.startswith("postgres") and case not in NEEDS_SERVER and not url.startswith("sqlite"):
        pytest.skip("needs no server: run once, beside the SQLite history")
    values = {"tmp": str(tmp_path), "closed": str(_closed_port()), "pg_server": url.split("?", 1)[0].rsplit("/", 1)[0]}
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "read-only").mkdir()
    scenario_path = write_scenario(tmp_path / "scen", scenario or SCENARIO)
    cfg = write_config(tmp_path, url, scenario_path)
    if config is not None:
        cfg.write_text(_merge(cfg.read_text(), config.format(**values)))
        args = [*command, "--config", str(cfg)]
    else:
        (tmp_path / "creative-loop.toml").write_text("")
        args = list(command)
    expected = expected.format(**values)
    before = _database_image(url)
    if case in SUBPROCESS:
        env = subprocess_env()
        prefix: list[str] = []
        if case == "actor-5000-chars":
            env["CREATIVE_LOOP_USER"] = LONG
        if case == "postgres-driver-missing":
            shadow = tmp_path / "no-psycopg" / "psycopg"
            shadow.mkdir(parents=True)
            (shadow / "__init__.py").write_text(
                "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
            )
            env["PYTHONPATH"] = f"{shadow.parent}{os.pathsep}{env['PYTHONPATH']}"
        if case == "data-dir-read-only":
            wrapper = _read_only_wrapper(tmp_path / "read-only")
            if wrapper is None:
                pytest.skip("cannot make a folder read-only here (root without mount namespaces)")
            prefix = wrapper
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "loop", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        got, err = proc.returncode, proc.stderr
    else:
        from loop.cli import main

        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("CREATIVE_LOOP_DATABASE", raising=False)
        capsys.readouterr()
        got = main(args)
        err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("creative-loop: ") and expected in lines[0], lines[0]
    if config and "{" not in config.split("database")[0] and code == 2 and "campaigns" in expected:
        assert str(cfg) in lines[0] or str(scenario_path) in lines[0], lines[0]
    assert "hunter2" not in err and len(lines[0]) < 400, lines[0]
    assert _database_image(url) == before, f"{case} changed the database"


def test_simulate_exits_1_when_a_tick_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, every tick could report an error and `simulate` still exited 0 with a result."""
    import loop.simulate
    from loop.cli import main

    class Refusing(SimulatedAdPlatform):
        def insights(self, campaign, since, until):  # type: ignore[no-untyped-def]
            if self.day == 3:
                raise InvalidPayload("clicks (50) exceed impressions (10)", campaign)
            return super().insights(campaign, since, until)

    # Nothing in a valid scenario makes the simulator fail a tick any more: a platform that does stands in.
    monkeypatch.setattr(loop.simulate, "SimulatedAdPlatform", Refusing)
    scenario = write_scenario(tmp_path)
    capsys.readouterr()
    code = main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "out"), "--quiet", "--days", "5"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.strip().splitlines() == ["error: day 3: shop: campaign shop: clicks (50) exceed impressions (10)"], err
    assert (tmp_path / "out" / "result.json").exists()  # what ran is still scored


def _namespaces() -> bool:
    import shutil

    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces(), reason="needs a private mount namespace (root, unshare) for a tiny tmpfs")
@pytest.mark.parametrize("what", ["database", "data_dir"])
def test_a_full_disk_is_one_line(history, tmp_path: Path, what: str) -> None:  # type: ignore[no-untyped-def]
    """A real full file system: a 1 MiB tmpfs, filled up, in a mount namespace of the command's own.

    ``database``: the SQLite database (and its data) on it, the write of the tick's record fails;
    ``data_dir``: only the simulated platform's state on it, saving the day fails. One line, exit 1,
    and the database as it was.
    """
    url, folder = history
    if not url.startswith("sqlite"):
        pytest.skip("the database on a tmpfs: SQLite")
    disk = tmp_path / "disk"
    disk.mkdir()
    good_db = Path(url.removeprefix("sqlite:///"))
    on_disk = disk / "db.sqlite" if what == "database" else tmp_path / "db.sqlite"
    cfg = write_config(tmp_path, f"sqlite:///{on_disk}", write_scenario(tmp_path / "scen"), log_format="json")
    text = cfg.read_text().replace(f'"{tmp_path / "data"}"', f'"{disk / "data"}"')
    cfg.write_text(text)
    kept = tmp_path / "after"
    kept.mkdir()
    script = " && ".join(
        [
            f'mount -t tmpfs -o size=1m none "{disk}"',
            f'cp "{good_db}" "{on_disk}"',
            f'cp -r "{folder / "good" / "data"}" "{disk / "data"}"',
            f'cp "{on_disk}" "{kept / "before.db"}"',
            f'(dd if=/dev/zero of="{disk / "filler"}" bs=4k 2>/dev/null || true)',
            f'("$@"; echo $? > "{kept / "code"}")',
            f'cp "{on_disk}" "{kept / "after.db"}"',
        ]
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "loop", "tick", "--config", str(cfg)],
        env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # The tick's own log lines (JSON here) may come first; the error is one line of its own.
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("{")]
    assert (kept / "code").read_text().strip() == "1", proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    if what == "database":
        assert lines[0].startswith(f"creative-loop: cannot use SQLite database {on_disk}: "), lines[0]
        assert lines[0].endswith("(its disk is full: free some space)"), lines[0]
    else:
        assert lines[0].startswith("error: end of day ") and lines[0].endswith("No space left on device"), lines[0]
    assert (kept / "after.db").read_bytes() == (kept / "before.db").read_bytes() or what == "data_dir"


# -- CLI audit: markup, control characters, output paths, unbounded counts, non-UTF-8 values ----------
def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def test_markup_in_a_scenario_path_is_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path is the user's text: "[/y]" in it was a rich MarkupError traceback in the summary's title."""
    from loop.cli import main

    scenario = write_scenario(tmp_path / "x[/y]" / "[red]z")
    capsys.readouterr()
    code = main(["simulate", "--scenario", str(scenario), "--out", str(tmp_path / "out"), "--days", "2"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    assert "x[/y]/[red]z/scenario.toml" in captured.out.replace("\n", ""), captured.out


HOSTILE = "\x1b[2J\r\x07[/]\nline\u202e\x9b"


def test_outside_text_cannot_drive_the_terminal(history, tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """An ad name, a platform's delivery reason and a stored reason reach the terminal as text: ESC, CR, BEL,
    C1 CSI and bidi overrides shown as escapes (Rich drops some of them silently and passes ESC through)."""
    from loop.cli import main

    url, folder = history
    if not url.startswith("sqlite"):
        pytest.skip("one backend is enough: the output is what is checked")
    db = tmp_path / "db.sqlite"
    db.write_bytes(Path(url.removeprefix("sqlite:///")).read_bytes())
    cfg = write_config(tmp_path, f"sqlite:///{db}", write_scenario(tmp_path / "scen"))
    from storage.db import make_engine

    engine = make_engine(f"sqlite:///{db}")
    try:
        with open_session(engine) as s:
            live = s.exec(select(Creative).where(Creative.role == "live")).first()
            assert live is not None
            live.label, live.status = HOSTILE, "paused"
            live.flags = {**(live.flags or {}), "delivery": HOSTILE}
            s.add(live)
            s.commit()
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\x1b\r\x07\x9b\u202e"), repr(out)
    shown = "\\u001b[2J\\u000d\\u0007[/]\\u000aline\\u202e\\u009b"
    assert out.count(shown) == 2, out  # the label, and the delivery reason in the status column


def test_log_lines_cannot_be_forged() -> None:
    from loop.logs import TextFormatter, printable

    record = logging.LogRecord("creative_loop.tick", logging.INFO, __file__, 1, "ad %s paused", (HOSTILE,), None)
    line = TextFormatter("%(levelname)s %(name)s%(where)s: %(message)s").format(record)
    assert "\n" not in line and "\x1b" not in line and "\\u000aline" in line, line
    assert printable("naïve 👨‍👩‍👧 [b]") == "naïve 👨‍👩‍👧 [b]"  # only controls are escaped
    assert printable("a\nb\x1b", newlines=True) == "a\nb\\u001b"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["simulate", "--out", "{tmp}/a-file"], "{tmp}/a-file: --out: is a file, expected a folder"),
        (["simulate", "--json", "{tmp}/a-dir"], "{tmp}/a-dir: --json: is a folder, expected a file name"),
        (
            ["simulate", "--json", "{tmp}/a-file/r.json"],
            "{tmp}/a-file/r.json: --json: cannot be written in {tmp}/a-file: is a file",
        ),
        (["simulate", "--report", "{tmp}/a-dir"], "{tmp}/a-dir: --report: is a folder, expected a file name"),
        (["simulate", "--report", "{tmp}/" + "r" * 300], "--report: File name too long"),
        (
            ["simulate", "--compare", "thompson", "--runs", "1", "--json", "{tmp}/a-dir"],
            "{tmp}/a-dir: --json: is a folder",
        ),
        (["report", "--out", "{tmp}/a-dir"], "{tmp}/a-dir: --out: is a folder, expected a file name"),
        (["report", "--out", "{tmp}/a-file/r.html"], "--out: cannot be written in {tmp}/a-file: is a file"),
        (["spend", "--csv", "{tmp}/a-dir"], "{tmp}/a-dir: --csv: is a folder, expected a file name"),
    ],
    ids=["out-a-file", "json-a-dir", "json-under-a-file", "report-a-dir", "report-long-name", "compare-json-a-dir",
         "report-out-a-dir", "report-out-under-a-file", "csv-a-dir"],
)  # fmt: skip
def test_an_output_path_that_cannot_be_written_is_one_line_before_any_work(
    history, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    """Each was a traceback (FileExistsError, IsADirectoryError, OSError), a simulation's at its very end."""
    from loop.cli import main

    url, _ = history
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-dir").mkdir()
    cfg = write_config(tmp_path, url, write_scenario(tmp_path / "scen"))
    argv = [a.format(tmp=tmp_path) for a in args] + ["--config", str(cfg)]
    if argv[0] == "simulate":
        argv += ["-q", "--days", "2", "--scenario", str(tmp_path / "scen" / "scenario.toml")]
        if "--out" not in argv:
            argv += ["--out", str(tmp_path / "out")]
    before = _database_image(url)
    capsys.readouterr()
    code = main(argv)
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("creative-loop: ") and expected.format(tmp=tmp_path) in line, line
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*.part"))  # refused before any work
    assert _database_image(url) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--days", "99999999999999"], "Invalid value for '--days': Input should be less than or equal to 3650"),
        (["--compare", "thompson", "--runs", "100000000000"], "Invalid value for '--runs': Input should be less"),
    ],
    ids=["days", "runs"],
)
def test_simulate_counts_are_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    """--days 10**14 simulated for ever; --runs 10**11 built a job list of that length (a MemoryError)."""
    from loop.cli import main

    capsys.readouterr()
    code = main(["simulate", "-q", "--scenario", str(write_scenario(tmp_path)), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["approve", "\udcff"], "Invalid value for 'ID': not UTF-8 text: '\\udcff'"),
        (["reject", "shop:hero:x", "--reason", "bad \udcfe"], "Invalid value for '--reason': not UTF-8 text"),
        (["approve", "shop:hero:x", "--note", "\udcff"], "Invalid value for '--note': not UTF-8 text"),
        (["report", "--campaign", "\udcff"], "Invalid value for '--campaign': not UTF-8 text"),
        (["fix", "\udcff", "--mask", "m.png", "--prompt", "x"], "Invalid value for 'VARIANT': not UTF-8 text"),
    ],
    ids=["approve-id", "reject-reason", "approve-note", "report-campaign", "fix-variant"],
)
def test_a_non_utf8_value_is_refused_and_changes_nothing(
    history, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    """A non-UTF-8 byte in argv arrives as a lone surrogate: storage's encoder failed on it with a traceback."""
    from loop.cli import main

    url, _ = history
    cfg = write_config(tmp_path, url, write_scenario(tmp_path / "scen"))
    before = _database_image(url)
    capsys.readouterr()
    code = main([*args, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert _database_image(url) == before


def test_worker_refuses_a_bad_log_level_with_one_line(tmp_path: Path) -> None:
    """Celery parses --loglevel with the click it brings, whose errors typer's main does not know: a traceback."""
    pytest.importorskip("celery")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", write_scenario(tmp_path / "scen"))
    proc = cli("worker", "--config", str(cfg), "--pool", "solo", "--loglevel", "bogus")
    line = _one_line(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert (
        line
        == "creative-loop: --loglevel: loglevel: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, FATAL, got 'bogus'"
    )
