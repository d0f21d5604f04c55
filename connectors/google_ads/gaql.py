"""GAQL literals, resource names and money: every value that goes into a query is escaped here.

Names and keys come from the loop (and ad names from the account): they are
hostile until escaped.  GAQL string literals are single-quoted with ``\\`` as
the escape character; in a ``LIKE`` pattern the wildcards ``%`` and ``_`` and
the brackets are literal only when bracketed (``[_]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from connectors.ads.currencies import minor_digits

_DIGITS = re.compile(r"^[0-9]{1,20}$")
_AD_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")

MICROS = 1_000_000


def string(value: str) -> str:
    """A GAQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def like_prefix(prefix: str) -> str:
    """A GAQL ``LIKE`` literal matching every string that starts with ``prefix``."""
    escaped = re.sub(r"([\[\]%_])", r"[\1]", str(prefix))
    return string(escaped + "%")


def ident(value: str | int, what: str = "id") -> int:
    """A numeric id, checked (ids are interpolated into queries and resource names)."""
    text = str(value)
    if not _DIGITS.match(text):
        raise ValueError(f"{what}: expected digits, got {text!r}")
    return int(text)


def ids(values: Iterable[str | int], what: str = "id") -> str:
    """``(1, 2, 3)`` for an ``IN`` condition."""
    return "(" + ", ".join(str(ident(v, what)) for v in values) + ")"


def day(d: date) -> str:
    return string(d.isoformat())


def ad_key(ad_group_id: int | str, ad_id: int | str) -> str:
    """The loop's id of an ad group ad: ``<ad group id>-<ad id>``.

    Google names it ``adGroupAds/<ad group id>~<ad id>``; the loop's ids travel through
    names, keys and file paths that take no ``~``, so a dash joins the two numbers.
    """
    return f"{ad_group_id}-{ad_id}"


def split_ad_id(ad_id: str) -> tuple[int, int]:
    """The loop's ad id ``<ad group id>-<ad id>`` as two numbers."""
    m = _AD_ID.match(str(ad_id))
    if not m:
        raise ValueError(f"ad id: expected '<ad group id>-<ad id>', got {ad_id!r}")
    return int(m.group(1)), int(m.group(2))


def ad_group_ad_name(customer_id: str, ad_id: str) -> str:
    group, ad = split_ad_id(ad_id)
    return f"customers/{ident(customer_id, 'customer id')}/adGroupAds/{group}~{ad}"


def resource(customer_id: str, collection: str, rid: int | str) -> str:
    return f"customers/{ident(customer_id, 'customer id')}/{collection}/{rid}"


def last_id(resource_name: str) -> str:
    """The id at the end of a resource name (``customers/1/campaigns/5`` -> ``5``; ``.../adGroupAds/4~5`` -> ``4-5``)."""
    return resource_name.rsplit("/", 1)[-1].replace("~", "-")


def currency_exponent(currency: str) -> int:
    """The ISO 4217 minor unit's decimals (Google Ads bills in them); an unknown code counts as 2."""
    try:
        return minor_digits(currency)
    except ValueError:
        return 2


def micros_to_minor(micros: int, exponent: int) -> int:
    """Micros (millionths of a currency unit) to integer minor units, half up."""
    unit = 10 ** (6 - exponent)
    q, r = divmod(int(micros), unit)
    return q + (1 if 2 * r >= unit else 0)


def minor_to_micros(minor: int, exponent: int) -> int:
    return int(minor) * 10 ** (6 - exponent)


def whole(value: float) -> int:
    """A fractional count (Google attributes fractions of conversions) to an integer, half up."""
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))
