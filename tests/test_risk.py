"""Risk math: LTV, trigger prices, cure amounts, liquidation sizing, proceeds and interest.

Every expectation is checked against exact rational arithmetic (`fractions.Fraction`) or against
the module's own rounding rules applied to the outcome; no float is used anywhere. Hypothesis
draws realistic loans: BTC 1,000-200,000 USD, ETH 50-20,000 USD, 0.0001-10,000 units of
collateral, debts of 100-100,000,000 USD, every Decimal built from an integer and a quantum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from loanflow.money import QUANTUM, USD, quantum, units_up, usd_up, wide
from loanflow.risk import (
    Allocation,
    Balances,
    SaleProceeds,
    SaleSize,
    after_payment,
    allocate_payment,
    collateral_value,
    count_collateral,
    cure_repay,
    cure_top_up,
    daily_interest,
    days_between,
    full_liquidation_quantity,
    liquidation_quantity,
    ltv,
    ltv_at_or_above,
    sale_proceeds,
    trigger_price,
)

D = Decimal
PROPERTY = settings(max_examples=250, deadline=None)

# --- exact oracles ------------------------------------------------------------------------------


def floor_cents(x: Fraction) -> Decimal:
    return D(math.floor(x * 100)).scaleb(-2)


def ceil_cents(x: Fraction) -> Decimal:
    return D(math.ceil(x * 100)).scaleb(-2)


def F(x: Decimal | int) -> Fraction:
    return Fraction(x)


def exact_ltv(debt: Decimal, amount: Decimal, price: Decimal) -> Fraction:
    """DESIGN.md: debt rounded up to the cent over collateral value rounded down to the cent."""
    value = floor_cents(F(amount) * F(price))
    assert value > 0
    return F(ceil_cents(F(debt))) / F(value)


def reaches_target(
    debt: Decimal, amount: Decimal, price: Decimal, target: Decimal, q: Decimal,
    fill: Decimal, fee: Decimal,
) -> bool:
    """Sell q at `fill`, take the fee via sale_proceeds, apply the net to the debt; is LTV at
    `price` then <= target? (No debt left counts as reached.)"""
    net = sale_proceeds(q, fill, fee).net
    after = ltv(debt - net, amount - q, price)
    return after is None or after <= target


# --- strategies ---------------------------------------------------------------------------------

PLACES = {"BTC": 8, "ETH": 18}
PRICE_CENTS = {"BTC": (1_000_00, 200_000_00), "ETH": (50_00, 20_000_00)}


def spread_integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi] spread over every order of magnitude (log-uniform by decade)."""

    @st.composite
    def draw_one(draw: st.DrawFn) -> int:
        digits = draw(st.integers(len(str(lo)), len(str(hi))))
        return draw(st.integers(max(lo, 10 ** (digits - 1)), min(hi, 10**digits - 1)))

    return draw_one()


assets = st.sampled_from(["BTC", "ETH"])


def prices(asset: str) -> st.SearchStrategy[Decimal]:
    lo, hi = PRICE_CENTS[asset]
    return spread_integers(lo, hi).map(lambda n: D(n).scaleb(-2))


def amounts(asset: str) -> st.SearchStrategy[Decimal]:
    p = PLACES[asset]
    return spread_integers(10 ** (p - 4), 10 ** (p + 4)).map(lambda n: D(n).scaleb(-p))


debts = spread_integers(100_00, 100_000_000_00).map(lambda n: D(n).scaleb(-2))
# Debts as the loan carries them: whole cents plus sub-cent accrued interest (1e-10 USD steps).
accrued_debts = st.tuples(debts, st.integers(0, 10**8 - 1)).map(
    lambda t: t[0] + D(t[1]).scaleb(-10)
)


def ratio(lo_bps: int, hi_bps: int) -> st.SearchStrategy[Decimal]:
    return st.integers(lo_bps, hi_bps).map(lambda n: D(n).scaleb(-4))


@dataclass(frozen=True)
class Loan:
    asset: str
    debt: Decimal
    amount: Decimal
    price: Decimal

    @property
    def q(self) -> Decimal:
        return QUANTUM[self.asset]


