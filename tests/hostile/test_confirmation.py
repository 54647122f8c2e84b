"""Item 6 of issue 10: a liquidation-level breach confirmed by later observations sells,
however the observations arrive (one at a time, or several in one workflow task)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from loanflow.models import LoanState
from tests.workflows.book import sales
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan

BREACH = "36363.64"  # 30,000 against 1 BTC: 82.5%, past the liquidation level, under the floor


async def observe(desk: Desk, handle, price: str, minutes_ago: int) -> None:  # type: ignore[no-untyped-def]
    at = await desk.now() - timedelta(minutes=minutes_ago)
    await handle.signal("price_update", {"asset": "BTC", "price": price,
                                         "observed_at": at.isoformat(), "source": "desk"})


async def sold(desk: Desk, loan_id: str) -> bool:
    for _ in range(120):  # the loan re-checks every minute: a few minutes of loan time
        if await sales(desk.db, loan_id):
            return True
        await desk.env.sleep(timedelta(seconds=1))
    return False


@pytest.mark.parametrize("gap", [1.0, 0.0], ids=["one-second-apart", "together"])
@pytest.mark.parametrize("at_breach_for", [2, 7, 20, None])
async def test_breach_confirmed_by_later_observations_sells(
    desk: Desk, gap: float, at_breach_for: int | None
) -> None:
    loan_id = f"C6-{int(gap)}-{at_breach_for}"
    handle = await active_loan(desk, loan_id)
    await desk.env.sleep(timedelta(hours=1))
    if at_breach_for is not None:  # the loan is at 82.5% by a price this many minutes old
        await observe(desk, handle, BREACH, 0)
        await desk.env.sleep(timedelta(minutes=at_breach_for))
    for minutes_ago in (10, 5, 0):
        await observe(desk, handle, BREACH, minutes_ago)
        await asyncio.sleep(gap)
    assert await sold(desk, loan_id), "a confirmed breach must sell"
    status = await desk.status(handle)
    assert status.state == LoanState.ACTIVE and status.ltv is not None
