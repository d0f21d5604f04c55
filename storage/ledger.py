"""The money ledger: reservations, releases and actuals per campaign and account.

Two accounts per campaign are capped: ``test`` (ad spend on test ad sets) and
``credit`` (image generation).  :meth:`Ledger.reserve` is the only way money is
committed, and it refuses (``CapExceeded``) a reservation that does not fit
under the cap given what is spent and reserved already.  Every entry has a
deterministic key, so repeating a step after a crash never reserves twice.

Caps hold per period (``Campaign.cap_period``: month, week or lifetime) and,
optionally, account-wide per calendar month across every campaign and both
accounts (:class:`~storage.models.AccountCap`).  Every entry carries the
platform ``day`` its money belongs to: a reservation's first day, which its
release and its actual repeat.  A period therefore holds exactly the entries
dated inside it, and since an actual never exceeds its reservation (the
platform honours its overspend bound), settling can never push a period past
its cap, however late the report comes.  A reservation whose days cross a
period boundary is made in parts, one per period (:meth:`reserve_window`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, Literal

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from policies.budget import CapState, period_end, period_label, period_start, split_window
from policies.errors import CapExceeded, NotFound
from storage.models import AccountCap, Campaign, LedgerEntry, TickRun

ACCOUNTS = ("test", "credit")
ACCOUNT_ROW = "account"
# How reports name the account-wide cap, in the campaign and account columns.
ALL_CAMPAIGNS = "(all campaigns)"
ALL_ACCOUNTS = "test+credit"


# Statements every tick runs per campaign, built once with their values as bound parameters
# (building one and its cache key costs more than SQLite's work on these small reads).
@cache
def _entries_of_key() -> SelectOfScalar[LedgerEntry]:
    return select(LedgerEntry).where(LedgerEntry.key == bindparam("key"))


@cache
def _entry() -> SelectOfScalar[LedgerEntry]:
    return select(LedgerEntry).where(LedgerEntry.key == bindparam("key"), LedgerEntry.kind == bindparam("kind"))


@cache
def _open_reserves() -> SelectOfScalar[LedgerEntry]:
    released = select(LedgerEntry.key).where(
        LedgerEntry.campaign_id == bindparam("campaign"),
        LedgerEntry.account == bindparam("account"),
        LedgerEntry.kind == "release",
    )
    return (
        select(LedgerEntry)
        .where(
            LedgerEntry.campaign_id == bindparam("campaign"),
            LedgerEntry.account == bindparam("account"),
            LedgerEntry.kind == "reserve",
            col(LedgerEntry.key).startswith(bindparam("prefix")),
            col(LedgerEntry.key).not_in(released),
        )
        .order_by(col(LedgerEntry.id))
    )


@cache
def _sums_by_kind(campaign: bool, account: bool, start: bool, end: bool) -> Any:
    """Sums per kind of entry, filtered by whichever of campaign, account and period bounds are given."""
    stmt = select(LedgerEntry.kind, func.coalesce(func.sum(LedgerEntry.amount_minor), 0))
    if campaign:
        stmt = stmt.where(LedgerEntry.campaign_id == bindparam("campaign"))
    if account:
        stmt = stmt.where(LedgerEntry.account == bindparam("account"))
    if start:
        stmt = stmt.where(col(LedgerEntry.day) >= bindparam("start"))
    if end:
        stmt = stmt.where(col(LedgerEntry.day) < bindparam("end"))
    return stmt.group_by(LedgerEntry.kind)


@dataclass(frozen=True)
class AccountSummary:
    """One capped account in one period (``start``/``end`` are None for lifetime)."""

    campaign_id: str
    account: str
    cap: int
    spent: int
    reserved: int
    period: str = "lifetime"
    start: date | None = None
    end: date | None = None  # exclusive: the first day of the next period

    @property
    def left(self) -> int:
        return max(0, self.cap - self.spent - self.reserved)

    @property
    def label(self) -> str:
        return period_label(self.start, self.period)

    @property
    def state(self) -> CapState:
        return CapState(self.cap, self.spent, self.reserved)


class Ledger:
    """Ledger operations inside the caller's session (the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _campaign(self, campaign_id: str, lock: bool = False) -> Campaign:
        if lock:
            campaign = self.session.exec(select(Campaign).where(Campaign.id == campaign_id).with_for_update()).first()
        else:
            # The session's copy when it holds one (a query would return that same object), else one SELECT.
            campaign = self.session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(f"unknown campaign {campaign_id!r}", campaign=campaign_id)
        return campaign

    def account_cap(self, lock: bool = False) -> AccountCap | None:
        """The account-wide monthly cap's row when a cap is set, else None."""
        if lock:
            row = self.session.exec(select(AccountCap).where(AccountCap.id == ACCOUNT_ROW).with_for_update()).first()
        else:
            row = self.session.get(AccountCap, ACCOUNT_ROW)
        return row if row is not None and row.monthly_cap_minor is not None else None

    def current_day(self) -> date:
        """The platform's day as far as the database knows it, for reads made outside a tick.

        The last tick's day, else the newest ledger entry's day, else the wall-clock date.
        """
        tick_day = self.session.exec(select(func.max(TickRun.day)).where(col(TickRun.dry_run).is_(False))).one()
        entry_day = self.session.exec(select(func.max(LedgerEntry.day))).one()
        known = [d for d in (tick_day, entry_day) if d is not None]
        return max(known) if known else date.today()

    # -- sums ---------------------------------------------------------------------------
    def _totals(
        self, campaign_id: str | None, account: str | None, start: date | None, end: date | None
    ) -> dict[str, int]:
        given = {"campaign": campaign_id, "account": account, "start": start, "end": end}
        stmt = _sums_by_kind(*(v is not None for v in given.values()))
        params = {k: v for k, v in given.items() if v is not None}
        sums = {kind: int(total) for kind, total in self.session.exec(stmt, params=params).all()}
        return {
            "spent": sums.get("actual", 0),
            "reserved": max(0, sums.get("reserve", 0) - sums.get("release", 0)),
        }

    def _campaign_period(self, campaign: Campaign, account: str, day: date) -> AccountSummary:
        period = campaign.cap_period
        start, end = period_start(day, period), period_end(day, period)
        cap = campaign.test_spend_cap_minor if account == "test" else campaign.credit_cap_minor
        return AccountSummary(campaign.id, account, cap, **self._totals(campaign.id, account, start, end),
                              period=period, start=start, end=end)  # fmt: skip

    def states(self, campaign_ids: list[str] | None = None, day: date | None = None) -> dict[tuple[str, str], CapState]:
        """:meth:`state` of every account of many campaigns in the period holding ``day``, keyed (campaign,
        account): one grouped query per kind of cap period (the dashboard's overview of them all).

        Same sums as :meth:`_totals`; a change to what counts against a cap belongs in both.
        """
        day = day or self.current_day()
        camps = select(Campaign.id, Campaign.test_spend_cap_minor, Campaign.credit_cap_minor, Campaign.cap_period)
        if campaign_ids is not None:
            camps = camps.where(col(Campaign.id).in_(campaign_ids))
        rows = list(self.session.exec(camps).all())
        sums: dict[tuple[str, str], dict[str, int]] = {}
        for period in sorted({r[3] for r in rows}):
            ids = [r[0] for r in rows if r[3] == period]
            start, end = period_start(day, period), period_end(day, period)
            stmt = select(
                LedgerEntry.campaign_id, LedgerEntry.account, LedgerEntry.kind,
                func.coalesce(func.sum(LedgerEntry.amount_minor), 0),
            ).where(col(LedgerEntry.campaign_id).in_(ids))  # fmt: skip
            if start is not None:
                stmt = stmt.where(col(LedgerEntry.day) >= start)
            if end is not None:
                stmt = stmt.where(col(LedgerEntry.day) < end)
            stmt = stmt.group_by(LedgerEntry.campaign_id, LedgerEntry.account, LedgerEntry.kind)
            for campaign_id, account, kind, total in self.session.exec(stmt).all():
                sums.setdefault((campaign_id, account), {})[kind] = int(total)
        out = {}
        for campaign_id, test_cap, credit_cap, _ in rows:
            for account, cap in (("test", test_cap), ("credit", credit_cap)):
                k = sums.get((campaign_id, account), {})
                out[(campaign_id, account)] = CapState(
                    cap=cap, spent=k.get("actual", 0), reserved=max(0, k.get("reserve", 0) - k.get("release", 0))
                )
        return out

    def _account_period(self, row: AccountCap, day: date) -> AccountSummary:
        start, end = period_start(day, "month"), period_end(day, "month")
        return AccountSummary(ALL_CAMPAIGNS, ALL_ACCOUNTS, int(row.monthly_cap_minor or 0),
                              **self._totals(None, None, start, end), period="month", start=start, end=end)  # fmt: skip

    # -- where an account stands ----------------------------------------------------------
    def state(self, campaign_id: str, account: str, day: date | None = None) -> CapState:
        """The campaign's own cap in the period holding ``day`` (default :meth:`current_day`)."""
        return self.summary(campaign_id, account, day).state

    def summary(self, campaign_id: str, account: str, day: date | None = None) -> AccountSummary:
        if account not in ACCOUNTS:
            raise ValueError(f"account: expected one of {ACCOUNTS}, got {account!r}")
        campaign = self._campaign(campaign_id)
        return self._campaign_period(campaign, account, day or self.current_day())

    def caps(self, campaign_id: str, account: str, day: date) -> list[AccountSummary]:
        """Every cap that money of ``account`` spent on ``day`` counts against: the campaign's, the account's."""
        out = [self.summary(campaign_id, account, day)]
        row = self.account_cap()
        if row is not None:
            out.append(self._account_period(row, day))
        return out

    def room(self, campaign_id: str, account: str, day: date) -> int:
        """What can still be reserved for money spent on ``day`` under every cap."""
        return min(c.left for c in self.caps(campaign_id, account, day))

    def window_caps(self, campaign_id: str, account: str, start: date, days: int) -> list[tuple[AccountSummary, int]]:
        """The caps a window of ``days`` days from ``start`` touches, each with the window's days in its period."""
        seen: dict[tuple[str, date | None], tuple[AccountSummary, int]] = {}
        for first, n in self._parts(campaign_id, start, days):
            for cap in self.caps(campaign_id, account, first):
                key = (cap.campaign_id, cap.start)
                seen[key] = (cap, seen[key][1] + n) if key in seen else (cap, n)
        return list(seen.values())

    def _parts(self, campaign_id: str, start: date, days: int) -> list[tuple[date, int]]:
        periods = [self._campaign(campaign_id).cap_period]
        if self.account_cap() is not None:
            periods.append("month")
        return split_window(start, days, periods)

    def holds_money(self, campaign_id: str) -> bool:
        """Whether the ledger has any entry of ``campaign_id`` (its amounts are in that campaign's currency)."""
        stmt = select(LedgerEntry.id).where(LedgerEntry.campaign_id == campaign_id).limit(1)
        return self.session.exec(stmt).first() is not None

    def campaigns_with_money(self, day: date, period: str = "month") -> dict[str, str]:
        """The campaigns with entries in the period holding ``day``, each with its currency (campaign id -> code)."""
        start, end = period_start(day, period), period_end(day, period)
        stmt = select(Campaign.id, Campaign.currency).where(
            col(Campaign.id).in_(select(LedgerEntry.campaign_id).where(
                *([col(LedgerEntry.day) >= start] if start is not None else []),
                *([col(LedgerEntry.day) < end] if end is not None else []),
            ))
        )  # fmt: skip
        return {campaign_id: currency for campaign_id, currency in self.session.exec(stmt).all()}

    def account_summary(self, day: date | None = None) -> AccountSummary | None:
        row = self.account_cap()
        return None if row is None else self._account_period(row, day or self.current_day())

    # -- periods for reports -------------------------------------------------------------
    def periods(self, campaign_id: str, account: str, day: date | None = None) -> list[AccountSummary]:
        """The campaign's account in every period that has entries, and the current one, oldest first."""
        campaign = self._campaign(campaign_id)
        days = self.session.exec(
            select(col(LedgerEntry.day))
            .where(LedgerEntry.campaign_id == campaign_id, LedgerEntry.account == account)
            .distinct()
        ).all()
        return self._by_period([d for d in days if d is not None], day, campaign.cap_period,
                               lambda d: self._campaign_period(campaign, account, d))  # fmt: skip

    def account_periods(self, day: date | None = None) -> list[AccountSummary]:
        """The account-wide cap in every month that has entries, and the current one; empty without a cap."""
        row = self.account_cap()
        if row is None:
            return []
        days = self.session.exec(select(col(LedgerEntry.day)).distinct()).all()
        return self._by_period([d for d in days if d is not None], day, "month",
                               lambda d: self._account_period(row, d))  # fmt: skip

    def _by_period(
        self, days: list[date], day: date | None, period: str, make: Callable[[date], AccountSummary]
    ) -> list[AccountSummary]:
        """``make(first day)`` for each period holding one of ``days`` or ``day`` (default today), oldest first."""
        firsts: dict[date | None, date] = {}
        for d in [*days, day or self.current_day()]:
            firsts.setdefault(period_start(d, period), d)
        return [make(d) for _, d in sorted(firsts.items(), key=lambda kv: kv[0] or date.min)]

    # -- entries -------------------------------------------------------------------------
    def find(self, key: str, kind: str) -> LedgerEntry | None:
        return self.session.exec(_entry(), params={"key": key, "kind": kind}).first()

    def _entries(self, key: str) -> dict[str, LedgerEntry]:
        """Every entry under ``key`` by kind (reserve, release, actual: one each at most), in one query."""
        return {e.kind: e for e in self.session.exec(_entries_of_key(), params={"key": key}).all()}

    def _lock(self, campaign_id: str) -> None:
        # Campaign row first, then the account row: every writer takes them in this order.
        self._campaign(campaign_id, lock=True)
        self.account_cap(lock=True)

    def _refuse_unless_fits(self, campaign_id: str, account: str, wanted: dict[date, int]) -> None:
        """Raise CapExceeded unless the amounts (by first day) fit every cap together."""
        need: dict[tuple[str, date | None], tuple[AccountSummary, int]] = {}
        for day, amount in wanted.items():
            for cap in self.caps(campaign_id, account, day):
                key = (cap.campaign_id, cap.start)
                need[key] = (cap, need[key][1] + amount) if key in need else (cap, amount)
        for cap, amount in need.values():
            if not cap.state.fits(amount):
                scope = account if cap.campaign_id == campaign_id else "account-wide"
                raise CapExceeded(campaign_id, scope, amount, cap.left, "" if cap.period == "lifetime" else cap.label)

    def reserve(
        self,
        campaign_id: str,
        account: str,
        key: str,
        amount: int,
        experiment_id: str | None = None,
        tier: str | None = None,
        note: str = "",
        day: date | None = None,
    ) -> LedgerEntry:
        """Reserve ``amount`` under ``key`` for money spent on ``day``; idempotent; CapExceeded if it does not fit.

        ``day`` is the platform day (default :meth:`current_day`); the
        reservation counts against the caps of the periods holding it.
        """
        if amount < 0:
            raise ValueError(f"amount: expected >= 0, got {amount}")
        existing = self.find(key, "reserve")
        if existing is not None:
            return existing
        day = day or self.current_day()
        self._lock(campaign_id)
        self._refuse_unless_fits(campaign_id, account, {day: amount})
        return self._add(campaign_id, account, "reserve", key, amount, day, experiment_id, tier, note)

    def reserve_window(
        self,
        campaign_id: str,
        account: str,
        key: str,
        per_day: int,
        start: date,
        days: int,
        experiment_id: str | None = None,
        note: str = "",
    ) -> list[LedgerEntry]:
        """Reserve ``per_day`` for each of ``days`` days from ``start``, a part per period.

        A window inside one period is one entry under ``key``.  A window that
        crosses a period boundary (of the campaign's cap or of the
        account-wide month) becomes one entry per part, keyed
        ``{key}/{first day}+{days}``, each held against the caps of its own
        period; all parts fit or none is made (CapExceeded).  Idempotent.
        """
        if per_day < 0:
            raise ValueError(f"per_day: expected >= 0, got {per_day}")
        parts = self._parts(campaign_id, start, days)
        keys = [key] if len(parts) == 1 else [f"{key}/{first.isoformat()}+{n}" for first, n in parts]
        found = [self.find(k, "reserve") for k in keys]
        if all(e is not None for e in found):
            return [e for e in found if e is not None]
        self._lock(campaign_id)
        self._refuse_unless_fits(campaign_id, account, {first: per_day * n for first, n in parts})
        made = []
        for entry, k, (first, n) in zip(found, keys, parts, strict=True):
            if entry is None:
                entry = self._add(campaign_id, account, "reserve", k, per_day * n, first, experiment_id, None, note)
            made.append(entry)
        return made

    def _add(self, campaign_id, account, kind, key, amount, day, experiment_id, tier, note, flush=True) -> LedgerEntry:  # type: ignore[no-untyped-def]
        entry = LedgerEntry(
            campaign_id=campaign_id,
            account=account,
            kind=kind,
            key=key,
            amount_minor=amount,
            day=day,
            experiment_id=experiment_id,
            tier=tier,
            note=note,
        )
        self.session.add(entry)
        if flush:
            self.session.flush()
        return entry

    def is_open(self, key: str) -> bool:
        entries = self._entries(key)
        return "reserve" in entries and "release" not in entries

    def settle(
        self,
        key: str,
        actual: int | None | Literal["reserved"],
        note: str = "",
        *,
        open_entry: LedgerEntry | None = None,
    ) -> None:
        """Close the reservation ``key``: record ``actual`` spend (None: nothing spent; ``"reserved"``: the amount
        reserved, as for a generation credit that was used) and release it.

        Both entries carry the reservation's day: the money is booked to the
        period that held it in reserve, whenever the report arrives.
        ``open_entry`` is the reservation as :meth:`open_reservations` read it
        in this session and nothing has settled since (a caller settling its
        open reservations one by one): the key is not read again.
        """
        if open_entry is not None and (open_entry.key != key or open_entry.kind != "reserve"):
            raise ValueError(
                f"open_entry: expected the reserve entry of {key!r}, got {open_entry.kind} {open_entry.key!r}"
            )
        # An open reservation has no release, so no actual either: settle writes both together.
        entries = {"reserve": open_entry} if open_entry is not None else self._entries(key)
        r = entries.get("reserve")
        if r is None:
            raise NotFound(f"no reservation with key {key!r}", key=key)
        if actual == "reserved":
            actual = r.amount_minor
        if actual is not None and actual > 0 and "actual" not in entries:
            self._add(
                r.campaign_id, r.account, "actual", key, actual, r.day, r.experiment_id, r.tier, note, flush=False
            )
        if "release" not in entries:
            self._add(
                r.campaign_id, r.account, "release", key, r.amount_minor, r.day, r.experiment_id, r.tier, note,
                flush=False,
            )  # fmt: skip
        self.session.flush()

    def open_reservations(self, campaign_id: str, account: str, prefix: str = "") -> list[LedgerEntry]:
        """The reservations under ``prefix`` without a release yet, oldest first (one query)."""
        params = {"campaign": campaign_id, "account": account, "prefix": prefix}
        return list(self.session.exec(_open_reserves(), params=params).all())

    def spent(self, campaign_id: str, account: str, experiment_id: str | None = None) -> int:
        stmt = select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.campaign_id == campaign_id,
            LedgerEntry.account == account,
            LedgerEntry.kind == "actual",
        )
        if experiment_id is not None:
            stmt = stmt.where(LedgerEntry.experiment_id == experiment_id)
        return int(self.session.exec(stmt).one())
