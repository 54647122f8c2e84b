"""The hours the desk had no price: runs of market-monitor ticks without a price, read back
from the database (`market_ticks`), for `loanflow market status`, reports and the stress test.

A no-price tick is one where too few fresh venues quoted the asset (or none could answer):
nothing can act then, not even on the lowest quote. Disputed ticks (venues disagreeing) do
have a price and are not counted here (they are flagged on the observation instead).

    periods = await no_price_periods(db, "BTC", since=start, until=end)

Times are the ticks' own: the historical moment of a replay tick (`replay_at`), else the tick's
time. A period runs per monitor and asset; `until` is the first tick with a price after it
(None while the market is still dark, or if that tick lies after `until`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from loanflow.db import Database
from loanflow.schema import MarketTick, UtcDateTime


@dataclass
class NoPricePeriod:
    asset: str
    monitor_id: str
    start: datetime  # the first tick without a price
    end: datetime  # the last tick without a price
    until: datetime | None  # the next tick with a price (None: still none)
    ticks: int = 1
    reasons: list[str] = field(default_factory=list)  # distinct, in order of appearance


async def no_price_periods(
    engine: Database | AsyncEngine, asset: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> list[NoPricePeriod]:
    """Every period without a price of `asset` (all assets if None) whose ticks fall in
    [since, until] (either open), oldest first."""
    engine = engine.engine if isinstance(engine, Database) else engine
    at = func.coalesce(MarketTick.replay_at, MarketTick.at, type_=UtcDateTime)
    window = {"partition_by": (MarketTick.monitor_id, MarketTick.asset),
              "order_by": MarketTick.id}
    ticks = select(
        MarketTick.id, MarketTick.monitor_id, MarketTick.asset, MarketTick.status,
        MarketTick.reasons, at.label("tick_at"),
        func.lag(MarketTick.status).over(**window).label("previous"),
        func.lead(at, type_=UtcDateTime).over(**window).label("next_t"),
    )
    if asset is not None:
        ticks = ticks.where(MarketTick.asset == asset)
    ticks = ticks.subquery()
    query = select(ticks).where(ticks.c.status == "no_price")
    if since is not None:
        query = query.where(ticks.c.tick_at >= since)
    if until is not None:
        query = query.where(ticks.c.tick_at <= until)
    query = query.order_by(ticks.c.monitor_id, ticks.c.asset, ticks.c.id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return sorted(_runs(rows), key=lambda p: (p.start, p.asset, p.monitor_id))


def _runs(rows: list) -> list[NoPricePeriod]:  # type: ignore[type-arg]
    periods: list[NoPricePeriod] = []
    current: NoPricePeriod | None = None
    for row in rows:
        key = (row.monitor_id, row.asset)
        if current is None or row.previous != "no_price" or key != (current.monitor_id,
                                                                     current.asset):
            current = NoPricePeriod(asset=row.asset, monitor_id=row.monitor_id, start=row.tick_at,
                                    end=row.tick_at, until=row.next_t)
            periods.append(current)
        else:
            current.ticks += 1
            current.end, current.until = row.tick_at, row.next_t
        current.reasons += [r for r in row.reasons or [] if r not in current.reasons]
    return periods
