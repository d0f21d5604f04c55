"""The ad-platform seam: what the loop reads from and does to an ad platform.

Every mutation carries a deterministic idempotency ``key`` that the platform
object's name contains.  After a crash between sending a mutation and
recording its result, :meth:`AdPlatform.find` looks the key up on the platform
so that the retry adopts the object instead of creating a second one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.ads.counters import ApiCounters
    from connectors.ads.scenario import Scenario


@dataclass(frozen=True)
class LiveAd:
    """An ad of a campaign's main (scaling) ad set as the platform reports it."""

    ad_id: str
    name: str
    status: str  # ACTIVE (delivering) | PAUSED (anything else: see reason)
    headline: str = ""
    # Why an ad that is not ACTIVE does not deliver, as the platform says it
    # (e.g. "ADSET_PAUSED", "DISAPPROVED", "WITH_ISSUES: ..."); "" when ACTIVE.
    reason: str = ""


@dataclass(frozen=True)
class InsightRow:
    """One ad's delivery on one day. Money in integer minor units."""

    ad_id: str
    day: date
    impressions: int
    clicks: int
    spend_minor: int
    conversions: int = 0
    reach: int = 0
    frequency: float = 0.0


@dataclass(frozen=True)
class SourceCreative:
    """What is live for an ad: its image and copy, so variants start from it."""

    ad_id: str
    image: bytes
    headline: str = ""
    message: str = ""
    link: str = ""
    call_to_action: str = "LEARN_MORE"


@dataclass(frozen=True)
class AdSignal:
    """The platform's own reading about one ad, pulled when the loop ingests (e.g. Google's
    asset performance label).

    The loop stores a reading when it differs from the ad's previous reading of the same
    ``name``; when the previous level was one of ``fatigued_after`` the change is recorded as
    a creative-fatigue signal too (Google: ``LOW`` after ``GOOD``/``BEST``).
    """

    ad_id: str
    name: str  # e.g. "asset_performance"
    level: str  # e.g. "LOW"
    fatigued_after: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mutation:
    key: str
    campaign: str

    @property
    def kind(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        """What is recorded as the intent (images by hash, not bytes)."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if isinstance(value, bytes):
                import hashlib

                out[name] = {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
            elif isinstance(value, date):
                out[name] = value.isoformat()
            elif isinstance(value, tuple):
                out[name] = [list(v) if isinstance(v, tuple) else v for v in value]
            else:
                out[name] = value
        return out


@dataclass(frozen=True)
class LaunchTestArm(Mutation):
    """Create one test arm, PAUSED: image, creative (parent's copy), ad set, ad.

    Result: ``{"adset_id": ..., "ad_id": ...}``.
    """

    parent_ad_id: str = ""
    image: bytes = b""
    headline: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)  # variant id, tier, seed...


@dataclass(frozen=True)
class SetBudgets(Mutation):
    """Set each test ad set's daily budget until ``end_day`` (inclusive).

    A budget of 0 pauses the ad set; a positive one activates it.
    """

    budgets: tuple[tuple[str, int], ...] = ()
    end_day: date | None = None


@dataclass(frozen=True)
class PauseAds(Mutation):
    """Pause ads (and, for test arms, their ad sets). Result: ``{}``."""

    ad_ids: tuple[str, ...] = ()
    adset_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScaleWinner(Mutation):
    """Put the winner's pro render live in the parent's ad set and pause the parent.

    Result: ``{"ad_id": ...}``.
    """

    parent_ad_id: str = ""
    image: bytes = b""
    headline: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)


class AdPlatform(ABC):
    """One ad account's platform.

    Implementations: ``SimulatedAdPlatform``, ``MetaAdPlatform``, ``GoogleAdsPlatform``, and
    ``RoutingAdPlatform`` (each campaign on its own platform); each is registered in
    ``connectors.ads.registry``.  The five abstract methods are the contract every platform
    keeps (``tests/contract``); the rest have defaults that suit a real platform.
    """

    name: str = "platform"
    # The scenario a simulated platform plays (its campaigns, budgets and caps); None on a real one.
    scenario: Scenario | None = None

    @abstractmethod
    def list_ads(self, campaign: str) -> list[LiveAd]:
        """The ads of the campaign's main ad set, active or paused (not test arms)."""

    @abstractmethod
    def insights(self, campaign: str, since: date, until: date) -> list[InsightRow]:
        """Daily rows for every ad of the campaign (main and test), ``since..until`` inclusive.

        A day may be reported again later with updated numbers (late attribution).
        """

    @abstractmethod
    def source_creative(self, campaign: str, ad_id: str) -> SourceCreative:
        """The image and copy of a live ad."""

    @abstractmethod
    def find(self, mutation: Mutation) -> dict[str, Any] | None:
        """The result of ``mutation`` if objects named with its key already exist, else None.

        Must be safe to call at any time; used to adopt the effect of a mutation
        whose result was lost in a crash.
        """

    @abstractmethod
    def apply(self, mutation: Mutation) -> dict[str, Any]:
        """Send the mutation and return its result. Idempotent for the same key."""

    # -- optional: what a platform may keep between calls (defaults: nothing) -----
    def signals(self, campaign: str) -> list[AdSignal]:
        """The platform's current readings about the campaign's main ads (pulled, not pushed).

        Default: none. Platforms that push signals (Meta's fatigue webhook) record them
        elsewhere; platforms that report them on request (Google's asset performance labels)
        return them here and the tick stores them.
        """
        return []

    def remember(self, key: str, objects: dict[str, Any], fresh: bool) -> None:
        """What the mutation record of ``key`` knows before ``find``/``apply`` is called.

        ``objects`` are the ids stored by :meth:`objects` on an earlier attempt;
        ``fresh`` means the intent was only just recorded, so nothing was ever
        sent for this key and there is nothing to look up.
        """
        return None

    def objects(self, key: str) -> dict[str, Any]:
        """Ids of the platform objects made or adopted for ``key`` so far (stored on its record)."""
        return {}

    # A platform that counts its API calls keeps them here (connectors.ads.counters).
    counters: ApiCounters | None = None

    def count(self, name: str, **labels: str) -> float:
        """The in-process total of one API counter (over every label value not given); 0 when not counted."""
        return 0.0 if self.counters is None else self.counters.total(name, **labels)

    def drain_counters(self) -> list[tuple[str, dict[str, str], float]]:
        """API counts since the last drain, as ``(name, labels, amount)``, for the tick to store."""
        return [] if self.counters is None else self.counters.drain()

    def restore_counters(self, counts: list[tuple[str, dict[str, str], float]]) -> None:
        """Take back counts that could not be stored: the next drain returns them again."""
        if self.counters is not None:
            self.counters.restore(counts)

    # -- a platform with its own clock (the simulator); real ones follow the calendar ---
    def today(self, campaign: str | None = None) -> date | None:
        """The day the platform is at (the next tick's day), or None: it follows the real calendar.

        ``campaign``: the day of that campaign, where campaigns keep their own clocks.
        """
        return None

    def advance_day(self, campaign: str | None = None) -> None:
        """End the day: a platform with its own clock delivers it and moves on one day.

        ``campaign``: that campaign's day only.  A real platform delivers by
        itself, so the default does nothing.
        """
        return None

    def close(self) -> None:
        """Release connections (and store what is still pending). Safe to call twice."""
        return None
