"""Margin-call reminders reach a borrower whose loan heard no price signal since the call.

The market monitor signals a loan only when a move crosses one of its trigger prices, so a
loan sitting in a call at a steady price has no fresh price of its own when a reminder falls
due. Patch `issue9-reminder-reads-the-store`: the loan reads the store for one (as it does for
a deadline sale) and the reminder goes out with the figures at that price; before it, the
reminder was silently skipped and the borrower's first word after the call was the sale."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from loanflow.models import LoanState
from loanflow.store.prices import store_observation
from tests.workflows.book import notice_data, notices
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state


async def steady_market(desk: Desk, price: str, until: timedelta) -> None:
    """The monitor's ticks every 15 minutes at a steady price: stored, no loan signalled."""
    end = await desk.now() + until
    while (now := await desk.now()) < end:
        await store_observation(desk.db, "BTC", Decimal(price), now)
        await desk.env.sleep(timedelta(minutes=15))


async def test_reminders_go_out_with_no_signal_since_the_call(desk: Desk) -> None:
    handle = await active_loan(desk, "R1")
    await desk.price(handle, "BTC", "42000")  # 71.4%: margin call
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await steady_market(desk, "42000", timedelta(hours=47))  # past both reminders
    assert (await desk.status(handle)).state == LoanState.MARGIN_CALL
    await desk.settle(handle)
    reminders = await notice_data(desk.db, "R1", "margin_call_reminder")
    assert sorted(int(r["hours_left"]) for r in reminders) == [3, 23]
    assert (await notices(desk.db, "R1")).count("margin_call_reminder") == 2
