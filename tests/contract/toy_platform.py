"""A toy ad platform, registered from this test module the way a new backend is registered.

``ToyAdPlatform`` keeps a small account in a JSON file: each configured
campaign has two live ads, the first of which wears out from
``fatigue_onset_day`` on.  Delivery is exact (clicks = impressions x CTR,
rounded) so a test can say which arm must win.  It has its own clock
(``today``/``advance_day``), so the loop runs it day by day like the
simulator, but its campaigns, caps and budgets come from the config's
``[[campaigns]]`` like a real platform's.

Registering it is the whole integration: one registry line (below) and a
contract harness (``toy``).  Nothing in ``loop/`` names it.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from contract_harness import PlatformHarness, platform_harness
from PIL import Image
from pydantic import Field

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
from connectors.ads.registry import PLATFORMS, PlatformCampaign, PlatformContext, PlatformEntry
from connectors.registry import EnvSecrets
from connectors.settings import ENV_NAME, Settings
from policies.errors import AuthExpired, NotFound, PlatformError, RateLimited, TransientError

FAULTS = {"throttle": RateLimited, "outage": TransientError, "auth": AuthExpired, "refused": PlatformError}


class ToySettings(Settings):
    """The ``[toy]`` section."""

    start_date: date = date(2026, 3, 2)  # the toy calendar's day 0
    daily_impressions: int = Field(20_000, ge=100)  # what each campaign's main ad set delivers per day
    cpm_minor: int = Field(800, ge=1)  # minor units per 1000 impressions
    ctr: float = Field(0.02, gt=0, lt=1)  # the live ads' CTR before fatigue
    fatigue_onset_day: int = Field(8, ge=0)  # from this day on the first ad of each campaign wears out ...
    fatigue_decay: float = Field(0.15, ge=0, lt=1)  # ... losing this share of its CTR per day
    state_file: str = "toy-platform.json"  # under loop.data_dir
    token_env: str = Field("TOY_TOKEN", pattern=ENV_NAME)  # the environment variable holding the API token


@dataclass
class ToyAd:
    ad_id: str
    name: str
    campaign: str
    adset_id: str
    status: str
    ctr: float
    headline: str = ""
    onset: int | None = None  # the day its CTR starts to decay


@dataclass
class ToyAdSet:
    adset_id: str
    name: str
    campaign: str
    budget_minor: int = 0
    end_day: int = -1
    status: str = "PAUSED"


@dataclass
class ToyState:
    day: int = 0
    seq: int = 0
    ads: dict[str, ToyAd] = field(default_factory=dict)
    adsets: dict[str, ToyAdSet] = field(default_factory=dict)
    rows: dict[str, list[int]] = field(default_factory=dict)  # "ad|day" -> [impressions, clicks, spend_minor]


def variant_ctr(key: str) -> float:
    """A test arm's true CTR, from its key: variant ``vN`` gets N %, far apart, so the best one is plain."""
    label = key.rsplit(":", 1)[-1]
    return 0.01 * int(label[1:]) if label[:1] == "v" and label[1:].isdigit() else 0.02


