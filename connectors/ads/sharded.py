"""The simulated platform with one state file per campaign, for concurrent workers.

``SimulatedAdPlatform`` keeps a whole scenario in one JSON file with one
random stream: two processes ticking two campaigns would each load the file,
change their campaign and write it back, and the second write would erase the
first.  Its shared random stream and id counter also make one campaign's
draws depend on the order in which the others were served.

``ShardedSimulatedAdPlatform`` gives each campaign its own
``SimulatedAdPlatform`` over a one-campaign scenario, saved in
``<state_dir>/<campaign>.json``.  Campaigns then share nothing: a worker that
holds a campaign's lock (``loop.locks.campaign_lock``) is the only writer
of that campaign's file, and the outcome of a campaign is the same whatever
order, process or machine its ticks run in.  Each shard's random stream is
seeded from the scenario seed and the campaign id, so it differs from the
whole-scenario layout's (which stays the default of the inline executor).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from connectors.ads.base import AdPlatform, InsightRow, LiveAd, Mutation, SourceCreative
from connectors.ads.scenario import Scenario
from connectors.ads.simulated import SimulatedAdPlatform
from connectors.images.procedural import stable_seed
from policies.errors import NotFound

if TYPE_CHECKING:
    from connectors.ads.registry import PlatformContext


def simulated_platform(ctx: PlatformContext) -> AdPlatform:
    """The ``simulated`` registry line: ``[simulated]``'s scenario, one state file or one per campaign."""
    from connectors.ads.scenario import load_scenario

    settings = ctx.settings
    scenario = ctx.scenario or load_scenario(settings.scenario or None)
    start = date.fromisoformat(settings.start_date)
    if settings.layout == "per-campaign":
        return ShardedSimulatedAdPlatform(scenario, start=start, state_dir=ctx.data_dir / "simulated-platform")
    return SimulatedAdPlatform(scenario, start=start, state_path=ctx.data_dir / "simulated-platform.json")


class ShardedSimulatedAdPlatform(AdPlatform):
    """``AdPlatform`` over a scenario, one ``SimulatedAdPlatform`` shard per campaign.

    Shards load lazily from their files, so a worker that ticks one campaign
    reads and writes only that campaign's state.
    """

    name = "simulated"
    scenario: Scenario

    def __init__(self, scenario: Scenario, start: date = date(2026, 1, 5), state_dir: str | Path | None = None) -> None:
        self.scenario = scenario
        self.start = start
        self.state_dir = Path(state_dir) if state_dir else None
        self._shards: dict[str, SimulatedAdPlatform] = {}

    def shard(self, campaign: str) -> SimulatedAdPlatform:
        """The campaign's platform, loaded from its state file on first use."""
        found = self._shards.get(campaign)
        if found is not None:
            return found
        try:
            spec = self.scenario.campaign(campaign)
        except KeyError:
            raise NotFound(f"no campaign {campaign!r} in the scenario", campaign=campaign) from None
        sub = self.scenario.model_copy(update={"campaigns": (spec,)})
        path = self.state_dir / f"{campaign}.json" if self.state_dir else None
        fresh = path is None or not path.exists()
        shard = SimulatedAdPlatform(sub, start=self.start, state_path=path)
        if fresh:
            # Variant CTRs keep the scenario seed (they are drawn from the variant's identity);
            # delivery noise gets a stream of its own per campaign.
            shard.rng = np.random.default_rng([self.scenario.seed, stable_seed("shard", campaign)])
        self._shards[campaign] = shard
        return shard

    @property
    def campaign_ids(self) -> list[str]:
        return [c.id for c in self.scenario.campaigns]

    # -- the clock -------------------------------------------------------------
    def today_of(self, campaign: str) -> date:
        """The simulated day a campaign's shard is at (its next tick's day)."""
        return self.shard(campaign).today()

    def today(self, campaign: str | None = None) -> date:
        """The day of ``campaign``'s shard; without one, the earliest of any (all equal when ticked together)."""
        if campaign is not None:
            return self.today_of(campaign)
        return min(self.today_of(c) for c in self.campaign_ids)

    def day_index(self, day: date) -> int:
        return (day - self.start).days

    def run_day(self, campaign: str | None = None) -> None:
        """Deliver the current day for one campaign, or for every campaign."""
        for c in [campaign] if campaign else self.campaign_ids:
            self.shard(c).run_day()

    def advance_day(self, campaign: str | None = None) -> None:
        self.run_day(campaign)

    def save(self) -> None:
        for shard in self._shards.values():
            shard.save()

    # -- AdPlatform ---------------------------------------------------------------
    def list_ads(self, campaign: str) -> list[LiveAd]:
        return self.shard(campaign).list_ads(campaign)

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        return self.shard(campaign).insights(campaign, since, until)

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        return self.shard(campaign).source_creative(campaign, ad_id)

    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        return self.shard(mutation.campaign).find(mutation)

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        return self.shard(mutation.campaign).apply(mutation)

    # -- truth, for scoring ---------------------------------------------------------
    def oracle_ctr(self, campaign: str, ad_id: str, day: int) -> float:
        return self.shard(campaign).oracle_ctr(ad_id, day)


__all__ = ["ShardedSimulatedAdPlatform"]
