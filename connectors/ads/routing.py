"""Each campaign on its own platform: Meta and Google Ads campaigns side by side in one deployment.

``RoutingAdPlatform`` holds one platform per backend and a map from the loop's
campaign ids to them; every call goes to the platform of the campaign it names
(a mutation names its campaign too).  The tick, caps and ledger stay the same:
they only ever talk to one ``AdPlatform``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from connectors.ads.base import AdPlatform, AdSignal, InsightRow, LiveAd, Mutation, SourceCreative
from policies.errors import NotFound


class RoutingAdPlatform(AdPlatform):
    """``AdPlatform`` that sends each campaign's calls to that campaign's platform."""

    name = "routing"

    def __init__(self, platforms: Mapping[str, AdPlatform], campaigns: Mapping[str, str]) -> None:
        """``platforms``: backend name -> platform; ``campaigns``: loop campaign id -> backend name."""
        unknown = sorted({b for b in campaigns.values() if b not in platforms})
        if unknown:
            raise ValueError(f"campaigns name platforms that are not given: {', '.join(unknown)}")
        self.platforms = dict(platforms)
        self.campaigns = dict(campaigns)

    def platform_of(self, campaign: str) -> AdPlatform:
        try:
            return self.platforms[self.campaigns[campaign]]
        except KeyError:
            raise NotFound(f"campaign {campaign!r} is not routed to any platform", campaign=campaign) from None

    def list_ads(self, campaign: str) -> list[LiveAd]:
        return self.platform_of(campaign).list_ads(campaign)

    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        return self.platform_of(campaign).insights(campaign, since, until)

    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        return self.platform_of(campaign).source_creative(campaign, ad_id)

    def signals(self, campaign: str) -> list[AdSignal]:
        return self.platform_of(campaign).signals(campaign)

    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        return self.platform_of(mutation.campaign).find(mutation)

    def apply(self, mutation: Mutation) -> dict[str, Any]:
        return self.platform_of(mutation.campaign).apply(mutation)

    # -- optional parts, passed on ------------------------------------------------
    def _of_key(self, key: str) -> AdPlatform | None:
        """The platform of a mutation key: keys are ``cl:<campaign>:...`` (campaign ids hold no ``:``)."""
        parts = key.split(":")
        backend = self.campaigns.get(parts[1]) if len(parts) > 2 and parts[0] == "cl" else None
        return self.platforms.get(backend) if backend else None

    def remember(self, key: str, objects: dict[str, Any], fresh: bool) -> None:
        platform = self._of_key(key)
        for p in [platform] if platform is not None else self.platforms.values():
            p.remember(key, objects, fresh)

    def objects(self, key: str) -> dict[str, Any]:
        platform = self._of_key(key)
        return platform.objects(key) if platform is not None else {}

    def drain_counters(self) -> list[tuple[str, dict[str, str], float]]:
        """Every platform's counts, each labelled with the platform it is from."""
        return [
            (name, {**labels, "platform": p.name}, amount)
            for p in self.platforms.values()
            for name, labels, amount in p.drain_counters()
        ]

    def restore_counters(self, counts: list[tuple[str, dict[str, str], float]]) -> None:
        by_name = {p.name: p for p in self.platforms.values()}
        for platform_name, p in by_name.items():
            mine = [
                (name, {k: v for k, v in labels.items() if k != "platform"}, amount)
                for name, labels, amount in counts
                if labels.get("platform") == platform_name
            ]
            if mine:
                p.restore_counters(mine)

    def close(self) -> None:
        """Close every platform, even when one fails to."""
        errors: list[BaseException] = []
        for platform in self.platforms.values():
            try:
                platform.close()
            except Exception as exc:  # close the rest first
                errors.append(exc)
        if errors:
            raise errors[0]


__all__ = ["RoutingAdPlatform"]
