"""Currencies: which codes exist and how many decimals their minor unit has.

The loop keeps money as integers in each campaign's currency's ISO 4217 minor
unit (cents for USD, yen for JPY, fils for KWD).  A connector converts between
that and what its API uses (Graph budgets in the account's "offset" unit,
Google Ads micros) at its boundary.
"""

from __future__ import annotations

from policies.errors import PlatformError

# ISO 4217 codes in use.
_ISO_4217 = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR
LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB
TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
"""
CURRENCIES = frozenset(_ISO_4217.split())
# ISO 4217 minor units that are not 2 (Google Ads bills in these).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def minor_digits(currency: str) -> int:
    """Decimals of ``currency``'s minor unit (JPY 0, USD 2, KWD 3); ValueError for a code that is not ISO 4217."""
    code = currency.upper() if isinstance(currency, str) else ""
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {currency!r} (expected an ISO 4217 code such as USD, EUR, JPY)")
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def check_billing(account: str, billed: str, campaign: str, configured: str) -> None:
    """Refuse a campaign whose caps are in another currency than its ad account bills in ("" = not checked)."""
    if configured and configured.upper() != billed.upper():
        raise PlatformError(
            f"{account} bills in {billed}, but campaign {campaign!r} caps are in {configured}: "
            f'set its currency = "{billed}" (and its caps in that currency)',
            campaign=campaign,
        )