def in_range(asset: str, amount: Decimal) -> bool:
    return D("0.0001") <= amount <= D(10_000) and amount == units_up(asset, amount)


@st.composite
def loans(draw: st.DrawFn, ltv_bps: tuple[int, int] = (2000, 15000), debt=debts) -> Loan:
    """A loan whose LTV is near a drawn level: debt and price drawn, collateral derived."""
    asset = draw(assets)
    price = draw(prices(asset))
    debt_usd = draw(debt)
    level = draw(ratio(*ltv_bps))
    with wide():
        amount = units_up(asset, debt_usd / (level * price))
    # Jitter the collateral by a few smallest units so boundaries are not always hit exactly.
    amount += draw(st.integers(-3, 3)) * QUANTUM[asset]
    assume(in_range(asset, amount))
    assume(collateral_value(amount, price) > 0)
    return Loan(asset, debt_usd, amount, price)


# --- collateral value and LTV -------------------------------------------------------------------


def test_collateral_value_rounds_down_to_the_cent():
    assert collateral_value(D("0.12345678"), D("20000.00")) == D("2469.13")  # 2469.1356
    assert collateral_value(D("1"), D("100.009")) == D("100.00")
    assert collateral_value(D("2"), D("50.005")) == D("100.01")
    assert collateral_value(D("0"), D("30000")) == D("0.00")


def test_collateral_value_keeps_every_digit_of_an_eth_amount():
    # 0.999999999999999999 ETH x 100.0000000000000001 = 99.999...99 (34 nines): worth 99.99.
    # In Python's default 28-digit context the product rounds to 100.00 and overstates it.
    amount = D("0.999999999999999999")
    price = D("100.0000000000000001")
    assert F(amount) * F(price) < 100
    assert collateral_value(amount, price) == D("99.99")
    with wide():
        expected = D(50) / D("99.99")
    assert ltv(D("49.995"), amount, price) == expected


@PROPERTY
@given(data=st.data())
def test_collateral_value_is_the_exact_product_rounded_down(data: st.DataObject):
    asset = data.draw(assets)
    amount = data.draw(amounts(asset))
    # prices with up to 8 decimals too (medians of quotes need not be whole cents)
    price = data.draw(prices(asset)) + D(data.draw(st.integers(0, 999_999))).scaleb(-8)
    value = collateral_value(amount, price)
    assert value == floor_cents(F(amount) * F(price))
    assert value <= F(amount) * F(price) < F(value) + F(USD)


def test_ltv_examples():
    # 35,000 / (1 BTC x 50,000) = 70%
    assert ltv(D("35000"), D("1"), D("50000")) == D("0.7")
    # debt rounded up (100.001 -> 100.01), value rounded down (0.5 x 200.019 = 100.0095 -> 100.00)
    assert ltv(D("100.001"), D("0.5"), D("200.019")) == D("100.01") / D("100.00")
    assert ltv(D("0"), D("1"), D("100")) == 0


def test_ltv_without_collateral_value():
    assert ltv(D("100"), D("0"), D("50000")) == D("Infinity")
    # worth less than a cent counts as worth nothing
    assert ltv(D("100"), D("0.00000001"), D("100")) == D("Infinity")
    assert ltv(D("0"), D("0"), D("50000")) is None
    assert ltv_at_or_above(D("100"), D("0"), D("50000"), D("0.8"))
    assert not ltv_at_or_above(D("0"), D("0"), D("50000"), D("0.8"))


@PROPERTY
@given(loan=loans(debt=accrued_debts))
def test_ltv_is_debt_rounded_up_over_value_rounded_down(loan: Loan):
    result = ltv(loan.debt, loan.amount, loan.price)
    assert isinstance(result, Decimal)
    expected = exact_ltv(loan.debt, loan.amount, loan.price)
    # computed to 60 significant digits: agrees with the exact ratio far beyond any threshold
    assert abs(F(result) - expected) <= expected * Fraction(1, 10**58)
    # rounding is against the borrower: never below the unrounded ratio
    assert expected >= F(loan.debt) / (F(loan.amount) * F(loan.price))


