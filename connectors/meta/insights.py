"""Daily per-ad insights: sync cursor paging for short ranges, async report runs for long ones.

Graph returns metrics as strings and ``spend`` in major currency units
(``"2.50"``); :func:`parse_row` turns a row into an ``InsightRow`` with
integer counts and spend in integer minor units by the account currency's
exponent, and ``conversions`` = the ``actions`` entry of the configured
action type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun

from connectors.ads.base import InsightRow
from policies.errors import TransientError

FIELDS = ("ad_id", "impressions", "clicks", "spend", "reach", "frequency", "actions", "date_start", "date_stop")

# Currencies Meta bills without minor units (its "offset 1" currencies); all others use 2.
ZERO_DECIMAL = frozenset({"CLP", "COP", "CRC", "HUF", "IDR", "ISK", "JPY", "KRW", "PYG", "TWD", "VND"})

DONE = "Job Completed"
FAILED = ("Job Failed", "Job Skipped")


def currency_exponent(currency: str) -> int:
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def to_minor(amount: str | float | int | None, exponent: int) -> int:
    """A major-unit amount as Graph sends it (``"2.50"``) to integer minor units, half up."""
    if amount in (None, ""):
        return 0
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"spend: expected a decimal string, got {amount!r}") from None
    return int((value * (10**exponent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _int(value: Any) -> int:
    if value in (None, ""):
        return 0
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_row(raw: Mapping[str, Any], exponent: int, conversion_action: str) -> InsightRow:
    """One Graph insights row (strings) as an ``InsightRow`` (numbers, minor units)."""
    conversions = 0
    for action in raw.get("actions") or ():
        if action.get("action_type") == conversion_action:
            conversions += _int(action.get("value"))
    return InsightRow(
        ad_id=str(raw["ad_id"]),
        day=date.fromisoformat(str(raw["date_start"])),
        impressions=_int(raw.get("impressions")),
        clicks=_int(raw.get("clicks")),
        spend_minor=to_minor(raw.get("spend"), exponent),
        conversions=conversions,
        reach=_int(raw.get("reach")),
        frequency=float(raw.get("frequency") or 0.0),
    )


def insights_params(since: date, until: date, campaign_ids: Iterable[str], page_size: int) -> dict[str, Any]:
    return {
        "level": "ad",
        "time_increment": 1,
        "time_range": {"since": since.isoformat(), "until": until.isoformat()},
        "filtering": [{"field": "campaign.id", "operator": "IN", "value": sorted(set(campaign_ids))}],
        "limit": page_size,
    }


def _export(obj: Any) -> dict[str, Any]:
    return obj.export_all_data() if hasattr(obj, "export_all_data") else dict(obj)


def fetch_sync(account: AdAccount, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Rows of a synchronous insights read, following ``after`` cursors page by page."""
    for row in account.get_insights(fields=list(FIELDS), params=dict(params)):
        yield _export(row)


def fetch_async(
    account: AdAccount,
    params: dict[str, Any],
    *,
    page_size: int,
    poll_interval: float,
    poll_timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[dict[str, Any]]:
    """Rows of an async report run: start it, poll until done, then page its result."""
    # get_insights_async mutates the params it is given: pass a copy.
    run: AdReportRun = account.get_insights(fields=list(FIELDS), params=dict(params), is_async=True)
    deadline = clock() + poll_timeout
    while True:
        run = run.api_get(fields=["async_status", "async_percent_completion", "error_code", "error_message"])
        status = run.get("async_status")
        if status == DONE and int(run.get("async_percent_completion") or 0) == 100:
            break
        if status in FAILED:
            raise TransientError(
                f"Meta insights report run {run.get('id')} ended with {status!r}: "
                f"{run.get('error_message') or 'no reason given'} (code {run.get('error_code')})"
            )
        if clock() >= deadline:
            raise TransientError(f"Meta insights report run {run.get('id')} not done after {poll_timeout:.0f}s")
        sleep(poll_interval)
    for row in run.get_result(params={"limit": page_size}):
        yield _export(row)
