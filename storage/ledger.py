"""The money ledger: reservations, releases and actuals per campaign and account.

Two accounts per campaign are capped: ``test`` (ad spend on test ad sets) and
``credit`` (image generation).  :meth:`Ledger.reserve` is the only way money is
committed, and it refuses (``CapExceeded``) a reservation that does not fit
under the cap given what is spent and reserved already.  Every entry has a
deterministic key, so repeating a step after a crash never reserves twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from policies.budget import CapState
from policies.errors import CapExceeded, NotFound
from storage.models import Campaign, LedgerEntry

ACCOUNTS = ("test", "credit")


@dataclass(frozen=True)
class AccountSummary:
    campaign_id: str
    account: str
    cap: int
    spent: int
    reserved: int

    @property
    def left(self) -> int:
        return max(0, self.cap - self.spent - self.reserved)


class Ledger:
    """Ledger operations inside the caller's session (the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _campaign(self, campaign_id: str, lock: bool = False) -> Campaign:
        stmt = select(Campaign).where(Campaign.id == campaign_id)
        if lock:
            stmt = stmt.with_for_update()
        campaign = self.session.exec(stmt).first()
        if campaign is None:
            raise NotFound(f"unknown campaign {campaign_id!r}", campaign=campaign_id)
        return campaign

    def state(self, campaign_id: str, account: str) -> CapState:
        if account not in ACCOUNTS:
            raise ValueError(f"account: expected one of {ACCOUNTS}, got {account!r}")
        campaign = self._campaign(campaign_id)
        cap = campaign.test_spend_cap_minor if account == "test" else campaign.credit_cap_minor
        return CapState(cap=cap, **self._totals(campaign_id, account))

    def _totals(self, campaign_id: str, account: str) -> dict[str, int]:
        rows = self.session.exec(
            select(LedgerEntry.kind, func.coalesce(func.sum(LedgerEntry.amount_minor), 0))
            .where(LedgerEntry.campaign_id == campaign_id, LedgerEntry.account == account)
            .group_by(LedgerEntry.kind)
        ).all()
        sums = {kind: int(total) for kind, total in rows}
        return {
            "spent": sums.get("actual", 0),
            "reserved": max(0, sums.get("reserve", 0) - sums.get("release", 0)),
        }

    def states(self, campaign_ids: list[str] | None = None) -> dict[tuple[str, str], CapState]:
        """:meth:`state` of every account of many campaigns, keyed (campaign, account), in one grouped query
        (the dashboard's overview of them all).

        Same sums as :meth:`_totals`; a change to what counts against a cap belongs in both.
        """
        camps = select(Campaign.id, Campaign.test_spend_cap_minor, Campaign.credit_cap_minor)
        stmt = select(
            LedgerEntry.campaign_id, LedgerEntry.account, LedgerEntry.kind,
            func.coalesce(func.sum(LedgerEntry.amount_minor), 0),
        ).group_by(LedgerEntry.campaign_id, LedgerEntry.account, LedgerEntry.kind)  # fmt: skip
        if campaign_ids is not None:
            camps = camps.where(col(Campaign.id).in_(campaign_ids))
            stmt = stmt.where(col(LedgerEntry.campaign_id).in_(campaign_ids))
        sums: dict[tuple[str, str], dict[str, int]] = {}
        for campaign_id, account, kind, total in self.session.exec(stmt).all():
            sums.setdefault((campaign_id, account), {})[kind] = int(total)
        out = {}
        for campaign_id, test_cap, credit_cap in self.session.exec(camps).all():
            for account, cap in (("test", test_cap), ("credit", credit_cap)):
                k = sums.get((campaign_id, account), {})
                out[(campaign_id, account)] = CapState(
                    cap=cap, spent=k.get("actual", 0), reserved=max(0, k.get("reserve", 0) - k.get("release", 0))
                )
        return out

    def summary(self, campaign_id: str, account: str) -> AccountSummary:
        s = self.state(campaign_id, account)
        return AccountSummary(campaign_id, account, s.cap, s.spent, s.reserved)

    def find(self, key: str, kind: str) -> LedgerEntry | None:
        return self.session.exec(select(LedgerEntry).where(LedgerEntry.key == key, LedgerEntry.kind == kind)).first()

    def reserve(
        self,
        campaign_id: str,
        account: str,
        key: str,
        amount: int,
        experiment_id: str | None = None,
        tier: str | None = None,
        note: str = "",
    ) -> LedgerEntry:
        """Reserve ``amount`` under ``key``; idempotent; raises CapExceeded if it does not fit."""
        if amount < 0:
            raise ValueError(f"amount: expected >= 0, got {amount}")
        existing = self.find(key, "reserve")
        if existing is not None:
            return existing
        self._campaign(campaign_id, lock=True)
        state = self.state(campaign_id, account)
        if not state.fits(amount):
            raise CapExceeded(campaign_id, account, amount, state.left)
        entry = LedgerEntry(
            campaign_id=campaign_id,
            account=account,
            kind="reserve",
            key=key,
            amount_minor=amount,
            experiment_id=experiment_id,
            tier=tier,
            note=note,
        )
        self.session.add(entry)
        self.session.flush()
        return entry

    def is_open(self, key: str) -> bool:
        return self.find(key, "reserve") is not None and self.find(key, "release") is None

    def settle(self, key: str, actual: int | None, note: str = "") -> None:
        """Close the reservation ``key``: record ``actual`` spend (None: nothing spent) and release it."""
        reservation = self.find(key, "reserve")
        if reservation is None:
            raise NotFound(f"no reservation with key {key!r}", key=key)
        if actual is not None and actual > 0 and self.find(key, "actual") is None:
            self.session.add(
                LedgerEntry(
                    campaign_id=reservation.campaign_id,
                    account=reservation.account,
                    kind="actual",
                    key=key,
                    amount_minor=actual,
                    experiment_id=reservation.experiment_id,
                    tier=reservation.tier,
                    note=note,
                )
            )
        if self.find(key, "release") is None:
            self.session.add(
                LedgerEntry(
                    campaign_id=reservation.campaign_id,
                    account=reservation.account,
                    kind="release",
                    key=key,
                    amount_minor=reservation.amount_minor,
                    experiment_id=reservation.experiment_id,
                    tier=reservation.tier,
                    note=note,
                )
            )
        self.session.flush()

    def open_reservations(self, campaign_id: str, account: str, prefix: str = "") -> list[LedgerEntry]:
        reserves = self.session.exec(
            select(LedgerEntry).where(
                LedgerEntry.campaign_id == campaign_id,
                LedgerEntry.account == account,
                LedgerEntry.kind == "reserve",
                LedgerEntry.key.startswith(prefix),  # type: ignore[attr-defined]
            )
        ).all()
        released = set(
            self.session.exec(
                select(LedgerEntry.key).where(
                    LedgerEntry.campaign_id == campaign_id,
                    LedgerEntry.account == account,
                    LedgerEntry.kind == "release",
                )
            ).all()
        )
        return [r for r in reserves if r.key not in released]

    def spent(self, campaign_id: str, account: str, experiment_id: str | None = None) -> int:
        stmt = select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.campaign_id == campaign_id,
            LedgerEntry.account == account,
            LedgerEntry.kind == "actual",
        )
        if experiment_id is not None:
            stmt = stmt.where(LedgerEntry.experiment_id == experiment_id)
        return int(self.session.exec(stmt).one())