@PROPERTY
@given(loan=loans(), threshold=ratio(3000, 9500))
def test_ltv_at_or_above_agrees_with_ltv(loan: Loan, threshold: Decimal):
    expected = exact_ltv(loan.debt, loan.amount, loan.price) >= F(threshold)
    assert ltv_at_or_above(loan.debt, loan.amount, loan.price, threshold) is expected


@PROPERTY
@given(loan=loans(), up_cents=st.integers(1, 10**6))
def test_ltv_never_rises_when_the_price_rises(loan: Loan, up_cents: int):
    higher = loan.price + D(up_cents).scaleb(-2)
    assert ltv(loan.debt, loan.amount, higher) <= ltv(loan.debt, loan.amount, loan.price)


# --- trigger prices -----------------------------------------------------------------------------


def test_trigger_price_examples():
    # 35,000 over 1 BTC at 70%: exactly 50,000.00
    assert trigger_price(D("35000"), D("1"), D("0.70")) == D("50000.00")
    # 70.01 / 0.7 = 100.0143: at 100.01 LTV = 0.70003 (reached), at 100.02 it is 0.69996
    assert trigger_price(D("70.01"), D("1"), D("0.70")) == D("100.01")
    # 0.1 BTC: the value is rounded down to the cent, so LTV stays >= 70% up to 14,285.79
    assert trigger_price(D("1000"), D("0.1"), D("0.70")) == D("14285.79")
    assert ltv(D("1000"), D("0.1"), D("14285.79")) >= D("0.70")
    assert ltv(D("1000"), D("0.1"), D("14285.80")) < D("0.70")


def test_trigger_price_none_without_debt_or_collateral():
    assert trigger_price(D("0"), D("1"), D("0.7")) is None
    assert trigger_price(D("100"), D("0"), D("0.7")) is None


@PROPERTY
@given(loan=loans(debt=accrued_debts), threshold=ratio(3000, 9500))
@example(loan=Loan("BTC", D("70.01"), D("1"), D("100")), threshold=D("0.7"))
@example(loan=Loan("BTC", D("1000"), D("0.1"), D("14000")), threshold=D("0.7"))
def test_trigger_price_is_the_exact_boundary(loan: Loan, threshold: Decimal):
    trigger = trigger_price(loan.debt, loan.amount, threshold)
    assert trigger is not None
    assert trigger == trigger.quantize(USD), "trigger prices are whole cents"
    # at the trigger price LTV has reached the threshold ...
    assert ltv_at_or_above(loan.debt, loan.amount, trigger, threshold)
    # ... and one cent above it, it has not
    above = ltv(loan.debt, loan.amount, trigger + USD)
    assert above is not None and above < threshold
    assert exact_ltv(loan.debt, loan.amount, trigger + USD) < F(threshold)


@PROPERTY
@given(loan=loans(ltv_bps=(3000, 6000)))
def test_trigger_prices_are_ordered_like_the_thresholds(loan: Loan):
    warn, call, liq = (
        trigger_price(loan.debt, loan.amount, D(t)) for t in ("0.65", "0.70", "0.80")
    )
    assert warn >= call >= liq
    assert ltv(loan.debt, loan.amount, loan.price) < D("0.65") or loan.price <= warn


# --- cures ----------------------------------------------------------------------------------------


def test_cure_top_up_example():
    # 40,000 debt on 1 BTC at 50,000 = 80%. 60% needs 66,666.67 of value: 1.33333340 BTC.
    top_up = cure_top_up("BTC", D("40000"), D("1"), D("50000"), D("0.60"))
    assert top_up == D("0.33333340")
    assert ltv(D("40000"), 1 + top_up, D("50000")) <= D("0.60")
    assert ltv(D("40000"), 1 + top_up - D("1e-8"), D("50000")) > D("0.60")


def test_cure_amounts_are_zero_when_already_at_target():
    assert cure_top_up("BTC", D("30000"), D("1"), D("50000"), D("0.60")) == 0
    assert cure_repay(D("30000"), D("1"), D("50000"), D("0.60")) == 0
    assert cure_top_up("ETH", D("1000"), D("10"), D("1000"), D("0.60")) == 0
    assert cure_repay(D("1000"), D("10"), D("1000"), D("0.60")) == 0


