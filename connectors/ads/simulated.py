"""A simulated ad platform driven by a scenario file (DESIGN.md's format).

It behaves like an ad account seen through an API: a campaign's main ad set
delivers its daily impressions among its active ads; each test arm is its own
ad set whose spend follows its daily budget with delivery noise and up to 25 %
overspend on a day; daily clicks are binomial draws from each ad's *true* CTR,
which the loop never sees.  The simulator also keeps the truth (``oracle_*``
methods) so that results can be scored.

A scenario's ``[realism]`` table (``connectors.ads.scenario.RealismModel``)
adds what makes real accounts hard to read: the day's CTR times a
log-normal draw per ad and day (over-dispersion), a weekday cycle, noisy
daily impressions, a novelty lift in an ad's first delivery days, budgets
under the platform minimum refused and budgets near it under-delivered.
Every such draw comes from its own stream per (purpose, object, day), so
turning realism on never shifts the draws of the streams that existed
before it.  Fatigue follows an onset day and/or cumulative frequency
(``wearout_frequency``), with or without ``[realism]``.

The platform's state (ads, ad sets, its random stream, the virtual day) can be
saved to and loaded from a JSON file, like an external system that outlives
the daemon.  Several processes may use one file at once (the daemon, an
``approve`` or ``reject`` beside it): each change is one unit under the
file's lock, made on the newest state and saved before the lock is let go,
and a read first picks up what another process saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

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
from connectors.ads.currencies import minor_digits
from connectors.ads.faults import FaultPlan
from connectors.ads.scenario import Scenario
from connectors.images.procedural import source_image, stable_seed
from policies.errors import NotFound, PlatformError, TransientError

MAX_OVERSPEND = 1.25


@dataclass
class SimAd:
    ad_id: str
    name: str
    campaign: str
    adset_id: str  # "main:<campaign>" or a test ad set id
    status: str
    base_ctr: float
    headline: str = ""
    fatigue_start: int | None = None  # simulated day index at which decay starts
    decay: float = 0.0
    image_sha: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    created_day: int = 0
    wearout_frequency: float | None = None  # cumulative frequency at which wear-out starts
    wearout_decay: float = 0.0  # multiplicative CTR decay per unit of frequency beyond it
    first_day: int | None = None  # first day with impressions (novelty, wear-out count from it)


@dataclass
class SimAdSet:
    adset_id: str
    name: str
    campaign: str
    daily_budget_minor: int = 0
    end_day: int = -1
    status: str = "PAUSED"


class SimulatedAdPlatform(AdPlatform):
    """``AdPlatform`` over a scenario, with a virtual clock (``day``) and a seeded RNG."""

    name = "simulated"
    scenario: Scenario

    def __init__(
        self,
        scenario: Scenario,
        start: date = date(2026, 1, 5),
        state_path: str | Path | None = None,
        fault_rate: float = 0.0,
        faults: FaultPlan | None = None,
        source_size: int = 1080,
    ) -> None:
        if not 0.0 <= fault_rate < 1.0:
            raise ValueError(f"fault_rate: expected in [0, 1), got {fault_rate}")
        if source_size < 32:
            raise ValueError(f"source_size: expected at least 32 pixels, got {source_size}")
        # fault_rate alone: timeouts and 5xx; a FaultPlan chooses among every kind (connectors.ads.faults).
        self.faults = faults or FaultPlan(rate=fault_rate, kinds=("timeout", "5xx"))
        self.scenario = scenario
        self.start = start
        self.state_path = Path(state_path) if state_path else None
        self.fault_rate = fault_rate
        # The side in pixels of the artwork made for the scenario's own ads (images never change an outcome).
        self.source_size = source_size
        self.day = 0
        self.rng = np.random.default_rng(scenario.seed)
        self._fault_rng = np.random.default_rng([scenario.seed, 99])
        self.ads: dict[str, SimAd] = {}
        self.adsets: dict[str, SimAdSet] = {}
        self.images: dict[str, bytes] = {}
        self.rows: dict[tuple[str, int], InsightRow] = {}
        self._by_day: dict[tuple[str, int], dict[str, InsightRow]] = {}
        self.calls = 0
        self._seq = 0
        self._audience = {c.id: c.audience_size for c in scenario.campaigns}
        self._seen: tuple[int, int, int, bytes] | None = None  # the state file as this object last read or wrote it
        for camp in scenario.campaigns:
            main = f"main:{camp.id}"
            self.adsets[main] = SimAdSet(main, f"{camp.id} main", camp.id, 0, 10**9, "ACTIVE")
            for cre in camp.creatives:
                self.ads[cre.id] = SimAd(
                    ad_id=cre.id,
                    name=cre.id,
                    campaign=camp.id,
                    adset_id=main,
                    status="ACTIVE",
                    base_ctr=cre.ctr,
                    headline=cre.headline or cre.id.replace("-", " ").title(),
                    fatigue_start=cre.fatigue_onset_day,
                    decay=cre.fatigue_decay_per_day,
                    wearout_frequency=cre.wearout_frequency,
                    wearout_decay=cre.wearout_decay,
                )
        if self.state_path and self.state_path.exists():
            self._load()

    # -- clock ---------------------------------------------------------------
    def today(self, campaign: str | None = None) -> date:
        """The simulated day (every campaign of the scenario shares it)."""
        self._sync()
        return self.start + timedelta(days=self.day)

    def advance_day(self, campaign: str | None = None) -> None:
        """Deliver the day for every campaign and move on (one clock: ``campaign`` changes nothing)."""
        self.run_day()

    def day_index(self, day: date) -> int:
        return (day - self.start).days

    # -- truth (never shown to the loop) --------------------------------------
    def oracle_ctr(self, ad_id: str, day: int) -> float:
        """The ad's expected CTR on ``day``: base x fatigue (onset, wear-out) x weekday x novelty.

        The day's over-dispersion draw is noise around it, not part of it.
        """
        ad = self.ads[ad_id]
        ctr = ad.base_ctr
        if ad.fatigue_start is not None and day > ad.fatigue_start:
            ctr *= (1.0 - ad.decay) ** (day - ad.fatigue_start)
        if ad.wearout_frequency is not None:
            excess = self.oracle_frequency(ad_id, day) - ad.wearout_frequency
            if excess > 0:
                ctr *= (1.0 - ad.wearout_decay) ** excess
        realism = self.scenario.realism
        if realism is not None:
            ctr *= realism.weekday_factors[(self.start + timedelta(days=day)).weekday()]
            first = ad.first_day if ad.first_day is not None else day
            if 0 <= day - first < realism.novelty_days:
                ctr *= 1.0 + realism.novelty_lift
        return ctr

    def oracle_frequency(self, ad_id: str, day: int) -> float:
        """Cumulative frequency before ``day``: the ad's impressions so far per person of its audience."""
        ad = self.ads[ad_id]
        audience = self._audience.get(ad.campaign)
        if not audience or ad.first_day is None:
            return 0.0
        seen = sum(r.impressions for k in range(ad.first_day, day) if (r := self.rows.get((ad_id, k))) is not None)
        return seen / audience

    def oracle_onset(self, ad_id: str) -> int | None:
        """The first day the ad's CTR is below its base for fatigue: onset day or wear-out, whichever is first."""
        ad = self.ads[ad_id]
        worn = self._wearout_day(ad)
        days = [d for d in (ad.fatigue_start, worn) if d is not None]
        return min(days) if days else None

    def _wearout_day(self, ad: SimAd) -> int | None:
        audience = self._audience.get(ad.campaign)
        if ad.wearout_frequency is None or not audience or ad.first_day is None:
            return None
        seen = 0
        for d in range(ad.first_day, self.day):
            row = self.rows.get((ad.ad_id, d))
            seen += row.impressions if row is not None else 0
            if seen / audience > ad.wearout_frequency:
                return d + 1  # the next day is the first one delivered past the threshold
        return None

    def oracle_trait_effect(self, family: str, level: str) -> float:
        """The true effect on log CTR of one trait level (``[variants]``: explicit, else N(0, trait_sigma))."""
        v = self.scenario.variants
        explicit = v.trait_effects.get(family, {})
        if level in explicit:
            return float(explicit[level])
        if v.trait_sigma <= 0:
            return 0.0
        # Its own stream per level: the variants' idiosyncratic draws stay what they were.
        return float(self._stream("trait-effect", family, level).normal(0.0, v.trait_sigma))

    def oracle_traits_effect(self, traits: Any) -> float:
        """The summed effect on log CTR of a creative's traits (``{family: level}``; none: 0)."""
        if not isinstance(traits, dict):
            return 0.0
        return sum(self.oracle_trait_effect(str(f), str(level)) for f, level in sorted(traits.items()))

    def _variant_ctr(self, campaign: str, parent_ad_id: str, lineage: dict[str, Any]) -> float:
        """A variant's true CTR: parent base CTR x exp(N(lift_mu, lift_sigma) + its traits' effects
        − its parent's traits' effects), (x 1+pro_lift)."""
        parent = self.ads.get(parent_ad_id)
        if parent is None:
            raise PlatformError(f"unknown parent ad {parent_ad_id!r}", code=100, campaign=campaign)
        variant = str(lineage.get("variant", ""))
        # The draw depends only on the variant's identity, so the draft and the
        # pro render of one variant share it, and a retry cannot re-roll it.
        rng = np.random.default_rng([self.scenario.seed, stable_seed(campaign, variant)])
        v = self.scenario.variants
        lift = rng.normal(v.lift_mu, v.lift_sigma)
        if v.trait_sigma > 0 or v.trait_effects:
            # Traits are what a creative *is*: the variant gains its traits' effects and loses its
            # parent's (a scaled winner carries its own), so a lineage cannot stack one trait twice.
            lift += self.oracle_traits_effect(lineage.get("traits")) - self.oracle_traits_effect(
                parent.lineage.get("traits")
            )
        ctr = parent.base_ctr * math.exp(lift)
        if lineage.get("tier") == "pro":
            ctr *= 1.0 + v.pro_lift
        return min(ctr, 0.5)

    # -- faults ---------------------------------------------------------------
    def _maybe_fail(self, what: str, mutation: bool = False) -> None:
        self.calls += 1
        self.faults.before(self._fault_rng, what, mutation)

    # -- reads ----------------------------------------------------------------
    def _known(self, campaign: str) -> None:
        if campaign not in self._audience:
            raise NotFound(f"no campaign {campaign!r} in the scenario", campaign=campaign)

    def list_ads(self, campaign: str) -> list[LiveAd]:
        self._sync()
        self._maybe_fail("list_ads")
        self._known(campaign)
        main = f"main:{campaign}"
        return [
            LiveAd(ad.ad_id, ad.name, ad.status, ad.headline)
            for ad in self.ads.values()
            if ad.campaign == campaign and ad.adset_id == main
        ]

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        self._sync()
        self._maybe_fail("insights")
        self._known(campaign)
        lo, hi = max(0, self.day_index(since)), min(self.day - 1, self.day_index(until))
        out: list[InsightRow] = []
        for d in range(lo, hi + 1):
            out.extend(self._by_day.get((campaign, d), {}).values())
        return out

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        self._sync()
        self._maybe_fail("source_creative")
        ad = self.ads.get(ad_id)
        if ad is None or ad.campaign != campaign:
            raise NotFound(f"no ad {ad_id!r} in campaign {campaign!r}", campaign=campaign)
        if ad.image_sha and ad.image_sha in self.images:
            data = self.images[ad.image_sha]
        else:
            buf = io.BytesIO()
            # Fast zlib: the loop decodes these bytes and stores its own encoding of the pixels.
            source_image(ad.ad_id, ad.headline, self.source_size).save(buf, format="PNG", compress_level=1)
            data = buf.getvalue()
        return SourceCreative(ad_id, data, headline=ad.headline, message=ad.headline, link="https://example.com")

    # -- mutations ------------------------------------------------------------
    def _named(self, name: str) -> SimAd | None:
        return next((a for a in self.ads.values() if a.name == name), None)

    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        self._sync()
        if isinstance(mutation, LaunchTestArm):
            ad = self._named(mutation.key)
            return {"adset_id": ad.adset_id, "ad_id": ad.ad_id} if ad else None
        if isinstance(mutation, ScaleWinner):
            ad = self._named(mutation.key)
            return {"ad_id": ad.ad_id} if ad else None
        return None  # budget and pause updates are idempotent by nature: resend them

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        with self._changing():
            result = self._apply(mutation)
        self.faults.after(mutation.kind)  # an injected partial failure or lost response raises here
        return result

    def _apply(self, mutation: Mutation) -> dict[str, Any]:
        self._maybe_fail(mutation.kind, mutation=True)
        found = self.find(mutation)
        if found is not None:
            return found
        result: dict[str, Any]
        if isinstance(mutation, LaunchTestArm):
            result = self._launch(mutation, adset_only=self.faults.partial(2) is not None)
        elif isinstance(mutation, SetBudgets):
            realism = self.scenario.realism
            digits = minor_digits(
                next((c.currency for c in self.scenario.campaigns if c.id == mutation.campaign), "USD")
            )
            minimum = round(realism.min_daily_budget * 10**digits) if realism is not None else 0
            below: list[str] = []
            for adset_id, budget in mutation.budgets[: self.faults.partial(len(mutation.budgets))]:
                adset = self._adset(adset_id)
                if 0 < budget < minimum:
                    below.append(adset_id)  # like Meta: refused, so the ad set sits the window out
                    budget = 0
                adset.daily_budget_minor = int(budget)
                adset.end_day = self.day_index(mutation.end_day) if mutation.end_day else self.day
                adset.status = "ACTIVE" if budget > 0 else "PAUSED"
                for ad in self.ads.values():
                    if ad.adset_id == adset_id:
                        ad.status = adset.status
            result = {"below_minimum": below, "min_daily_budget": minimum} if realism is not None else {}
        elif isinstance(mutation, PauseAds):
            cut = self.faults.partial(len(mutation.ad_ids))
            for ad_id in mutation.ad_ids[:cut]:
                if ad_id in self.ads:
                    self.ads[ad_id].status = "PAUSED"
            for adset_id in mutation.adset_ids[:cut]:
                self._adset(adset_id).status = "PAUSED"
            result = {}
        elif isinstance(mutation, ScaleWinner):
            result = self._scale(mutation)
        else:
            raise PlatformError(f"unsupported mutation {mutation.kind}", code=100)
        self.save()
        return result

    def _adset(self, adset_id: str) -> SimAdSet:
        adset = self.adsets.get(adset_id)
        if adset is None:
            raise PlatformError(f"unknown ad set {adset_id!r}", code=100)
        return adset

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    def _store_image(self, data: bytes) -> str:
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        self.images[sha] = data
        return sha

    def _launch(self, m: LaunchTestArm, adset_only: bool = False) -> dict[str, Any]:
        ctr = self._variant_ctr(m.campaign, m.parent_ad_id, m.lineage)
        # An ad set left by an earlier attempt that failed part-way is reused, never doubled.
        adset = next((s for s in self.adsets.values() if s.name == m.key), None)
        if adset is None:
            adset = SimAdSet(self._next_id("adset"), m.key, m.campaign)
            self.adsets[adset.adset_id] = adset
        if adset_only:
            return {}
        adset_id = adset.adset_id
        ad_id = self._next_id("ad")
        self.ads[ad_id] = SimAd(
            ad_id, m.key, m.campaign, adset_id, "PAUSED", ctr, m.headline,
            image_sha=self._store_image(m.image), lineage=dict(m.lineage), created_day=self.day,
        )  # fmt: skip
        return {"adset_id": adset_id, "ad_id": ad_id}

    def _scale(self, m: ScaleWinner) -> dict[str, Any]:
        parent = self.ads.get(m.parent_ad_id)
        if parent is None:
            raise PlatformError(f"unknown parent ad {m.parent_ad_id!r}", code=100)
        ctr = self._variant_ctr(m.campaign, m.parent_ad_id, m.lineage)
        # A scaled creative wears out like its parent did, counted from its launch.
        onset = None
        root_onset = self._root_onset(parent)
        if root_onset is not None:
            onset = self.day + root_onset
        ad_id = self._next_id("ad")
        # Wear-out, like the parent's, counts the successor's own impressions.
        self.ads[ad_id] = SimAd(
            ad_id, m.key, m.campaign, parent.adset_id, "ACTIVE", ctr, m.headline,
            fatigue_start=onset, decay=parent.decay, image_sha=self._store_image(m.image),
            lineage=dict(m.lineage, parent=m.parent_ad_id), created_day=self.day,
            wearout_frequency=parent.wearout_frequency, wearout_decay=parent.wearout_decay,
        )  # fmt: skip
        parent.status = "PAUSED"
        return {"ad_id": ad_id}

    def _root_onset(self, ad: SimAd) -> int | None:
        if ad.fatigue_start is None:
            return None
        return ad.fatigue_start - ad.created_day

    # -- the passage of a day ---------------------------------------------------
    def run_day(self) -> None:
        """Deliver the current day for every campaign, then advance the clock (saved before it returns)."""
        with self._changing():
            self._run_day()

    def _run_day(self) -> None:
        d = self.day
        realism = self.scenario.realism
        for camp in self.scenario.campaigns:
            digits = minor_digits(camp.currency)
            cpm_minor = camp.cpm * 10.0**digits
            main = [a for a in self.ads.values() if a.adset_id == f"main:{camp.id}" and a.status == "ACTIVE"]
            if main:
                volume = camp.daily_impressions
                if realism is not None and realism.impression_noise > 0:
                    sd = realism.impression_noise
                    volume = round(volume * math.exp(self._stream("impressions", camp.id, d).normal(-sd * sd / 2, sd)))
                rng = self._stream("main", camp.id, d)
                share = rng.dirichlet(np.full(len(main), 200.0))
                imps = rng.multinomial(volume, share)
                for ad, n in zip(main, imps, strict=True):
                    self._deliver(ad, d, int(n), round(int(n) * cpm_minor / 1000.0))
            for adset in self.adsets.values():
                if adset.campaign != camp.id or adset.adset_id.startswith("main:"):
                    continue
                if adset.status != "ACTIVE" or d > adset.end_day or adset.daily_budget_minor <= 0:
                    continue
                # Delivery noise, capped at the platform's daily overspend allowance.
                factor = min(MAX_OVERSPEND, float(self._stream("delivery", adset.name, d).lognormal(0.0, 0.12)))
                if realism is not None:
                    # Near the platform minimum an ad set cannot win enough auctions to spend its budget.
                    factor *= realism.delivered_share(adset.daily_budget_minor, digits)
                spend = math.floor(adset.daily_budget_minor * factor)
                imps_total = int(spend * 1000 / cpm_minor)
                ads = [a for a in self.ads.values() if a.adset_id == adset.adset_id and a.status == "ACTIVE"]
                for ad in ads:
                    n = imps_total // len(ads)
                    self._deliver(ad, d, n, spend // len(ads))
        self.day += 1
        self.save()

    def _stream(self, *parts: object) -> np.random.Generator:
        """A random stream per (purpose, object, day): common random numbers.

        Two runs of the same scenario under different policies draw the same
        noise for the same ad on the same day, so their difference is the
        policies' and not the dice's. Objects are keyed by name (the
        idempotency key for our own), which is the same across runs.
        """
        return np.random.default_rng([self.scenario.seed, stable_seed(*parts)])

    def _deliver(self, ad: SimAd, d: int, impressions: int, spend_minor: int) -> None:
        if impressions and ad.first_day is None:
            ad.first_day = d
        ctr = self.oracle_ctr(ad.ad_id, d)
        realism = self.scenario.realism
        if realism is not None and realism.ctr_overdispersion > 0 and impressions:
            # One draw for the whole ad-day (mean 1): the day is good or bad for every impression of it.
            sd = realism.ctr_overdispersion
            ctr = min(1.0, ctr * math.exp(self._stream("ctr-noise", ad.name, d).normal(-sd * sd / 2, sd)))
        clicks = int(self._stream("clicks", ad.name, d).binomial(impressions, min(ctr, 1.0))) if impressions else 0
        row = InsightRow(ad.ad_id, self.start + timedelta(days=d), impressions, clicks, spend_minor)
        self.rows[(ad.ad_id, d)] = row
        self._by_day.setdefault((ad.campaign, d), {})[ad.ad_id] = row

    # -- persistence ---------------------------------------------------------
    def _signature(self) -> tuple[int, int, int, bytes] | None:
        """Which save the state file holds: each save starts with a token of its own.

        (Inode, time and size alone can repeat: a freed inode is reused, and
        two saves within one clock tick may have the same time and length.)
        """
        assert self.state_path is not None
        try:
            with self.state_path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                head = fh.read(64)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size, head)

    def _sync(self) -> None:
        """Read the state file again if another process saved it since this object last read or wrote it."""
        if self.state_path is None:
            return
        seen = self._signature()
        if seen is not None and seen != self._seen:
            self._load()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """One change as a unit: under the state file's lock, made on the newest state (and saved by the change)."""
        if self.state_path is None:
            yield
            return
        lock = self.state_path.with_name(self.state_path.name + ".lock")
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fh = lock.open("a+")
        except OSError as exc:
            raise TransientError(f"simulated platform: cannot lock its state {lock}: {exc.strerror or exc}") from exc
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self._sync()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self) -> None:
        """Write the state (atomically); a failure (a full disk) undoes the unsaved change and raises TransientError."""
        if self.state_path is None:
            return
        try:
            self._save()
        except OSError as exc:
            if self.state_path.exists():
                self._load()  # what is on disk is the platform's state; the change did not happen
            raise TransientError(
                f"simulated platform: cannot save its state {self.state_path}: {exc.strerror or exc}"
            ) from exc

    def _save(self) -> None:
        assert self.state_path is not None
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        image_dir = self.state_path.with_suffix(".images")
        image_dir.mkdir(exist_ok=True)
        for sha, data in self.images.items():
            p = image_dir / f"{sha}.png"
            if not p.exists():
                p.write_bytes(data)
        state = {
            "day": self.day,
            "seq": self._seq,
            "rng": self.rng.bit_generator.state,
            "fault_rng": self._fault_rng.bit_generator.state,
            "ads": [asdict(a) for a in self.ads.values()],
            "adsets": [asdict(s) for s in self.adsets.values()],
            "rows": [{**asdict(r), "day": r.day.isoformat(), "d": d} for (_, d), r in self.rows.items()],
        }
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, suffix=".part")
        try:
            body = json.dumps(state)
            # First in the file, what _signature reads: a digest of the state (a state, not a moment,
            # so that equal states are equal files).
            saved = hashlib.sha256(body.encode()).hexdigest()[:32]
            with os.fdopen(fd, "w") as fh:
                fh.write(f'{{"saved": "{saved}", {body[1:]}')
            os.replace(tmp, self.state_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._seen = self._signature()

    def _load(self) -> None:
        assert self.state_path is not None
        seen = self._signature()
        state = json.loads(self.state_path.read_text())
        self.day = state["day"]
        self._seq = state["seq"]
        self.rng.bit_generator.state = state["rng"]
        self._fault_rng.bit_generator.state = state["fault_rng"]
        self.ads = {a["ad_id"]: SimAd(**a) for a in state["ads"]}
        self.adsets = {s["adset_id"]: SimAdSet(**s) for s in state["adsets"]}
        self.rows = {}
        self._by_day = {}
        for r in state["rows"]:
            d = r.pop("d")
            r["day"] = date.fromisoformat(r["day"])
            row = InsightRow(**r)
            self.rows[(row.ad_id, d)] = row
            self._by_day.setdefault((self.ads[row.ad_id].campaign, d), {})[row.ad_id] = row
        image_dir = self.state_path.with_suffix(".images")
        if image_dir.exists():
            for p in image_dir.glob("*.png"):
                if p.stem not in self.images:
                    self.images[p.stem] = p.read_bytes()
        self._seen = seen
