"""Amounts of money as an admin writes them ("25.00" USD), read into integer micro-dollars: the
admin API's bodies and the console's forms read them alike."""

from __future__ import annotations

from turnout.domain.errors import InvalidRequest
from turnout.domain.pricing import Micros, decimal_price

MAX_USD = 10**12  # a trillion dollars: more is a typo, and would not fit the ledger's integers


def usd(value: str, param: str, *, zero: bool = False) -> Micros:
    """An amount of USD as written ("25.00") in micro-dollars; more than 0 unless `zero`."""
    try:
        amount = decimal_price(value) * 1_000_000
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be an amount of USD such as \"25.00\" (at most {MAX_USD}).", param=param
        ) from None
    if amount > MAX_USD * 1_000_000:
        raise InvalidRequest(f"'{param}' must be at most {MAX_USD} USD.", param=param)
    if amount != amount.to_integral_value():
        raise InvalidRequest(f"'{param}' has more than six decimals (a micro-dollar).", param=param)
    if amount < 0 or (amount == 0 and not zero):
        raise InvalidRequest(f"'{param}' must be more than 0 USD.", param=param)
    return int(amount)
