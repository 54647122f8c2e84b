"""Hour-by-hour paths for the plots: the price each tick formed (from the private database)
and each loan's LTV along it (from its starting terms and its recorded sales)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from loanflow.db import Database
from loanflow.risk import daily_interest, ltv
from loanflow.schema import MarketTick
from loanflow.stress.clock import Clock

PricePath = dict[str, list[tuple[datetime, Decimal]]]


async def price_path(db: Database, clock: Clock) -> PricePath:
    """{asset: [(window hour, price)]} for every tick that formed a price."""
    async with db.sessions() as session:
        rows = (await session.execute(
            select(MarketTick.asset, MarketTick.at, MarketTick.price)
            .where(MarketTick.status == "price").order_by(MarketTick.at))).all()
    path: PricePath = {}
    for asset, at, price in rows:
        path.setdefault(asset, []).append((clock.to_window(at), Decimal(price)))
    return path


def ltv_path(loan: Mapping[str, Any], prices: Sequence[tuple[datetime, Decimal]],
             originated_at: datetime) -> list[tuple[datetime, float]]:
    """The loan's LTV at every priced hour: debt grows by a day's simple interest per whole day,
    a sale takes its quantity off the collateral and sets the LTV it left (for a plot: floats)."""
    debt, amount = Decimal(loan["principal_usd"]), Decimal(loan["collateral_amount"])
    rate, principal = Decimal(loan["annual_rate"]), Decimal(loan["principal_usd"])
    sales = [e for e in loan["events"] if e["kind"] == "liquidation"]
    ended = next((e["at"] for e in loan["events"] if e["kind"] in ("default", "closed")), None)
    out: list[tuple[datetime, float]] = []
    for at, price in prices:
        stamp = at.isoformat().replace("+00:00", "Z")
        if ended is not None and stamp > ended:
            break
        while sales and sales[0]["at"] <= stamp:
            sale = sales.pop(0)
            amount -= Decimal(sale["quantity_sold"])
            if amount > 0 and sale["ltv_after"] is not None:
                # What the sale left: debt = LTV x collateral value at the sale's price.
                debt = Decimal(sale["ltv_after"]) * amount * Decimal(sale["price"])
                principal = debt
                originated_at = at  # accrue afresh from here on
        days = int((at - originated_at).total_seconds() // 86400)
        current = ltv(debt + days * daily_interest(principal, rate), amount, price)
        if current is not None and current.is_finite():
            out.append((at, float(current)))
    return out
