"""ISO 4217 currency codes and their minor units (how many decimals one unit of the currency has).

Catalogs, budgets and provisioned-capacity files are checked against this list, so a typo such
as `USX` or `EURO` is an error instead of a new currency; PTU allocations are rounded to the minor
unit of their currency (cents for USD and EUR, whole yen for JPY, thousandths of a dinar for KWD).

Source: ISO 4217 list one (active codes), as published by SIX (the maintenance agency); the
fund codes and precious metals (X..) are left out except the CFA/CFP francs, the special drawing
right being no invoicing currency.
"""

from __future__ import annotations

from decimal import Decimal

from pipeline.domain.errors import UserError

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK "
    "PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMALS.split(), 2),
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
    **dict.fromkeys(_FOUR_DECIMALS.split(), 4),
}


class UnknownCurrency(UserError):
    pass


def is_currency(code: str) -> bool:
    return code in MINOR_UNITS


def minor_unit(code: str) -> Decimal:
    """The smallest amount of the currency: Decimal('0.01') for USD, Decimal('1') for JPY."""
    try:
        return Decimal(1).scaleb(-MINOR_UNITS[code])
    except KeyError:
        raise UnknownCurrency(f"currency {code!r} is not an ISO 4217 code such as USD or EUR") from None