@PROPERTY
@given(loan=loans(debt=accrued_debts), target=ratio(4000, 7000))
def test_cure_top_up_reaches_the_target_and_is_minimal(loan: Loan, target: Decimal):
    top_up = cure_top_up(loan.asset, loan.debt, loan.amount, loan.price, target)
    assert top_up >= 0
    assert top_up == units_up(loan.asset, top_up), "whole smallest units"
    after = ltv(loan.debt, loan.amount + top_up, loan.price)
    assert after <= target
    assert exact_ltv(loan.debt, loan.amount + top_up, loan.price) <= F(target)
    if top_up > 0:
        # one smallest unit less does not cure
        short = ltv(loan.debt, loan.amount + top_up - loan.q, loan.price)
        assert short > target
    else:
        assert ltv(loan.debt, loan.amount, loan.price) <= target


def test_cure_top_up_in_eth_is_exact_to_the_wei():
    top_up = cure_top_up("ETH", D("20000"), D("10"), D("3000"), D("0.60"))
    # needed value 33,333.34 / 3,000 = 11.111113333... ETH, rounded up to the wei
    assert top_up == D("1.111113333333333334")
    assert ltv(D("20000"), D("10") + top_up, D("3000")) <= D("0.60")
    assert ltv(D("20000"), D("10") + top_up - D("1e-18"), D("3000")) > D("0.60")


def test_cure_repay_example():
    # 40,000 on 50,000 of value: 60% allows 30,000, so repay 10,000.00
    assert cure_repay(D("40000"), D("1"), D("50000"), D("0.60")) == D("10000.00")
    # sub-cent debt is rounded up before it is compared: 100.001 -> 100.01; 60% of 150.00 = 90
    assert cure_repay(D("100.001"), D("1"), D("150"), D("0.60")) == D("10.01")


@PROPERTY
@given(loan=loans(debt=accrued_debts), target=ratio(4000, 7000))
def test_cure_repay_reaches_the_target_and_is_minimal(loan: Loan, target: Decimal):
    repay = cure_repay(loan.debt, loan.amount, loan.price, target)
    assert repay >= 0
    assert repay == repay.quantize(USD), "whole cents"
    assert repay <= usd_up(loan.debt)
    after = ltv(loan.debt - repay, loan.amount, loan.price)
    assert after is not None and after <= target
    if repay > 0:
        # one cent less does not cure
        short = ltv(loan.debt - repay + USD, loan.amount, loan.price)
        assert short > target
    else:
        assert ltv(loan.debt, loan.amount, loan.price) <= target


# --- partial liquidation ------------------------------------------------------------------------


DEFAULT_TARGET, DEFAULT_FEE, DEFAULT_SLIPPAGE = D("0.50"), D("0.02"), D("0.01")


def test_liquidation_example_with_defaults():
    # 2 BTC at 30,000 (value 60,000) against 45,000: LTV 75%. Reach 50% with a 2% fee, sized
    # for a fill 1% below the price.
    debt, amount, price = D("45000"), D("2"), D("30000")
    size = liquidation_quantity("BTC", debt, amount, price, DEFAULT_TARGET, DEFAULT_FEE,
                                DEFAULT_SLIPPAGE)
    assert size == SaleSize(D("1.06337778"), False)
    fill = price * (1 - DEFAULT_SLIPPAGE)
    proceeds = sale_proceeds(size.quantity, fill, DEFAULT_FEE)
    assert proceeds == SaleProceeds(D("31582.32"), D("631.65"), D("30950.67"))
    assert ltv(debt - proceeds.net, amount - size.quantity, price) <= D("0.50")
    # the rounding-free formula (1.06337729 BTC) falls short by a cent once proceeds and the
    # collateral value are rounded; one satoshi less than the answer falls short too
    assert not reaches_target(debt, amount, price, DEFAULT_TARGET, D("1.06337729"), fill,
                              DEFAULT_FEE)
    assert not reaches_target(debt, amount, price, DEFAULT_TARGET, size.quantity - D("1e-8"),
                              fill, DEFAULT_FEE)


