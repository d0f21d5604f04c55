"""Validation of what an ad platform reports, before any of it is stored.

Two entry points:

* :func:`parse_insights` reads a raw insights payload (Graph-style: a list of
  row objects, or ``{"data": [...]}``, numbers possibly as strings, spend in
  major units of the account's ``currency``) into ``InsightRow`` objects;
* :func:`check_rows` checks ``InsightRow`` objects from any connector.

Both refuse, with :class:`InvalidPayload` and one line that says what is
wrong and where (``campaign shop: insights row 3 (ad 42, 2026-01-07):
clicks: expected a whole number, got '1e3x'``): missing fields, numbers that
are not numbers, nulls, negative or absurd values, more clicks than
impressions, the same ad and day twice with different numbers, a row that is
not a single day or lies outside the window asked for, an unknown currency.
The loop checks a campaign's whole batch before it writes a row of it, so a
bad payload stores nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from connectors.ads.base import InsightRow
from connectors.ads.currencies import minor_digits
from policies.errors import PlatformError

# A payload's spend is in major units; the loop's money in the currency's ISO 4217 minor unit.
# Beyond these, a number is a platform bug or a unit mix-up, not delivery.
MAX_IMPRESSIONS = 10**10
MAX_SPEND_MINOR = 10**12
MAX_FREQUENCY = 1000.0
AD_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
REQUIRED = ("ad_id", "date_start", "impressions", "clicks", "spend")


class InvalidPayload(PlatformError):
    """The platform reported something that cannot be true or cannot be read; nothing of it is stored."""

    def __init__(self, problem: str, campaign: str | None = None, where: str = "") -> None:
        prefix = f"campaign {campaign}: " if campaign else ""
        super().__init__(f"{prefix}{where}: {problem}" if where else f"{prefix}{problem}", campaign=campaign)
        self.problem, self.where = problem, where


def currency_exponent(currency: Any, campaign: str | None = None) -> int:
    """Minor-unit exponent of an ISO 4217 currency; an unknown one is refused."""
    try:
        return minor_digits(currency)
    except ValueError:
        raise InvalidPayload(
            f"unknown currency {currency!r} (expected an ISO 4217 code)", campaign, "account"
        ) from None


def _count(raw: Mapping[str, Any], key: str, where: str, campaign: str | None, limit: int) -> int:
    value = raw.get(key)
    if value is None:
        raise InvalidPayload(f"{key}: missing or null", campaign, where)
    if isinstance(value, bool):
        raise InvalidPayload(f"{key}: expected a whole number, got {value!r}", campaign, where)
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value)
    ):
        number = int(value)
    else:
        raise InvalidPayload(f"{key}: expected a whole number, got {value!r}", campaign, where)
    if number < 0:
        raise InvalidPayload(f"{key}: negative ({number})", campaign, where)
    if number > limit:
        raise InvalidPayload(f"{key}: absurd value {number} (more than {limit})", campaign, where)
    return number


def _spend(raw: Mapping[str, Any], exponent: int, where: str, campaign: str | None) -> int:
    value = raw.get("spend")
    if value is None:
        raise InvalidPayload("spend: missing or null", campaign, where)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload(f"spend: expected a decimal amount, got {value!r}", campaign, where)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidPayload(f"spend: expected a decimal amount, got {value!r}", campaign, where) from None
    if not amount.is_finite():
        raise InvalidPayload(f"spend: expected a decimal amount, got {value!r}", campaign, where)
    if amount < 0:
        raise InvalidPayload(f"spend: negative ({value})", campaign, where)
    if amount > Decimal(MAX_SPEND_MINOR) / 10**exponent:
        raise InvalidPayload(f"spend: absurd value {value}", campaign, where)
    return int((amount * 10**exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _day(raw: Mapping[str, Any], key: str, where: str, campaign: str | None) -> date:
    value = raw.get(key)
    if value is None:
        raise InvalidPayload(f"{key}: missing or null", campaign, where)
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidPayload(f"{key}: expected a date YYYY-MM-DD, got {value!r}", campaign, where) from None


def parse_insights(
    payload: Any,
    *,
    currency: Any,
    since: date | None = None,
    until: date | None = None,
    campaign: str | None = None,
    conversion_action: str = "offsite_conversion.fb_pixel_lead",
) -> list[InsightRow]:
    """A raw insights payload as checked ``InsightRow`` objects (all or nothing)."""
    exponent = currency_exponent(currency, campaign)
    rows = payload.get("data") if isinstance(payload, Mapping) else payload
    if not isinstance(rows, list):
        raise InvalidPayload(f"expected a list of rows, got {type(rows).__name__}", campaign, "insights")
    out: list[InsightRow] = []
    for i, raw in enumerate(rows):
        where = f"insights row {i}"
        if not isinstance(raw, Mapping):
            raise InvalidPayload(f"expected an object, got {type(raw).__name__}", campaign, where)
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise InvalidPayload(f"missing field(s) {', '.join(missing)}", campaign, where)
        ad_id = raw["ad_id"]
        if not isinstance(ad_id, str | int) or isinstance(ad_id, bool) or not AD_ID.match(str(ad_id)):
            raise InvalidPayload(f"ad_id: expected an id, got {ad_id!r}", campaign, where)
        day = _day(raw, "date_start", where, campaign)
        where = f"insights row {i} (ad {ad_id}, {day})"
        if "date_stop" in raw and _day(raw, "date_stop", where, campaign) != day:
            raise InvalidPayload(f"not a daily row: {raw['date_start']}..{raw['date_stop']}", campaign, where)
        conversions = 0
        actions = raw.get("actions") or []
        if not isinstance(actions, list):
            raise InvalidPayload(f"actions: expected a list, got {type(actions).__name__}", campaign, where)
        for action in actions:
            if isinstance(action, Mapping) and action.get("action_type") == conversion_action:
                conversions += _count(action, "value", f"{where} actions", campaign, MAX_IMPRESSIONS)
        frequency = raw.get("frequency") or 0.0
        try:
            frequency = float(frequency)
        except (TypeError, ValueError):
            raise InvalidPayload(f"frequency: expected a number, got {frequency!r}", campaign, where) from None
        out.append(
            InsightRow(
                ad_id=str(ad_id),
                day=day,
                impressions=_count(raw, "impressions", where, campaign, MAX_IMPRESSIONS),
                clicks=_count(raw, "clicks", where, campaign, MAX_IMPRESSIONS),
                spend_minor=_spend(raw, exponent, where, campaign),
                conversions=conversions,
                reach=_count(raw, "reach", where, campaign, MAX_IMPRESSIONS) if raw.get("reach") is not None else 0,
                frequency=frequency,
            )
        )
    return check_rows(out, since=since, until=until, campaign=campaign)


def check_rows(
    rows: Iterable[InsightRow], *, since: date | None = None, until: date | None = None, campaign: str | None = None
) -> list[InsightRow]:
    """Check connector rows; exact repeats of a row collapse to one, anything else wrong raises."""
    seen: dict[tuple[str, date], InsightRow] = {}
    for i, r in enumerate(rows):
        where = f"insights row {i}"
        if not isinstance(r, InsightRow):
            raise InvalidPayload(f"expected an InsightRow, got {type(r).__name__}", campaign, where)
        if not isinstance(r.ad_id, str) or not AD_ID.match(r.ad_id):
            raise InvalidPayload(f"ad_id: expected an id, got {r.ad_id!r}", campaign, where)
        if not isinstance(r.day, date):
            raise InvalidPayload(f"day: expected a date, got {r.day!r}", campaign, where)
        where = f"insights row {i} (ad {r.ad_id}, {r.day})"
        for key, limit in (
            ("impressions", MAX_IMPRESSIONS), ("clicks", MAX_IMPRESSIONS), ("spend_minor", MAX_SPEND_MINOR),
            ("conversions", MAX_IMPRESSIONS), ("reach", MAX_IMPRESSIONS),
        ):  # fmt: skip
            value = getattr(r, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidPayload(f"{key}: expected a whole number, got {value!r}", campaign, where)
            if value < 0:
                raise InvalidPayload(f"{key}: negative ({value})", campaign, where)
            if value > limit:
                raise InvalidPayload(f"{key}: absurd value {value} (more than {limit})", campaign, where)
        if r.clicks > r.impressions:
            raise InvalidPayload(f"clicks ({r.clicks}) exceed impressions ({r.impressions})", campaign, where)
        if (
            not isinstance(r.frequency, int | float)
            or not math.isfinite(r.frequency)
            or not 0 <= r.frequency <= MAX_FREQUENCY
        ):
            raise InvalidPayload(f"frequency: expected 0..{MAX_FREQUENCY:g}, got {r.frequency!r}", campaign, where)
        if (since is not None and r.day < since) or (until is not None and r.day > until):
            raise InvalidPayload(f"day outside the window asked for ({since}..{until})", campaign, where)
        previous = seen.get((r.ad_id, r.day))
        if previous is not None and previous != r:
            raise InvalidPayload("the same ad and day reported twice with different numbers", campaign, where)
        seen[(r.ad_id, r.day)] = r
    return sorted(seen.values(), key=lambda r: (r.day, r.ad_id))
