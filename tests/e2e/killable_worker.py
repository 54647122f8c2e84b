"""A worker process for the SIGKILL tests: the exchange fills the order, then its reply takes
SLOW_REPLY_SECONDS to come back, so the test can kill the worker after the venue sold and before
loanflow booked anything; the custodian's reply to a new deposit address takes
SLOW_CUSTODY_SECONDS, so that an imported loan can be killed after its opening balances were
booked and before its address was recorded. Configured from the environment like the real
worker."""

from __future__ import annotations

import asyncio
import os

from activities.custody import FakeCustodian
from activities.exchange import FakeExchange, Fill, SellOrder
from activities.registry import build_activities
from loanflow.db import Database
from loanflow.settings import get_settings
from loanflow.temporal_client import connect
from loanflow.worker import build_worker


class SlowReplyExchange(FakeExchange):
    async def market_sell(self, order: SellOrder) -> Fill:
        fill = await super().market_sell(order)
        await asyncio.sleep(float(os.environ.get("SLOW_REPLY_SECONDS", "0")))
        return fill


class SlowReplyCustodian(FakeCustodian):
    async def open_address(self, loan_id: str, asset: str) -> str:
        address = await super().open_address(loan_id, asset)
        await asyncio.sleep(float(os.environ.get("SLOW_CUSTODY_SECONDS", "0")))
        return address


async def main() -> None:
    settings = get_settings()
    db = Database(settings.db_url)
    client = await connect()
    activities = build_activities(db, settings, exchange=SlowReplyExchange(db),
                                  custodian=SlowReplyCustodian())
    print("worker ready", flush=True)
    await build_worker(client, db, settings, activities=activities).run()


if __name__ == "__main__":
    asyncio.run(main())