@st.composite
def liquidation_cases(draw: st.DrawFn):
    loan = draw(loans(ltv_bps=(3000, 13000), debt=accrued_debts))
    if draw(st.booleans()):
        target, fee, slippage = DEFAULT_TARGET, DEFAULT_FEE, DEFAULT_SLIPPAGE
    else:
        target = draw(ratio(3000, 6500))
        fee = draw(ratio(0, 500))
        slippage = draw(ratio(0, 500))
    return loan, target, fee, slippage


@PROPERTY
@given(case=liquidation_cases())
@example(case=(Loan("BTC", D("45000"), D("2"), D("30000")), DEFAULT_TARGET, DEFAULT_FEE,
               DEFAULT_SLIPPAGE))
@example(case=(Loan("BTC", D("60.01"), D("1.00017"), D("100")), D("0.60"), DEFAULT_FEE,
               DEFAULT_SLIPPAGE))
def test_partial_liquidation_reaches_the_target_and_sells_no_more_than_needed(case):
    loan, target, fee, slippage = case
    size = liquidation_quantity(loan.asset, loan.debt, loan.amount, loan.price, target, fee,
                                slippage)
    q = size.quantity
    assert 0 <= q <= loan.amount
    assert q == units_up(loan.asset, q), "whole smallest units"
    worst_fill = loan.price * (1 - slippage)
    before = ltv(loan.debt, loan.amount, loan.price)

    if before <= target:
        assert size == SaleSize(D(0), False), "nothing to sell at or below the target"
        return
    assert q > 0, "LTV above the target: something must be sold"

    if size.sells_everything:
        assert q == loan.amount
        # even one smallest unit short of everything would not reach the target
        assert not reaches_target(loan.debt, loan.amount, loan.price, target,
                                  loan.amount - loan.q, worst_fill, fee)
        return

    assert q < loan.amount
    # the target is reached even at the worst fill ...
    assert reaches_target(loan.debt, loan.amount, loan.price, target, q, worst_fill, fee)
    # ... and, a fortiori, at the reference price
    assert reaches_target(loan.debt, loan.amount, loan.price, target, q, loan.price, fee)
    # minimal: one smallest unit less does not reach it at the worst fill
    assert not reaches_target(loan.debt, loan.amount, loan.price, target, q - loan.q,
                              worst_fill, fee)
    # and against the rounding-free formula: no more than the cents of rounding (2 cents of
    # proceeds, target x 1 cent of value) plus one smallest unit above the continuous answer
    f, t, p = F(worst_fill), F(target), F(loan.price)
    per_unit = f * (1 - F(fee)) - t * p
    excess = F(usd_up(loan.debt)) - t * p * F(loan.amount)
    assert per_unit > 0
    assert F(q) >= excess / per_unit
    assert F(q) < (excess + Fraction(2, 100) + t / 100) / per_unit + F(loan.q)


@PROPERTY
@given(case=liquidation_cases())
def test_partial_liquidation_sells_everything_only_when_collateral_cannot_cover(case):
    loan, target, fee, slippage = case
    size = liquidation_quantity(loan.asset, loan.debt, loan.amount, loan.price, target, fee,
                                slippage)
    worst_fill = loan.price * (1 - slippage)
    reaches_with_all_but_one_unit = reaches_target(
        loan.debt, loan.amount, loan.price, target, loan.amount - loan.q, worst_fill, fee
    )
    if size.sells_everything:
        assert size.quantity == loan.amount
        assert not reaches_with_all_but_one_unit
    elif size.quantity > 0:
        assert size.quantity < loan.amount