class ToyAdPlatform(AdPlatform):
    """``AdPlatform`` over a JSON file (see the module docstring)."""

    name = "toy"

    def __init__(self, settings: ToySettings, campaigns: tuple[str, ...], path: Path | None, token: str) -> None:
        if not token:
            raise ValueError("token: expected a non-empty token")
        self.settings, self.path = settings, path
        self.fail_next: list[str] = []  # scripted faults (FAULTS keys), one per call
        if path is not None and path.exists():
            raw = json.loads(path.read_text())
            self.state = ToyState(
                day=raw["day"], seq=raw["seq"], rows=raw["rows"],
                ads={k: ToyAd(**v) for k, v in raw["ads"].items()},
                adsets={k: ToyAdSet(**v) for k, v in raw["adsets"].items()},
            )  # fmt: skip
        else:
            self.state = ToyState()
        for c in campaigns:
            if f"main:{c}" in self.state.adsets:
                continue
            self.state.adsets[f"main:{c}"] = ToyAdSet(f"main:{c}", f"{c} main", c, 0, 10**9, "ACTIVE")
            for i, label in enumerate(("hero", "steady")):
                onset = settings.fatigue_onset_day if i == 0 else None
                self.state.ads[f"{c}-{label}"] = ToyAd(
                    f"{c}-{label}", f"{c}-{label}", c, f"main:{c}", "ACTIVE", settings.ctr, label.title(), onset
                )
        self.campaigns = set(campaigns)

    @classmethod
    def from_context(cls, ctx: PlatformContext) -> ToyAdPlatform:
        """The ``toy`` registry line: ``[toy]``, the campaigns on it, its token from the environment."""
        settings: ToySettings = ctx.settings
        token = ctx.secret("token_env")
        return cls(settings, tuple(c.id for c in ctx.campaigns), ctx.data_dir / settings.state_file, token)

    # -- internals -------------------------------------------------------------------------------
    def _call(self, campaign: str | None = None) -> None:
        if self.fail_next:
            kind = self.fail_next.pop(0)
            raise FAULTS[kind](f"toy platform: {kind} (injected)")
        if campaign is not None and campaign not in self.campaigns:
            raise NotFound(f"no campaign {campaign!r} on the toy platform", campaign=campaign)

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(asdict(self.state), sort_keys=True))

    def _next(self, prefix: str) -> str:
        self.state.seq += 1
        return f"{prefix}{self.state.seq}"

    def _named(self, name: str) -> ToyAd | None:
        return next((a for a in self.state.ads.values() if a.name == name), None)

    def _ctr(self, ad: ToyAd, day: int) -> float:
        if ad.onset is None or day < ad.onset:
            return ad.ctr
        return ad.ctr * (1.0 - self.settings.fatigue_decay) ** (day - ad.onset + 1)

    # -- AdPlatform ----------------------------------------------------------------------------------
    def list_ads(self, campaign: str) -> list[LiveAd]:
        self._call(campaign)
        main = f"main:{campaign}"
        return [
            LiveAd(a.ad_id, a.name, a.status, a.headline, "" if a.status == "ACTIVE" else "AD_PAUSED")
            for a in self.state.ads.values()
            if a.campaign == campaign and a.adset_id == main
        ]

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        self._call(campaign)
        out = []
        for key, (imps, clicks, spend) in sorted(self.state.rows.items()):
            ad_id, day = key.split("|")
            when = self.settings.start_date + timedelta(days=int(day))
            if self.state.ads[ad_id].campaign == campaign and since <= when <= until:
                out.append(InsightRow(ad_id, when, imps, clicks, spend))
        return out

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        self._call(campaign)
        ad = self.state.ads.get(ad_id)
        if ad is None or ad.campaign != campaign:
            raise NotFound(f"no ad {ad_id!r} in campaign {campaign!r}", campaign=campaign)
        colour = zlib.crc32(ad_id.encode()).to_bytes(4, "little")[:3]
        buf = io.BytesIO()
        Image.new("RGB", (96, 96), tuple(colour)).save(buf, format="PNG")
        return SourceCreative(ad_id, buf.getvalue(), headline=ad.headline, message=ad.headline)

    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        ad = self._named(mutation.key)
        if ad is None:
            return None  # budgets and pauses are set, not added: resending them is harmless
        if isinstance(mutation, LaunchTestArm):
            return {"adset_id": ad.adset_id, "ad_id": ad.ad_id}
        if isinstance(mutation, ScaleWinner):
            return {"ad_id": ad.ad_id}
        return None

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        self._call(mutation.campaign)
        found = self.find(mutation)
        if found is not None:
            return found
        result: dict[str, Any] = {}
        if isinstance(mutation, LaunchTestArm):
            adset = ToyAdSet(self._next("toyset"), mutation.key, mutation.campaign)
            ad = ToyAd(self._next("toyad"), mutation.key, mutation.campaign, adset.adset_id, "PAUSED",
                       variant_ctr(mutation.key), mutation.headline)  # fmt: skip
            self.state.adsets[adset.adset_id], self.state.ads[ad.ad_id] = adset, ad
            result = {"adset_id": adset.adset_id, "ad_id": ad.ad_id}
        elif isinstance(mutation, SetBudgets):
            for adset_id, budget in mutation.budgets:
                adset = self._adset(adset_id)
                adset.budget_minor = int(budget)
                adset.end_day = (
                    (mutation.end_day - self.settings.start_date).days if mutation.end_day else self.state.day
                )
                adset.status = "ACTIVE" if budget > 0 else "PAUSED"
                for ad in self.state.ads.values():
                    if ad.adset_id == adset_id:
                        ad.status = adset.status
        elif isinstance(mutation, PauseAds):
            for ad_id in mutation.ad_ids:
                if ad_id in self.state.ads:
                    self.state.ads[ad_id].status = "PAUSED"
            for adset_id in mutation.adset_ids:
                self._adset(adset_id).status = "PAUSED"
        elif isinstance(mutation, ScaleWinner):
            parent = self.state.ads.get(mutation.parent_ad_id)
            if parent is None:
                raise PlatformError(f"unknown parent ad {mutation.parent_ad_id!r}", code=404)
            ad = ToyAd(self._next("toyad"), mutation.key, mutation.campaign, parent.adset_id, "ACTIVE", 0.03,
                       mutation.headline)  # fmt: skip
            self.state.ads[ad.ad_id] = ad
            parent.status = "PAUSED"
            result = {"ad_id": ad.ad_id}
        else:
            raise PlatformError(f"unsupported mutation {mutation.kind}", code=400)
        self._save()
        return result

    def _adset(self, adset_id: str) -> ToyAdSet:
        adset = self.state.adsets.get(adset_id)
        if adset is None:
            raise PlatformError(f"unknown ad set {adset_id!r}", code=404)
        return adset

    # -- its own clock -------------------------------------------------------------------------------------
    def today(self, campaign: str | None = None) -> date:
        return self.settings.start_date + timedelta(days=self.state.day)

    def advance_day(self, campaign: str | None = None) -> None:
        """Deliver today: main ad sets by impressions, test ad sets by budget; then move on a day."""
        d, s = self.state.day, self.settings
        for adset in self.state.adsets.values():
            if adset.status != "ACTIVE" or d > adset.end_day:
                continue
            ads = [a for a in self.state.ads.values() if a.adset_id == adset.adset_id and a.status == "ACTIVE"]
            if not ads:
                continue
            if adset.adset_id.startswith("main:"):
                imps, spend = s.daily_impressions, s.daily_impressions * s.cpm_minor // 1000
            else:
                imps, spend = adset.budget_minor * 1000 // s.cpm_minor, adset.budget_minor
            for ad in ads:
                n = imps // len(ads)
                self.state.rows[f"{ad.ad_id}|{d}"] = [n, round(n * self._ctr(ad, d)), spend // len(ads)]
        self.state.day += 1
        self._save()

    def close(self) -> None:
        self._save()


PLATFORMS.register(
    PlatformEntry("toy", ToySettings, ToyAdPlatform.from_context, secrets=("token_env",), doc="tests/contract's toy")
)


@platform_harness("toy")
def toy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlatformHarness]:
    settings = ToySettings(token_env="T_TOY")
    ctx = PlatformContext(
        settings=settings, campaigns=(PlatformCampaign("shop", "campaigns[0]"),),
        secret=EnvSecrets(settings, "toy", "contract.toml", {"T_TOY": "toy-token"}), source="contract.toml",
        data_dir=tmp_path / "toy",
    )  # fmt: skip
    entry = PLATFORMS.get("toy")
    platform = entry.build(ctx)
    assert isinstance(platform, ToyAdPlatform)

    def deliver(day: date) -> None:
        assert platform.today() == day
        platform.advance_day()

    def fault(kind: str) -> Any:
        return lambda: platform.fail_next.append(kind)

    yield PlatformHarness(
        platform=platform, campaign="shop", first_day=platform.today(), deliver=deliver,
        state=lambda: json.dumps(asdict(platform.state), sort_keys=True), reopen=lambda: entry.build(ctx),
        faults={cls: fault(kind) for kind, cls in FAULTS.items()}, image=b"\x89PNG toy", context=ctx,
    )  # fmt: skip
    platform.close()
