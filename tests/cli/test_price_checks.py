"""`loanflow price` refuses what may not enter the desk, before anything is stored or sent:
a future `--observed-at` (issue 10: a 2030 price "cured" 50 calls and froze every BTC loan),
and holds a jump of more than 30% as unconfirmed until a second observation confirms it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from loanflow.db import Database
from loanflow.ports import free_port
from loanflow.schema import PriceObservation
from loanflow.store.prices import latest_observation
from tests.cli.support import Cli


async def stored(store: Database) -> int:
    async with store.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(PriceObservation)))


async def test_a_future_observation_is_refused_naming_the_field(cli: Cli, store: Database) -> None:
    # Refused before the server is asked (it is not even reachable here) and nothing stored.
    refused = await cli.error("price", "BTC", "60000", "--observed-at", "2030-01-01T00:00:00Z",
                              TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    assert refused.startswith("observed_at: 2030-01-01T00:00:00+00:00 is in the future (now ")
    assert refused.endswith("at most 2 min ahead)")
    assert await stored(store) == 0
    # A clock a minute ahead of ours is tolerated.
    soon = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
    await cli.ok("price", "BTC", "60000", "--observed-at", soon)
    assert await stored(store) == 1


async def test_a_jump_is_stored_unconfirmed_and_signalled_to_nobody(cli: Cli, store: Database) -> None:
    await cli.ok("price", "BTC", "60000")
    jump = await cli.json("price", "BTC", "6000")  # a typo: one zero short
    assert jump["unconfirmed"] == "90.0% from the last accepted $60,000.00 (limit 30%)"
    assert jump["signalled"] == []
    latest = await latest_observation(store, "BTC")
    assert latest is not None and latest.price == 60000  # what loans read is unchanged
    line = await cli.ok("price", "BTC", "6100")
    # Confirmed: stored as the price and signalled as usual (to whichever BTC loans the shared
    # stack holds from other tests).
    assert "UNCONFIRMED" not in line and "stored as observation" in line
    latest = await latest_observation(store, "BTC")
    assert latest is not None and latest.price == 6100  # confirmed by the second observation