def test_liquidation_sells_everything_when_the_fee_and_fill_cannot_reach_the_target():
    # 99% LTV: each BTC sold repays 0.9702 x price but must also take 0.5 x price of value
    # away, so reaching 50% needs 49,000 / 47,020 = 1.04 BTC, more than the 1 BTC held.
    size = liquidation_quantity("BTC", D("99000"), D("1"), D("100000"), D("0.50"), D("0.02"),
                                D("0.01"))
    assert size == SaleSize(D("1"), True)
    # a target the net proceeds per unit cannot beat (0.9702 x price < 0.98 x price): every
    # sale raises the LTV, so everything goes
    size = liquidation_quantity("ETH", D("1190"), D("1"), D("1200"), D("0.98"), D("0.02"),
                                D("0.01"))
    assert size == SaleSize(D("1"), True)


def test_liquidation_quantity_zero_when_nothing_is_owed_or_ltv_is_at_target():
    assert liquidation_quantity("BTC", D("0"), D("1"), D("50000"), D("0.5"), D("0.02")) == (
        SaleSize(D(0), False)
    )
    assert liquidation_quantity("BTC", D("25000"), D("1"), D("50000"), D("0.5"), D("0.02")) == (
        SaleSize(D(0), False)
    )


def test_liquidation_is_not_skipped_when_rounding_puts_ltv_just_above_target():
    # 1.00017 BTC at 100 is worth 100.017, counted as 100.01: LTV 60.01 / 100.01 > 60% although
    # the unrounded value (60.0102 at 60%) would cover the debt.
    debt, amount, price, target = D("60.01"), D("1.00017"), D("100"), D("0.60")
    assert ltv(debt, amount, price) > target
    size = liquidation_quantity("BTC", debt, amount, price, target, D("0.02"), D("0.01"))
    assert size.quantity > 0 and not size.sells_everything
    fill = price * D("0.99")
    assert reaches_target(debt, amount, price, target, size.quantity, fill, D("0.02"))
    assert not reaches_target(debt, amount, price, target, size.quantity - D("1e-8"), fill,
                              D("0.02"))


# --- full liquidation ---------------------------------------------------------------------------


def test_full_liquidation_example():
    # 30,000 owed, 1 BTC at 50,000, 2% fee, 1% slippage: 30,000 / (49,500 x 0.98) = 0.61842...
    size = full_liquidation_quantity("BTC", D("30000"), D("1"), D("50000"), D("0.02"),
                                     D("0.01"))
    assert not size.sells_everything
    net = sale_proceeds(size.quantity, D("49500"), D("0.02")).net
    assert net >= D("30000")
    assert sale_proceeds(size.quantity - D("1e-8"), D("49500"), D("0.02")).net < D("30000")
    # not enough collateral: sell it all
    assert full_liquidation_quantity("BTC", D("60000"), D("1"), D("50000"), D("0.02"),
                                     D("0.01")) == SaleSize(D("1"), True)
    assert full_liquidation_quantity("BTC", D("0"), D("1"), D("50000"), D("0.02"),
                                     D("0.01")) == SaleSize(D(0), False)


@PROPERTY
@given(loan=loans(ltv_bps=(3000, 13000), debt=accrued_debts), fee=ratio(0, 500),
       slippage=ratio(0, 500))
def test_full_liquidation_covers_the_debt_at_the_worst_fill(loan: Loan, fee: Decimal,
                                                            slippage: Decimal):
    size = full_liquidation_quantity(loan.asset, loan.debt, loan.amount, loan.price, fee,
                                     slippage)
    q = size.quantity
    worst_fill = loan.price * (1 - slippage)
    owed = usd_up(loan.debt)
    assert q == units_up(loan.asset, q)
    assert 0 < q <= loan.amount
    if size.sells_everything:
        assert q == loan.amount
        assert sale_proceeds(loan.amount - loan.q, worst_fill, fee).net < owed
    else:
        assert q < loan.amount
        assert sale_proceeds(q, worst_fill, fee).net >= owed
        assert sale_proceeds(q - loan.q, worst_fill, fee).net < owed, "minimal"


# --- sale proceeds ------------------------------------------------------------------------------


