"""Contract harnesses of the built-in backends: each against its own fake (see contract_harness.py).

Platforms: the simulator (a small scenario, its state file in a temporary
folder), Meta (the real SDK against the fake Graph API server on loopback)
and Google Ads (the real client against the fake gRPC API over TLS).
Generators: procedural, diffusers (a tiny random-weight pipeline on the CPU)
and Gemini (the real SDK against the fake Gemini API).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from contract_harness import GeneratorHarness, PlatformHarness, generator_harness, platform_harness
from PIL import Image

from connectors.ads.registry import PLATFORMS, PlatformCampaign, PlatformContext
from connectors.images.registry import GENERATORS, GeneratorContext
from connectors.registry import EnvSecrets
from policies.errors import AuthExpired, PlatformError, RateLimited, TransientError

from loop_helpers import SMALL_SCENARIO

NO_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def _loopback_only(request: pytest.FixtureRequest) -> None:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for var in NO_PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def png(size: tuple[int, int], seed: int = 3) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# -- platforms ---------------------------------------------------------------------------------------
def _simulated(tmp_path: Path, layout: str) -> Iterator[PlatformHarness]:
    from connectors.ads.scenario import SimulatedSettings
    from connectors.ads.sharded import ShardedSimulatedAdPlatform
    from connectors.ads.simulated import SimulatedAdPlatform

    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SMALL_SCENARIO)
    settings = SimulatedSettings(scenario=str(scenario), start_date="2026-01-05", layout=layout)  # type: ignore[arg-type]
    ctx = PlatformContext(settings=settings, data_dir=tmp_path / "sim")
    ctx.data_dir.mkdir()
    entry = PLATFORMS.get("simulated")
    platform = entry.build(ctx)

    def sim() -> SimulatedAdPlatform:
        if isinstance(platform, ShardedSimulatedAdPlatform):
            return platform.shard("shop")
        assert isinstance(platform, SimulatedAdPlatform)
        return platform

    def state() -> Any:
        s = sim()
        s.today()  # picks up what another object saved
        ads = {k: dataclasses.asdict(v) for k, v in s.ads.items()}
        return json.dumps([ads, {k: dataclasses.asdict(v) for k, v in s.adsets.items()}], sort_keys=True)

    def deliver(day: date) -> None:
        assert platform.today("shop") == day
        platform.advance_day("shop")

    def fault(kind: str) -> Any:
        return lambda: sim().faults.queue(kind)

    yield PlatformHarness(
        platform=platform, campaign="shop", first_day=sim().today(), deliver=deliver, state=state,
        reopen=lambda: entry.build(ctx), faults={TransientError: fault("timeout"), RateLimited: fault("throttle")},
        image=png((64, 48)), context=ctx,
    )  # fmt: skip
    platform.close()


@platform_harness("simulated")
def simulated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformHarness]:
    yield from _simulated(tmp_path, "scenario")


@platform_harness("simulated", variant="per-campaign")
def simulated_per_campaign(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformHarness]:
    yield from _simulated(tmp_path, "per-campaign")


@platform_harness("meta")
def meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformHarness]:
    from fake_graph import APP_SECRET, TOKEN, FakeGraph, Fault, seed_account
    from meta_helpers import FakeClock, make_platform

    from connectors.meta.settings import MetaSettings

    _loopback_only(request)
    with FakeGraph() as graph:
        ids = seed_account(graph)
        clock = FakeClock()
        page_rows = 3
        # The platform under test as the Meta tests build it: a fake clock for the usage gate and settling.
        platform = make_platform(graph, ids, clock, page_size=page_rows)
        settings = MetaSettings(graph_url=graph.base_url, access_token_env="T_TOKEN", app_secret_env="T_SECRET")
        ctx = PlatformContext(
            settings=settings,
            campaigns=(PlatformCampaign("lead-gen", "campaigns[0]", graph.account, ids["main"], ids["test"]),),
            secret=EnvSecrets(settings, "meta", "contract.toml", {"T_TOKEN": TOKEN, "T_SECRET": APP_SECRET}),
            source="contract.toml",
        )

        def state() -> Any:
            with graph.lock:
                kept = {k: v for k, v in graph.objects.items() if v["type"] in ("ad", "adset", "creative", "image")}
                return json.dumps(kept, sort_keys=True, default=str)

        def fault(**kwargs: Any) -> Any:
            return lambda: graph.faults.append(Fault(**kwargs))

        reopened = []

        def reopen() -> Any:
            reopened.append(make_platform(graph, ids, FakeClock(), page_size=page_rows))
            return reopened[-1]

        yield PlatformHarness(
            platform=platform, campaign="lead-gen", first_day=date(2026, 1, 1), deliver=graph.deliver, state=state,
            reopen=reopen, image=png((64, 48)), context=ctx, page_rows=page_rows, wait=clock.sleep,
            faults={
                AuthExpired: fault(code=190, subcode=463, message="Session has expired"),
                RateLimited: fault(code=17, message="User request limit reached"),
                TransientError: fault(code=2, status=500, message="Service temporarily unavailable"),
                PlatformError: fault(code=100, message="Invalid parameter"),
            },
        )  # fmt: skip
        platform.close()
        for p in reopened:
            p.close()


@platform_harness("google_ads", pytest.mark.skipif("not __import__('connectors.registry').registry.installed(('google.ads.googleads',))"))  # fmt: skip
def google_ads(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformHarness]:
    import grpc
    from fake_ads import CLIENT_ID, CLIENT_SECRET, DEVELOPER_TOKEN, MANAGER, REFRESH_TOKEN, FakeGoogleAds, Fault
    from fake_ads import seed_account as seed_google

    from connectors.google_ads.settings import GoogleAdsSettings

    _loopback_only(request)
    page_rows = 3
    with FakeGoogleAds(batch_rows=page_rows) as fake:
        ids = seed_google(fake)
        settings = GoogleAdsSettings(
            customer_id=ids["customer"], login_customer_id=MANAGER, endpoint=fake.endpoint, token_uri=fake.token_uri,
            developer_token_env="T_DEV", client_id_env="T_CID", client_secret_env="T_CSECRET",
            refresh_token_env="T_REFRESH", request_timeout=10.0,
        )  # fmt: skip
        env = {"T_DEV": DEVELOPER_TOKEN, "T_CID": CLIENT_ID, "T_CSECRET": CLIENT_SECRET, "T_REFRESH": REFRESH_TOKEN}
        ctx = PlatformContext(
            settings=settings, campaigns=(PlatformCampaign("lead-gen", "campaigns[0]", campaign_id=ids["main"]),),
            secret=EnvSecrets(settings, "google_ads", "contract.toml", env), source="contract.toml",
        )  # fmt: skip
        entry = PLATFORMS.get("google_ads")
        built = [entry.build(ctx)]

        def state() -> Any:
            with fake.lock:
                return {
                    kind: {rn: msg.SerializeToString(deterministic=True) for rn, msg in sorted(store.items())}
                    for kind, store in fake.store.items()
                }

        def reopen() -> Any:
            built.append(entry.build(ctx))
            return built[-1]

        def fault(*args: Any, **kwargs: Any) -> Any:
            return lambda: fake.faults.append(Fault(*args, **kwargs))

        yield PlatformHarness(
            platform=built[0], campaign="lead-gen", first_day=date(2026, 1, 1), deliver=fake.deliver, state=state,
            reopen=reopen, image=png((512, 268)), context=ctx, page_rows=page_rows,
            faults={
                AuthExpired: fault("auth"),
                RateLimited: fault("quota"),
                TransientError: fault("internal"),
                PlatformError: fault("custom", code="authorization_error.USER_PERMISSION_DENIED", status=grpc.StatusCode.PERMISSION_DENIED),  # fmt: skip
            },
        )  # fmt: skip
        for p in built:
            p.close()


# -- generators --------------------------------------------------------------------------------------
def _generator(name: str, settings: Any, env: dict[str, str] | None = None) -> Any:
    entry = GENERATORS.get(name)
    return entry.build(GeneratorContext(settings, EnvSecrets(settings, entry.section, "contract.toml", env or {})))


@generator_harness("procedural")
def procedural(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GeneratorHarness]:
    from connectors.images.base import GeneratorSettings

    settings = GeneratorSettings()
    yield GeneratorHarness(_generator("procedural", settings), settings, broken=None)


@generator_harness("diffusers", pytest.mark.diffusion)
def diffusers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GeneratorHarness]:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from connectors.images.diffusers import DiffusersSettings

    model = str(request.getfixturevalue("tiny_model_dir"))
    settings = DiffusersSettings(
        device="cpu", fast_model=model, fast_steps=2, fast_size=(64, 64), pro_model=model, pro_steps=2,
        pro_size=(64, 64), pro_strength=0.5, inpaint_steps=2,
    )  # fmt: skip
    missing = settings.model_copy(update={"fast_model": str(tmp_path / "no-such-model")})
    yield GeneratorHarness(_generator("diffusers", settings), settings, broken=lambda: _generator("diffusers", missing))


@generator_harness("gemini", pytest.mark.skipif("not __import__('connectors.registry').registry.installed(('google.genai',))"))  # fmt: skip
def gemini(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GeneratorHarness]:
    import fake_gemini as fg

    from connectors.images.gemini import GeminiSettings

    with fg.fake_gemini() as server:
        settings = GeminiSettings(base_url=server.url, api_key_env="T_GEMINI", timeout_s=10)
        generator = _generator("gemini", settings, {"T_GEMINI": "test-key-123"})

        def broken() -> Any:
            server.queue(fg.PROMPT_BLOCKED, fg.PROMPT_BLOCKED)  # a safety block: refused, never retried
            return generator

        yield GeneratorHarness(generator, settings, broken=broken)
