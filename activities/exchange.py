"""Selling collateral for dollars (liquidation).

Exactly once, whatever instant a worker dies at:

1. the venue fills a client order id once (the request key); sent again, it returns that fill;
2. the fill is booked in one ledger entry whose key is the request key, in one transaction
   with our copy of the order.

Killed before 1 completes: the retry sends the order (for the first time, or again and gets the
same fill). Killed between 1 and 2: the retry gets the same fill and books it. Killed after 2:
the retry finds the entry and returns the stored receipt with created=False.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import partial
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.custody import check_holding
from activities.support import FakeFaults, ServiceActivities, conflict, effect_once, refuse
from loanflow import ledger
from loanflow.db import Database
from loanflow.effects import ActivityName, LedgerLine, SaleReceipt, SaleRequest
from loanflow.money import (ASSETS, USD, WIDE, decimal_text, fmt_units_exact, fmt_usd,
                            is_whole_cents, is_whole_units, tidy, usd_down, usd_up)
from loanflow.risk import sale_proceeds
from loanflow.schema import ExchangeOrder
from loanflow.store.ledger import entry_lines, find_entry, post_entry

ZERO = Decimal(0)


@dataclass(frozen=True)
class SellOrder:
    """A sell, idempotent at the venue by `client_order_id`. With `limit_price` it is a
    marketable limit order, immediate-or-cancel: it never fills below the limit, and what
    cannot fill at or above it right away is cancelled. Without, a market order."""

    client_order_id: str
    loan_id: str
    asset: str
    quantity: Decimal
    reference_price: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True)
class Fill:
    """What the venue sold: `quantity` may be less than ordered (down to 0) for a limit order
    the market could not fill at its limit; the rest of the order is cancelled."""

    order_id: str
    client_order_id: str
    quantity: Decimal
    fill_price: Decimal
    gross_usd: Decimal


class Exchange(Protocol):
    """A trading venue. `market_sell` must be idempotent by `client_order_id`: an order id it
    has filled (or cancelled unfilled) before returns that fill and sells nothing more (real
    venues reject or return the existing order for a duplicate client order id). An order with
    a limit price never fills below it."""

    async def market_sell(self, order: SellOrder) -> Fill: ...


class FakeExchange:
    """A stand-in venue whose order book is the `exchange_orders` table.

    Fills market sells at the reference price less a slippage that grows with the order's size:
    5 bps, plus 10 bps per million dollars sold, plus up to 2 bps of noise, never more than
    0.8% (the workflow's limit orders sit 1% below the reference). `market_move` shifts the
    market away from the reference an order names (tests: -0.02 is a market 2% lower than the
    loan's price, +0.003 a better one). A limit order whose fill price would be below its limit
    fills nothing (all or none): the order row records quantity 0. Answers after a delay and
    fails now and then, always before executing. The order row (unique client order id) is the
    venue's idempotency record, so a retry after a fill gets the same fill, even across a
    worker restart.
    """

    BASE_SLIPPAGE = Decimal("0.0005")
    IMPACT_PER_MILLION_USD = Decimal("0.0010")
    MAX_NOISE_BPS = 2
    MAX_SLIPPAGE = Decimal("0.008")

    def __init__(
        self, db: Database, faults: FakeFaults | None = None, rng: random.Random | None = None,
        market_move: Decimal = ZERO,
    ) -> None:
        self.db = db
        self.faults = faults or FakeFaults()
        self.rng = rng or random.Random()
        self.market_move = market_move

    def slippage(self, notional_usd: Decimal) -> Decimal:
        """The fraction below the reference price an order of this size fills at."""
        noise = Decimal(self.rng.randrange(self.MAX_NOISE_BPS * 10 + 1)) / 100_000
        impact = self.IMPACT_PER_MILLION_USD * notional_usd / 1_000_000
        return min(self.BASE_SLIPPAGE + impact + noise, self.MAX_SLIPPAGE)

    def fill_price(self, reference_price: Decimal, quantity: Decimal) -> Decimal:
        """The market (the reference price moved by `market_move`) less slippage, rounded down
        to the cent (a price tick)."""
        with localcontext(WIDE):
            market = reference_price * (1 + self.market_move)
            return usd_down(market * (1 - self.slippage(quantity * market)))

    async def market_sell(self, order: SellOrder) -> Fill:
        async def lookup(session: AsyncSession) -> Fill | None:
            return await _find_order(session, order.client_order_id)

        async def write(session: AsyncSession, row: ExchangeOrder) -> Fill:
            session.add(row)
            await session.flush()
            return _fill(row)

        return await effect_once(self.db, lookup, partial(self._execute, order), write)

    async def _execute(self, order: SellOrder) -> ExchangeOrder:
        """Fill the order against the market (the caller stores it)."""
        await self.faults.call("exchange", "market sell")
        price = self.fill_price(order.reference_price, order.quantity)
        quantity = order.quantity
        if order.limit_price is not None and price < order.limit_price:
            quantity = price = ZERO  # cancelled unfilled: the market is below the limit
        return ExchangeOrder(
            client_order_id=order.client_order_id,
            order_id="fx_" + hashlib.sha256(order.client_order_id.encode()).hexdigest()[:20],
            loan_id=order.loan_id,
            asset=order.asset,
            quantity=quantity,
            reference_price=order.reference_price,
            fill_price=price,
            gross_usd=usd_down(quantity * price),
        )


async def _find_order(session: AsyncSession, client_order_id: str) -> Fill | None:
    row = await _order_row(session, client_order_id)
    return None if row is None else _fill(row)


async def _order_row(session: AsyncSession, client_order_id: str) -> ExchangeOrder | None:
    query = select(ExchangeOrder).where(ExchangeOrder.client_order_id == client_order_id)
    return await session.scalar(query)


def _fill(row: ExchangeOrder) -> Fill:
    return Fill(
        order_id=row.order_id,
        client_order_id=row.client_order_id,
        quantity=row.quantity,
        fill_price=row.fill_price,
        gross_usd=row.gross_usd,
    )


class ExchangeActivities(ServiceActivities[Exchange]):
    """Liquidation sales at a trading venue (the service)."""

    @activity.defn(name=ActivityName.SELL_COLLATERAL)
    async def sell_collateral(self, request: SaleRequest) -> SaleReceipt:
        """Sell `quantity` of the loan's collateral once per key and book the proceeds.

        With `limit_price` the order never fills below it; the receipt's `quantity` is what
        filled, possibly less than asked or nothing (then nothing is booked, and the venue's
        order record answers a retry).

        Proceeds (`loanflow.risk.sale_proceeds`): gross rounded down to the cent, the fee rounded
        up; of the net, up to `debt_usd` is applied to the loan, the rest is owed back to the
        borrower. One ledger entry, keyed by the request key:
        asset units: debit `loan:<id>:collateral`, credit `custody:<ASSET>`;
        USD: debit `cash` gross; credit `income:liquidation_fee` fee, `loan:<id>:receivable`
        applied and `loan:<id>:payable` surplus (zero lines left out).
        """
        _check_request(request)

        async def lookup(session: AsyncSession) -> SaleReceipt | None:
            return await _stored_receipt(session, request)

        async def check(session: AsyncSession) -> None:
            await check_holding(session, request.loan_id, request.asset, request.quantity, "sell")

        async def write(session: AsyncSession, fill: Fill) -> SaleReceipt:
            if fill.quantity <= 0:
                return unfilled(request, fill)  # nothing sold, nothing to book
            await _ensure_order_row(session, request, fill)
            receipt = book_sale(request, fill)
            await post_entry(
                session,
                key=request.key,
                loan_id=request.loan_id,
                memo=(f"liquidation sale of {fmt_units_exact(request.asset, fill.quantity)} at "
                      f"{fmt_usd(fill.fill_price)}"),
                lines=sale_lines(request, receipt),
            )
            return receipt

        order = SellOrder(client_order_id=request.key, loan_id=request.loan_id, asset=request.asset,
                          quantity=request.quantity, reference_price=request.reference_price,
                          limit_price=request.limit_price)
        return await effect_once(
            self.db, lookup, partial(self.service.market_sell, order), write, check
        )


def book_sale(request: SaleRequest, fill: Fill) -> SaleReceipt:
    """What a fill brings: gross, fee, and the net split into applied and surplus."""
    proceeds = sale_proceeds(fill.quantity, fill.fill_price, request.fee_rate)
    applied = min(proceeds.net, usd_up(request.debt_usd))
    return SaleReceipt(
        key=request.key,
        order_id=fill.order_id,
        quantity=tidy(fill.quantity),
        fill_price=fill.fill_price.quantize(USD),
        gross_usd=proceeds.gross,
        fee_usd=proceeds.fee,
        applied_usd=applied,
        surplus_usd=proceeds.net - applied,
        created=True,
    )


def unfilled(request: SaleRequest, fill: Fill) -> SaleReceipt:
    """The receipt of an order that sold nothing: there is nothing to book."""
    return SaleReceipt(
        key=request.key, order_id=fill.order_id, quantity=ZERO, fill_price=ZERO, gross_usd=ZERO,
        fee_usd=ZERO, applied_usd=ZERO, surplus_usd=ZERO, created=False,
    )


def sale_lines(request: SaleRequest, receipt: SaleReceipt) -> list[LedgerLine]:
    """The booking of one sale (see `ExchangeActivities.sell_collateral`)."""
    asset, loan_id = request.asset, request.loan_id
    lines = [
        ledger.debit(ledger.collateral(loan_id), asset, receipt.quantity),
        ledger.credit(ledger.custody(asset), asset, receipt.quantity),
        ledger.debit(ledger.CASH, "USD", receipt.gross_usd),
        ledger.credit(ledger.LIQUIDATION_FEE_INCOME, "USD", receipt.fee_usd),
        ledger.credit(ledger.receivable(loan_id), "USD", receipt.applied_usd),
        ledger.credit(ledger.payable(loan_id), "USD", receipt.surplus_usd),
    ]
    return [line for line in lines if line.amount != 0]


async def _stored_receipt(session: AsyncSession, request: SaleRequest) -> SaleReceipt | None:
    """The receipt of a sale already booked under this key, rebuilt from the order and the
    ledger entry (the records, not a recomputation)."""
    entry = await find_entry(session, request.key)
    if entry is None:
        return None
    order = await _order_row(session, request.key)
    if order is None or not _same_order(request, entry.loan_id, order):
        raise conflict(request.key, "sale")
    credits = {x.account: -x.amount for x in entry_lines(entry) if x.currency == "USD"}
    gross = -credits.get(ledger.CASH, ZERO)
    return SaleReceipt(
        key=request.key,
        order_id=order.order_id,
        quantity=tidy(order.quantity),
        fill_price=order.fill_price.quantize(USD),
        gross_usd=gross.quantize(USD),
        fee_usd=credits.get(ledger.LIQUIDATION_FEE_INCOME, ZERO).quantize(USD),
        applied_usd=credits.get(ledger.receivable(request.loan_id), ZERO).quantize(USD),
        surplus_usd=credits.get(ledger.payable(request.loan_id), ZERO).quantize(USD),
        created=False,
    )


def _same_order(request: SaleRequest, loan_id: str, order: ExchangeOrder) -> bool:
    """Is the booked order the one this request asks for? A limit order may have filled less
    than it asked (a real venue's partial fill), never more, and never at another reference.
    (The order row keeps what filled, not what was asked, so a request under the same key for
    more than a limit order filled is not told apart from its retry.)"""
    if (loan_id, order.asset) != (request.loan_id, request.asset):
        return False
    if request.limit_price is None:
        return order.quantity == request.quantity
    return order.quantity <= request.quantity and order.reference_price == request.reference_price


async def _ensure_order_row(session: AsyncSession, request: SaleRequest, fill: Fill) -> None:
    """Our copy of the order. The fake venue has already written it (its book is our table); a
    real venue has not, and then it is written here, with the booking."""
    if await _order_row(session, fill.client_order_id) is not None:
        return
    session.add(
        ExchangeOrder(
            client_order_id=fill.client_order_id,
            order_id=fill.order_id,
            loan_id=request.loan_id,
            asset=request.asset,
            quantity=fill.quantity,
            reference_price=request.reference_price,
            fill_price=fill.fill_price,
            gross_usd=fill.gross_usd,
        )
    )
    await session.flush()


def _check_request(request: SaleRequest) -> None:
    if request.asset not in ASSETS:
        raise refuse(f"unknown asset {request.asset!r}", "UnknownAsset")
    if not request.quantity.is_finite() or request.quantity <= 0:
        raise refuse(f"quantity must be positive, got {decimal_text(request.quantity)}",
                     "InvalidAmount")
    if not is_whole_units(request.asset, request.quantity):
        raise refuse(
            f"quantity {decimal_text(request.quantity)} is finer than {request.asset} allows",
            "InvalidAmount"
        )
    if not request.reference_price.is_finite() or request.reference_price <= 0:
        raise refuse(
            f"reference price must be positive, got {decimal_text(request.reference_price)}",
            "InvalidAmount"
        )
    limit = request.limit_price
    if limit is not None and (not limit.is_finite() or limit <= 0 or not is_whole_cents(limit)):
        raise refuse(f"limit price must be positive whole cents, got {decimal_text(limit)}",
                     "InvalidAmount")
    if not ZERO <= request.fee_rate < Decimal("0.2"):
        raise refuse(f"fee rate must be in [0, 0.2), got {request.fee_rate}", "InvalidAmount")
    if not request.debt_usd.is_finite() or request.debt_usd < 0:
        raise refuse(f"debt must not be negative, got {decimal_text(request.debt_usd)}",
                     "InvalidAmount")
