"""Decimal money: quanta per asset, rounding against the borrower, people's formats.

Every Decimal here is built from an integer scaled by a quantum (or from a string); no float is
used, and the formats are checked on amounts a float could not carry.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, getcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loanflow.money import (
    ASSETS,
    QUANTUM,
    USD,
    WIDE,
    fmt_ratio,
    fmt_units,
    fmt_usd,
    is_whole_units,
    quantum,
    units_down,
    units_up,
    usd_down,
    usd_up,
    wide,
)

D = Decimal
PROPERTY = settings(max_examples=250, deadline=None)


def scaled(max_digits: int, max_places: int, signed: bool = True) -> st.SearchStrategy[Decimal]:
    """Decimals n x 10^-places with up to `max_digits` digits in n."""
    lo = -(10**max_digits - 1) if signed else 0
    return st.builds(
        lambda n, places: D(n).scaleb(-places),
        st.integers(lo, 10**max_digits - 1),
        st.integers(0, max_places),
    )


# --- constants ----------------------------------------------------------------------------------


def test_assets_and_quanta():
    assert ASSETS == ("BTC", "ETH")
    assert USD == D("0.01")
    assert QUANTUM == {"BTC": D("1e-8"), "ETH": D("1e-18")}
    assert quantum("BTC") == D("0.00000001")
    assert quantum("ETH") == D("0.000000000000000001")
    assert WIDE.prec >= 60


def test_unknown_asset_is_named_in_the_error():
    with pytest.raises(ValueError, match="'DOGE'.*BTC, ETH"):
        quantum("DOGE")
    with pytest.raises(ValueError, match="DOGE"):
        units_up("DOGE", D("1"))
    with pytest.raises(ValueError, match="btc"):
        units_down("btc", D("1"))  # asset names are case-sensitive: BTC or ETH


# --- dollars ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "up", "down"),
    [
        ("1.001", "1.01", "1.00"),
        ("1.009", "1.01", "1.00"),
        ("1.00", "1.00", "1.00"),
        ("0.000000001", "0.01", "0.00"),
        ("-1.001", "-1.00", "-1.01"),  # up means toward +infinity, down toward -infinity
        ("12345678901234567890.125", "12345678901234567890.13", "12345678901234567890.12"),
        ("1E+3", "1000.00", "1000.00"),
    ],
)
def test_usd_rounding_examples(amount: str, up: str, down: str):
    assert str(usd_up(D(amount))) == up
    assert str(usd_down(D(amount))) == down


@PROPERTY
@given(x=scaled(30, 20))
def test_usd_up_and_down_bracket_the_amount(x: Decimal):
    up, down = usd_up(x), usd_down(x)
    assert up.as_tuple().exponent == -2 and down.as_tuple().exponent == -2
    assert Fraction(down) <= Fraction(x) <= Fraction(up)
    assert up - down in (D(0), USD)
    assert (up == down) == ((Fraction(x) * 100).denominator == 1)
    assert Fraction(up) == Fraction(math.ceil(Fraction(x) * 100), 100)
    assert Fraction(down) == Fraction(math.floor(Fraction(x) * 100), 100)


# --- collateral units ---------------------------------------------------------------------------


def test_units_rounding_examples():
    assert units_up("BTC", D("0.123456781")) == D("0.12345679")
    assert units_down("BTC", D("0.123456789")) == D("0.12345678")
    assert units_up("BTC", D("0.12345678")) == D("0.12345678")
    assert units_up("ETH", D("1.0000000000000000001")) == D("1.000000000000000001")
    assert units_down("ETH", D("1.9999999999999999999")) == D("1.999999999999999999")
    # a 10,000 ETH amount to the wei is 23 significant digits; with 60 digits nothing is lost
    big = D("9999.999999999999999999")
    assert units_up("ETH", big) == big and units_down("ETH", big) == big
    assert units_up("BTC", big) == D("10000.00000000")
    assert units_down("BTC", big) == D("9999.99999999")


@PROPERTY
@given(asset=st.sampled_from(ASSETS), x=scaled(30, 25, signed=False))
def test_units_up_and_down_bracket_the_amount(asset: str, x: Decimal):
    q = Fraction(QUANTUM[asset])
    up, down = units_up(asset, x), units_down(asset, x)
    assert Fraction(down) <= Fraction(x) <= Fraction(up)
    assert Fraction(up) == math.ceil(Fraction(x) / q) * q
    assert Fraction(down) == math.floor(Fraction(x) / q) * q
    assert is_whole_units(asset, up) and is_whole_units(asset, down)
    assert is_whole_units(asset, x) == (up == down == x)


def test_is_whole_units():
    assert is_whole_units("BTC", D("0.00000001"))
    assert not is_whole_units("BTC", D("0.000000001"))
    assert is_whole_units("ETH", D("0.000000000000000001"))
    assert not is_whole_units("ETH", D("0.0000000000000000001"))
    assert is_whole_units("ETH", D("0.123456789"))
    assert is_whole_units("BTC", D("21000000"))


# --- wide arithmetic ----------------------------------------------------------------------------


@PROPERTY
@given(
    wei=st.integers(10**14, 10**22),  # 0.0001 - 10,000 ETH to the wei
    cents=st.integers(50_00, 20_000_00),  # 50 - 20,000 USD
    sub_cent=st.integers(0, 10**8 - 1),  # prices with up to 10 decimals
)
def test_eth_amounts_times_prices_keep_every_digit(wei: int, cents: int, sub_cent: int):
    amount = D(wei).scaleb(-18)
    price = D(cents * 10**8 + sub_cent).scaleb(-10)
    with wide():
        product = amount * price
    assert Fraction(product) == Fraction(wei * (cents * 10**8 + sub_cent), 10**28)
    assert usd_down(product) == D((wei * (cents * 10**8 + sub_cent)) // 10**26).scaleb(-2)


def test_default_context_would_lose_digits_which_is_why_wide_exists():
    amount, price = D("9999.999999999999999999"), D("19999.9999999999")
    exact = Fraction(amount) * Fraction(price)
    assert Fraction(amount * price) != exact  # Python's default 28 digits
    with wide():
        assert Fraction(amount * price) == exact
    assert getcontext().prec == 28  # wide() leaves the caller's context alone


# --- people's formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("1234567.89", "$1,234,567.89"),
        ("1234567.899", "$1,234,567.89"),
        ("0", "$0.00"),
        ("0.005", "$0.00"),
        ("5", "$5.00"),
        ("999.999", "$999.99"),
        ("1000000", "$1,000,000.00"),
        ("1E+3", "$1,000.00"),
        ("-1234.5", "-$1,234.50"),
        ("-0.001", "-$0.00"),
        # beyond what a float can carry: proves the format never goes through float
        ("12345678901234567.89", "$12,345,678,901,234,567.89"),
    ],
)
def test_fmt_usd(amount: str, text: str):
    assert fmt_usd(D(amount)) == text


@PROPERTY
@given(x=scaled(20, 12, signed=False))
def test_fmt_usd_round_trips_to_the_cent(x: Decimal):
    text = fmt_usd(x)
    assert re.fullmatch(r"\$\d{1,3}(,\d{3})*\.\d{2}", text), text
    assert D(text[1:].replace(",", "")) == usd_down(x)


@pytest.mark.parametrize(
    ("asset", "amount", "places", "text"),
    [
        ("BTC", "0.12345678", None, "0.12345678 BTC"),
        ("BTC", "0.123456781", None, "0.12345679 BTC"),  # what the borrower must add: up
        ("BTC", "1.5", None, "1.5 BTC"),
        ("BTC", "2", None, "2 BTC"),
        ("BTC", "2.00000000", None, "2 BTC"),
        ("BTC", "0", None, "0 BTC"),
        ("BTC", "1234.5", None, "1,234.5 BTC"),
        ("ETH", "0.000000000000000001", None, "0.00000001 ETH"),
        ("ETH", "1.123456789012345678", None, "1.12345679 ETH"),
        ("ETH", "1.123456789012345678", 18, "1.123456789012345678 ETH"),
        ("ETH", "12345678901234.5", 2, "12,345,678,901,234.5 ETH"),
        ("BTC", "0.1", 0, "1 BTC"),
    ],
)
def test_fmt_units(asset: str, amount: str, places: int | None, text: str):
    assert fmt_units(asset, D(amount), places) == text


@PROPERTY
@given(asset=st.sampled_from(ASSETS), units=st.integers(0, 10**22))
def test_fmt_units_round_trips_whole_satoshi_amounts(asset: str, units: int):
    amount = D(units).scaleb(-8)  # at most 8 places: shown exactly
    text = fmt_units(asset, amount)
    number, shown_asset = text.split(" ")
    assert shown_asset == asset
    assert re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d*[1-9])?", number), text
    assert D(number.replace(",", "")) == amount


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        ("0.70125", "70.13%"),
        ("0.7", "70.00%"),
        ("0.5", "50.00%"),
        ("0.69999", "70.00%"),  # rounded up: never shown as safer than it is
        ("0.123456789012345678901234567890", "12.35%"),
        ("1.234", "123.40%"),
        ("12.5", "1,250.00%"),
        ("0", "0.00%"),
    ],
)
def test_fmt_ratio(ratio: str, text: str):
    assert fmt_ratio(D(ratio)) == text


def test_fmt_ratio_without_a_ratio():
    assert fmt_ratio(None) == "n/a"


def test_fmt_ratio_of_an_infinite_ltv_is_printable():
    assert isinstance(fmt_ratio(D("Infinity")), str)


@PROPERTY
@given(bps=st.integers(0, 10**6), extra=st.integers(0, 10**20 - 1))
def test_fmt_ratio_rounds_up_to_a_hundredth_of_a_percent(bps: int, extra: int):
    ratio = D(bps).scaleb(-4) + D(extra).scaleb(-24)
    text = fmt_ratio(ratio)
    assert text.endswith("%")
    shown = Fraction(D(text[:-1].replace(",", ""))) / 100
    assert shown >= Fraction(ratio)
    assert shown - Fraction(ratio) < Fraction(1, 10**4)
    assert (shown == Fraction(ratio)) == (extra == 0)


@pytest.mark.parametrize("asset,price", [("BTC", "1e309"), ("BTC", "0"), ("BTC", "-1"),
                                         ("BTC", "0.5"), ("BTC", "1e9"), ("ETH", "1e8"),
                                         ("DOGE", "1")])
def test_check_price_refuses_what_no_market_quotes(asset: str, price: str) -> None:
    from loanflow.money import check_price

    with pytest.raises(ValueError):
        check_price(asset, Decimal(price))


def test_check_price_takes_every_real_price() -> None:
    from loanflow.money import check_price

    for asset, price in (("BTC", "15742.31"), ("BTC", "126000"), ("ETH", "0.43"), ("ETH", "4878")):
        assert check_price(asset, Decimal(price)) == Decimal(price)
