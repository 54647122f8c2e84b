"""The `latest_price` activity: a loan asks for the newest usable stored price when it starts,
or resumes, and has no price from a signal yet. The queries are `loanflow.store.prices`,
shared with the CLI and the market monitor."""

from __future__ import annotations

from datetime import datetime, timezone

from temporalio import activity

from activities.support import refuse
from loanflow.db import Database
from loanflow.effects import ActivityName, LatestPrice, PriceRequest
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
        if request.asset not in ASSETS:
            raise refuse(f"unknown asset {request.asset!r}", "UnknownAsset")
        now = request.now or datetime.now(timezone.utc)
        return LatestPrice(observation=await latest_observation(self.db, request.asset, now))
