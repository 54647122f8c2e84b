"""Market prices from the database.

The market monitor (DESIGN.md, "Prices and scale") forms a price from several sources and stores
it with `store_observation`; a loan asks for the newest one with the `latest_price` activity
(when it starts, or resumes, and has no price from a signal yet). Freshness is the loan's call:
this module returns the newest observation however old it is, with its `observed_at`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from temporalio import activity

from activities.support import refuse
from loanflow.db import Database
from loanflow.effects import ActivityName, LatestPrice, PriceRequest
from loanflow.models import PriceUpdate
from loanflow.money import ASSETS
from loanflow.schema import PriceObservation


async def store_observation(
    db: Database,
    asset: str,
    price: Decimal,
    observed_at: datetime,
    sources: Mapping[str, Decimal] | None = None,
) -> PriceUpdate:
    """Store one market price and return it as the `price_update` a loan would receive,
    carrying the new `observation_id`. `sources` are the quotes behind it, by source name.
    Raises ValueError for an unknown asset, a price that is not positive or a naive time."""
    if asset not in ASSETS:
        raise ValueError(f"unknown asset {asset!r}: expected one of {', '.join(ASSETS)}")
    if not price.is_finite() or price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    if observed_at.tzinfo is None:
        raise ValueError("observed_at must carry a time zone (UTC)")
    quotes = {name: str(quote) for name, quote in (sources or {}).items()}
    row = PriceObservation(asset=asset, price=price, observed_at=observed_at, sources=quotes)
    async with db.transaction() as session:
        session.add(row)
        await session.flush()
    return _as_update(row)


async def latest_observation(db: Database, asset: str) -> PriceUpdate | None:
    """The newest stored observation of `asset` (by observation time), or None."""
    query = (
        select(PriceObservation)
        .where(PriceObservation.asset == asset)
        .order_by(PriceObservation.observed_at.desc(), PriceObservation.id.desc())
        .limit(1)
    )
    async with db.transaction() as session:
        row = await session.scalar(query)
    return None if row is None else _as_update(row)


def _as_update(row: PriceObservation) -> PriceUpdate:
    return PriceUpdate(
        asset=row.asset,
        price=row.price,
        observed_at=row.observed_at,  # aware: UtcDateTime
        source=describe_sources(row.sources),
        observation_id=row.id,
    )


def describe_sources(sources: Mapping[str, object]) -> str:
    """'kraken' for one quote, 'median(bitstamp,coinbase,kraken)' for several."""
    names = sorted(sources)
    if not names:
        return "stored"
    return names[0] if len(names) == 1 else f"median({','.join(names)})"


class PricingActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.LATEST_PRICE)
    async def latest_price(self, request: PriceRequest) -> LatestPrice:
        """The newest stored price of the asset, or `observation=None` if there is none yet."""
        if request.asset not in ASSETS:
            raise refuse(f"unknown asset {request.asset!r}", "UnknownAsset")
        return LatestPrice(observation=await latest_observation(self.db, request.asset))