def test_sale_proceeds_example():
    # 0.5 BTC at 30,000.019 = 15,000.0095 -> 15,000.00; 2% = 300.00
    assert sale_proceeds(D("0.5"), D("30000.019"), D("0.02")) == SaleProceeds(
        D("15000.00"), D("300.00"), D("15000.00") - D("300.00")
    )
    # fee rounded up: 2% of 100.01 = 2.0002 -> 2.01
    assert sale_proceeds(D("1"), D("100.01"), D("0.02")) == SaleProceeds(
        D("100.01"), D("2.01"), D("98.00")
    )
    # nothing sold, nothing charged
    assert sale_proceeds(D("0"), D("100"), D("0.02")) == SaleProceeds(D("0.00"), D("0.00"),
                                                                      D("0.00"))


@PROPERTY
@given(data=st.data())
def test_sale_proceeds_gross_down_fee_up(data: st.DataObject):
    asset = data.draw(assets)
    quantity = data.draw(amounts(asset))
    fill = data.draw(prices(asset)) * (1 - data.draw(ratio(0, 500)))
    fee_rate = data.draw(ratio(0, 1999))
    proceeds = sale_proceeds(quantity, fill, fee_rate)
    assert proceeds.gross == floor_cents(F(quantity) * F(fill))
    assert proceeds.fee == min(ceil_cents(F(proceeds.gross) * F(fee_rate)), proceeds.gross)
    assert proceeds.net == proceeds.gross - proceeds.fee
    assert proceeds.net >= 0
    for x in (proceeds.gross, proceeds.fee, proceeds.net):
        assert x == x.quantize(USD)
    # never credit more than the fee-free share of the exact proceeds
    assert F(proceeds.net) <= F(quantity) * F(fill) * (1 - F(fee_rate))


# --- interest -----------------------------------------------------------------------------------


def test_a_year_of_daily_interest_on_100k_at_12_percent_is_12000():
    day = daily_interest(D("100000"), D("0.12"))
    accrued = D(0)
    for _ in range(365):
        accrued += day
    assert usd_up(accrued) == D("12000.00")
    assert usd_up(day * 365) == D("12000.00")
    assert accrued <= D("12000")


def test_daily_interest_examples():
    assert daily_interest(D("36500"), D("0.10")) == D("10.0000000000")
    assert daily_interest(D("100000"), D("0.12")) == D("32.8767123287")  # 32.876712328767...
    assert daily_interest(D("100000"), D("0")) == 0
    # 1e-10 precision, not cents: a small loan still accrues
    assert daily_interest(D("100"), D("0.01")) == D("0.0027397260")


@PROPERTY
@given(principal=debts, rate_bps=st.integers(0, 9999), days=st.integers(1, 3650))
@example(principal=D("100000"), rate_bps=1200, days=365)
@example(principal=D("50000.00"), rate_bps=800, days=730)
def test_daily_accrual_over_a_term_is_actual_over_365(principal: Decimal, rate_bps: int,
                                                      days: int):
    rate = D(rate_bps).scaleb(-4)
    day = daily_interest(principal, rate)
    assert day == day.quantize(D("1e-10"))
    accrued = day * days
    exact = F(principal) * F(rate) * days / 365
    # cut off below 1e-10 a day: never more than actual/365, and less by under 1e-10 a day
    assert F(accrued) <= exact
    assert exact - F(accrued) < Fraction(days, 10**10)
    charged = usd_up(accrued)
    residual = exact - F(floor_cents(exact))  # below a cent
    if residual == 0 or residual > Fraction(days, 10**10):
        assert charged == ceil_cents(exact)
    else:  # within the accrual precision of a whole cent
        assert charged in (ceil_cents(exact), ceil_cents(exact) - USD)


def test_days_between():
    assert days_between(date(2024, 1, 1), date(2025, 1, 1)) == 366  # actual days, leap year
    assert days_between(date(2023, 1, 1), date(2024, 1, 1)) == 365
    assert days_between(date(2024, 3, 1), date(2024, 2, 28)) == 0
    assert days_between(date(2024, 2, 28), date(2024, 3, 1)) == 2


# --- payments -----------------------------------------------------------------------------------


