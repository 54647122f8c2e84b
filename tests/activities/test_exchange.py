"""Liquidation sales: bounded slippage, one fill and one booking per key, proceeds split
between the loan, the fee and the borrower exactly as `loanflow.risk.sale_proceeds` says."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.exchange import ExchangeActivities, FakeExchange, SellOrder
from loanflow.effects import SaleRequest
from loanflow.money import usd_down
from loanflow.risk import sale_proceeds
from loanflow.schema import ExchangeOrder, LedgerEntry

D = Decimal


def sale(
    quantity: str = "0.5", debt: str = "5000.00", key: str = "L1:sale:1", price: str = "20000"
) -> SaleRequest:
    return SaleRequest(
        key=key,
        loan_id="L1",
        asset="BTC",
        quantity=D(quantity),
        reference_price=D(price),
        fee_rate=D("0.02"),
        debt_usd=D(debt),
    )


@pytest.fixture
def venue(db) -> FakeExchange:
    return FakeExchange(db, rng=random.Random(7))


@pytest.fixture
def exchange(db, venue) -> ExchangeActivities:
    return ExchangeActivities(db, venue)


# --- the fake venue's prices --------------------------------------------------------------------


def test_slippage_is_bounded_and_grows_with_size() -> None:
    venue = FakeExchange(db=None, rng=random.Random(1))  # type: ignore[arg-type]
    rng = random.Random(2)
    for _ in range(2000):
        reference = D(rng.randrange(100, 10_000_000)) / 100
        quantity = D(rng.randrange(1, 10**12)) / 10**8  # up to 10,000 BTC
        fill = venue.fill_price(reference, quantity)
        assert fill == fill.quantize(D("0.01"))
        # Never more than 0.8% below the reference (the workflow sizes sales with a 1% buffer),
        # never less than the 5 bp base; fills are whole cents, rounded down.
        assert usd_down(reference * D("0.992")) <= fill <= usd_down(reference * D("0.9995"))
    small = venue.slippage(D(10_000))
    large = venue.slippage(D(5_000_000))
    assert D("0.0005") <= small <= D("0.0008") and large > small + D("0.004")
    assert venue.slippage(D(10**12)) == D("0.008")


# --- selling ------------------------------------------------------------------------------------


async def test_sale_books_proceeds_exactly(env, fund, exchange, balances, book_is_balanced) -> None:
    await fund("L1", "BTC", D("2"))
    receipt = await env.run(exchange.sell_collateral, sale("0.5", debt="5000.00"))
    proceeds = sale_proceeds(D("0.5"), receipt.fill_price, D("0.02"))
    assert receipt.created and receipt.quantity == D("0.5")
    assert D("19840") <= receipt.fill_price < D("20000")
    assert (receipt.gross_usd, receipt.fee_usd) == (proceeds.gross, proceeds.fee)
    assert receipt.applied_usd == D("5000.00")
    assert receipt.surplus_usd == proceeds.net - D("5000.00") > 0
    assert await balances() == {
        ("custody:BTC", "BTC"): D("1.5"),
        ("loan:L1:collateral", "BTC"): D("-1.5"),
        ("cash", "USD"): receipt.gross_usd,
        ("income:liquidation_fee", "USD"): -receipt.fee_usd,
        ("loan:L1:receivable", "USD"): D("-5000.00"),
        ("loan:L1:payable", "USD"): -receipt.surplus_usd,
    }
    assert await book_is_balanced()


async def test_proceeds_below_the_debt_are_all_applied(env, fund, exchange, balances) -> None:
    await fund("L1", "BTC", D("2"))
    receipt = await env.run(exchange.sell_collateral, sale("0.1", debt="90000.00"))
    assert receipt.surplus_usd == 0 and receipt.applied_usd == receipt.gross_usd - receipt.fee_usd
    # No zero line for the borrower's payable.
    assert ("loan:L1:payable", "USD") not in await balances()


async def test_sale_is_filled_and_booked_once(env, fund, exchange, count) -> None:
    await fund("L1", "BTC", D("2"))
    first = await env.run(exchange.sell_collateral, sale())
    again = await env.run(exchange.sell_collateral, sale())
    assert (first.created, again.created) == (True, False)
    assert again.model_dump(exclude={"created"}) == first.model_dump(exclude={"created"})
    assert await count(ExchangeOrder) == 1
    assert await count(LedgerEntry, LedgerEntry.key == "L1:sale:1") == 1


async def test_retry_after_a_fill_that_was_never_booked(
    env, fund, venue, exchange, count, balances
) -> None:
    """The worker died after the venue filled the order and before the booking: the retry gets
    the same fill from the venue and books it, once."""
    await fund("L1", "BTC", D("2"))
    fill = await venue.market_sell(SellOrder("L1:sale:1", "L1", "BTC", D("0.5"), D("20000")))
    receipt = await env.run(exchange.sell_collateral, sale())
    assert (
        receipt.created
        and receipt.fill_price == fill.fill_price
        and receipt.order_id == fill.order_id
    )
    assert await count(ExchangeOrder) == 1
    assert (await balances())[("cash", "USD")] == fill.gross_usd


async def test_concurrent_duplicate_sales_sell_once(env, fund, exchange, count, balances) -> None:
    await fund("L1", "BTC", D("2"))
    receipts = await asyncio.gather(*(env.run(exchange.sell_collateral, sale()) for _ in range(3)))
    assert sorted(r.created for r in receipts) == [False, False, True]
    assert len({r.fill_price for r in receipts}) == 1
    assert await count(ExchangeOrder) == 1
    assert await count(LedgerEntry, LedgerEntry.key == "L1:sale:1") == 1
    assert (await balances())[("custody:BTC", "BTC")] == D("1.5")


async def test_exchange_outage_fails_before_selling(db, env, fund, failing, count) -> None:
    await fund("L1", "BTC", D("2"))
    down = ExchangeActivities(db, FakeExchange(db, failing))
    with pytest.raises(ApplicationError) as err:
        await env.run(down.sell_collateral, sale())
    assert not err.value.non_retryable and err.value.type == "VendorUnavailable"
    assert await count(ExchangeOrder) == 0
    assert await count(LedgerEntry, LedgerEntry.key == "L1:sale:1") == 0


async def test_cannot_sell_more_than_the_loan_holds(env, fund, exchange, count) -> None:
    await fund("L1", "BTC", D("0.4"))
    with pytest.raises(ApplicationError) as err:
        await env.run(exchange.sell_collateral, sale("0.5"))
    assert err.value.non_retryable and err.value.type == "InsufficientCollateral"
    assert await count(ExchangeOrder) == 0


async def test_bad_requests_are_refused(env, exchange, count) -> None:
    bad = [
        {"quantity": D("0.000000001")},
        {"quantity": D(0)},
        {"asset": "DOGE"},
        {"reference_price": D(0)},
        {"fee_rate": D("0.5")},
        {"debt_usd": D(-1)},
    ]
    for changes in bad:
        with pytest.raises(ApplicationError) as err:
            await env.run(exchange.sell_collateral, sale().model_copy(update=changes))
        assert err.value.non_retryable, changes
    assert await count(ExchangeOrder) == 0


# --- limit orders -------------------------------------------------------------------------------


def limited(limit: str = "19800.00", **changes) -> SaleRequest:  # type: ignore[no-untyped-def]
    return sale(**changes).model_copy(update={"limit_price": D(limit)})


async def test_limit_order_fills_at_the_market_when_it_is_above_the_limit(
    env, fund, exchange, balances
) -> None:
    await fund("L1", "BTC", D("2"))
    receipt = await env.run(exchange.sell_collateral, limited("19800.00"))
    assert receipt.created and receipt.quantity == D("0.5")
    assert D("19800.00") <= receipt.fill_price < D("20000")
    assert (await balances())[("custody:BTC", "BTC")] == D("1.5")


async def test_a_better_market_fills_above_the_reference(db, env, fund) -> None:
    await fund("L1", "BTC", D("2"))
    up = ExchangeActivities(db, FakeExchange(db, rng=random.Random(7), market_move=D("0.003")))
    receipt = await env.run(up.sell_collateral, limited("19800.00"))
    # 20,060 less 5-7 bps of slippage: above the reference the loan sized the sale with
    assert D("20000") < receipt.fill_price <= D("20050")


async def test_limit_order_below_the_market_sells_nothing_and_books_nothing(
    db, env, fund, count, balances
) -> None:
    await fund("L1", "BTC", D("2"))
    venue = FakeExchange(db, rng=random.Random(7), market_move=D("-0.02"))
    down = ExchangeActivities(db, venue)
    receipt = await env.run(down.sell_collateral, limited("19800.00"))
    assert (receipt.quantity, receipt.gross_usd, receipt.applied_usd) == (0, 0, 0)
    assert not receipt.created
    assert await count(LedgerEntry) == 1  # the funding deposit only
    assert (await balances())[("custody:BTC", "BTC")] == D("2")
    # The venue cancelled that order: sent again (a retry), it is still unfilled even if the
    # market is back above the limit, so a key sells at most once.
    venue.market_move = D(0)
    again = await env.run(down.sell_collateral, limited("19800.00"))
    assert again.quantity == 0 and again.order_id == receipt.order_id
    assert await count(ExchangeOrder) == 1
    assert (await balances())[("custody:BTC", "BTC")] == D("2")


async def test_a_limit_order_is_booked_once(env, fund, exchange, count) -> None:
    await fund("L1", "BTC", D("2"))
    first = await env.run(exchange.sell_collateral, limited())
    again = await env.run(exchange.sell_collateral, limited())
    assert (first.created, again.created) == (True, False)
    assert again.model_dump(exclude={"created"}) == first.model_dump(exclude={"created"})
    assert await count(LedgerEntry, LedgerEntry.key == "L1:sale:1") == 1
    # the same key for less than was sold, or at another reference price, is another order:
    # refused, not re-booked (asking more could be a partial fill of a real venue)
    for other in (limited(quantity="0.4"), limited(price="21000")):
        with pytest.raises(ApplicationError) as err:
            await env.run(exchange.sell_collateral, other)
        assert err.value.non_retryable


async def test_bad_limit_prices_are_refused(env, exchange, count) -> None:
    for limit in ("0", "-1", "19800.001", "NaN"):
        with pytest.raises(ApplicationError) as err:
            await env.run(exchange.sell_collateral, limited(limit))
        assert err.value.non_retryable and "limit price" in str(err.value), limit
    assert await count(ExchangeOrder) == 0
