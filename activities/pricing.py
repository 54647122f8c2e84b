"""The `latest_price` activity: a loan asks for the newest usable stored price when it starts,
or resumes, and has no price from a signal yet. The queries are `loanflow.store.prices`,
shared with the CLI and the market monitor."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.support import refuse
from loanflow.db import Database
from loanflow.effects import ActivityName, LatestPrice, PriceRequest
from loanflow.models import PriceUpdate
from loanflow.money import ASSETS
from loanflow.store.prices import latest_observation


class PricingActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.LATEST_PRICE)
    async def latest_price(self, request: PriceRequest) -> LatestPrice:
        """The newest usable stored price of the asset, or `observation=None` if there is none
        yet. "Future" is judged by the loan's own clock (`request.now`: also right on a
        time-skipping server, whose clock is not this worker's), else by the wall clock."""
        return LatestPrice(observation=await stored_price(self.db, request.asset, request.now))


async def stored_price(db: Database, asset: str, now: datetime | None) -> PriceUpdate | None:
    """The newest usable stored observation of a known asset (`latest_observation`, judged
    by `now`, else the wall clock); an unknown asset is refused, not retried."""
    check_asset(asset)
    return await latest_observation(db, asset, now)


def check_asset(asset: str) -> None:
    """An unknown asset is refused, not retried: asking again never finds one."""
    if asset not in ASSETS:
        raise refuse(f"unknown asset {asset!r}", "UnknownAsset")