def test_balances_total_rounds_up_to_the_cent():
    assert Balances(D("1000.00"), D("12.3456789012"), D("5.00")).total == D("1017.35")
    assert Balances(D("1000.00"), D("0"), D("0")).total == D("1000.00")
    assert Balances(D("0"), D("0.0000000001"), D("0")).total == D("0.01")


def test_allocate_payment_waterfall():
    b = Balances(principal=D("1000.00"), interest=D("10.0000000001"), fees=D("5.00"))
    # fees first
    assert allocate_payment(b, D("3.00")) == Allocation(D("3.00"), D("0"), D("0"), D("0"))
    # then interest, settled to the cent (10.01 due)
    assert allocate_payment(b, D("10.00")) == Allocation(D("5.00"), D("5.00"), D("0"), D("0"))
    assert allocate_payment(b, D("15.01")) == Allocation(D("5.00"), D("10.01"), D("0"), D("0"))
    # then principal
    assert allocate_payment(b, D("115.01")) == Allocation(D("5.00"), D("10.01"), D("100.00"),
                                                          D("0"))
    # then whatever is left is unapplied
    a = allocate_payment(b, D("2000.00"))
    assert a == Allocation(D("5.00"), D("10.01"), D("1000.00"), D("984.99"))
    assert a.applied == D("1015.01") == b.total


def test_full_repayment_leaves_exactly_zero_and_clears_sub_cent_interest():
    b = Balances(principal=D("1000.00"), interest=D("10.0000000001"), fees=D("5.00"))
    a = allocate_payment(b, b.total)
    assert a.unapplied == 0
    after = after_payment(b, a)
    assert after == Balances(D("0"), D("0"), D("0"))
    assert after.total == 0
    # interest paid to the rounded-up cent leaves no sub-cent dust
    only_interest = after_payment(b, allocate_payment(b, D("15.01")))
    assert only_interest.interest == 0 and only_interest.fees == 0
    assert only_interest.principal == D("1000.00")


def test_partial_interest_payment_keeps_the_sub_cent_remainder():
    b = Balances(principal=D("1000.00"), interest=D("10.0000000001"), fees=D("0"))
    after = after_payment(b, allocate_payment(b, D("4.00")))
    assert after.interest == D("6.0000000001")
    assert after.total == D("1006.01")


balances = st.builds(
    Balances,
    principal=st.integers(0, 10**10).map(lambda n: D(n).scaleb(-2)),
    interest=st.integers(0, 10**16).map(lambda n: D(n).scaleb(-10)),
    fees=st.integers(0, 10**7).map(lambda n: D(n).scaleb(-2)),
)
payments = st.integers(1, 2 * 10**10).map(lambda n: D(n).scaleb(-2))


@PROPERTY
@given(b=balances, amount=payments)
def test_allocation_is_a_waterfall_that_conserves_the_payment(b: Balances, amount: Decimal):
    a = allocate_payment(b, amount)
    assert a.applied + a.unapplied == amount
    assert min(a.fees, a.interest, a.principal, a.unapplied) >= 0
    assert a.fees <= b.fees and a.interest <= usd_up(b.interest) and a.principal <= b.principal
    # order: nothing reaches a later bucket before the earlier ones are paid
    if a.interest > 0:
        assert a.fees == b.fees
    if a.principal > 0:
        assert a.interest == usd_up(b.interest)
    if a.unapplied > 0:
        assert a.applied == b.total
    after = after_payment(b, a)
    # what is owed falls by exactly what was applied
    assert after.total == b.total - a.applied
    assert min(after.principal, after.interest, after.fees) >= 0
    if amount >= b.total:
        assert after == Balances(D(0), D(0), D(0))
        assert a.unapplied == amount - b.total


def test_count_collateral_never_counts_a_fraction_of_the_smallest_unit():
    assert count_collateral("BTC", D("1.123456789")) == D("1.12345678")
    assert count_collateral("ETH", D("1.1234567890123456789")) == D("1.123456789012345678")
    with pytest.raises(ValueError, match="DOGE"):
        count_collateral("DOGE", D("1"))


def test_quanta_used_by_the_risk_math():
    assert quantum("BTC") == D("1e-8") and quantum("ETH") == D("1e-18")
