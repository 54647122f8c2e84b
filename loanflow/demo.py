"""A short scripted demo: three loans through their lives on a running stack.

DEMO-1 (BTC) is repaid and closed; DEMO-2 (ETH) is margin-called when ETH falls and cured by a
top-up; DEMO-3 (BTC) is liquidated when BTC crashes through its hard floor. Prices move the way
an operator moves them, through the market monitor (`loanflow market tick`): each move is
stored as an observation, and the monitor signals the loans whose trigger prices it crossed.
So after the demo `loanflow market status` and `loanflow book` show the prices the loans
acted on. Run twice, it finds its loans and only shows where they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from loanflow.loan_metadata import start_metadata
from loanflow.models import Borrower, LoanApplication, LoanState, LoanStatus
from loanflow.money import fmt_ratio, fmt_units, fmt_usd
from loanflow.prices.manual import manual_tick
from loanflow.prices.messages import LIVE_MONITOR_ID, ManualTick
from loanflow.prices.sources import Quote
from loanflow.settings import Settings

Say = Callable[[str], None]
# Two venues quoting the same price: the monitor's quorum, and a median that is the price.
VENUES = ("bitstamp", "coinbase")


@dataclass(frozen=True)
class DemoLoan:
    borrower: Borrower
    asset: str
    amount: Decimal
    principal: Decimal


LOANS = {
    "DEMO-1": DemoLoan(Borrower(id="B-001", name="Ada Lovelace", email="ada@example.com",
                                country="GB", timezone="Europe/London"),
                       "BTC", Decimal("1.00000000"), Decimal("40000.00")),
    "DEMO-2": DemoLoan(Borrower(id="B-002", name="Grace Hopper", email="grace@example.com",
                                country="US", timezone="America/New_York"),
                       "ETH", Decimal("20"), Decimal("24000.00")),
    "DEMO-3": DemoLoan(Borrower(id="B-003", name="Satoshi Ng", email="satoshi@example.com",
                                country="SG", timezone="Asia/Singapore"),
                       "BTC", Decimal("1.00000000"), Decimal("40000.00")),
}
OPENING = {"BTC": "100000", "ETH": "3000"}  # every loan starts at 40% LTV


def demo_application(loan_id: str) -> LoanApplication:
    loan = LOANS[loan_id]
    return LoanApplication(
        loan_id=loan_id, borrower=loan.borrower, principal_usd=loan.principal,
        collateral_asset=loan.asset, collateral_amount=loan.amount, term_days=180,
        annual_rate=Decimal("0.11"),
    )


class Market:
    """The demo's hand on the market: manual ticks of the desk's market monitor."""

    def __init__(self, client: Client, settings: Settings, say: Say, monitor_id: str) -> None:
        self.client, self.settings, self.say, self.monitor_id = client, settings, say, monitor_id

    async def move(self, asset: str, price: str) -> None:
        """The market at `price`: ticked again while the monitor holds it unconfirmed (a jump
        past its limit waits for a second observation, as a real crash does)."""
        for _ in range(3):
            quotes = [Quote(venue=venue, asset=asset, price=Decimal(price)) for venue in VENUES]
            summary = await manual_tick(self.client, ManualTick(quotes=quotes, assets=[asset]),
                                        task_queue=self.settings.market_queue,
                                        monitor_id=self.monitor_id)
            [tick] = summary.ticks
            if tick.observation is not None and not tick.unconfirmed:
                self.say(f"  market: {asset} {fmt_usd(tick.observation.price)} (observation "
                         f"#{tick.observation.observation_id}, {summary.signalled} loan(s) "
                         "signalled)")
                return
        raise RuntimeError(f"the market monitor did not take {asset} {price}: {tick.reasons}")


async def until(handle: WorkflowHandle[Any, Any], *states: LoanState, timeout: float = 60) -> LoanStatus:
    """Poll the status query until the loan reaches one of `states`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.query("status", result_type=LoanStatus)
        if status.state in states:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{handle.id} is {status.state.value}, expected {states}")
        await asyncio.sleep(0.25)


async def open_and_fund(client: Client, task_queue: str, loan_id: str) -> WorkflowHandle[Any, Any]:
    """Apply (the loan approves on the stored price) and deposit the collateral."""
    app = demo_application(loan_id)
    handle = await client.start_workflow("LoanWorkflow", app, id=f"loan-{loan_id}",
                                         task_queue=task_queue, **start_metadata(app))
    await until(handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": str(app.collateral_amount),
                                                    "tx_id": f"{loan_id}-deposit"})
    await until(handle, LoanState.ACTIVE)
    return handle


# The borrower's actions are told by the desk's narration (`loanflow.narration`), in the order
# the loans recorded them: said here too, they came before the call they answer.


async def repaid(handle: WorkflowHandle[Any, Any]) -> None:
    status = await handle.query("status", result_type=LoanStatus)
    await handle.execute_update("repay", {"amount_usd": format(status.debt_usd, "f"),
                                          "reference": "DEMO-1-wire"})
    await until(handle, LoanState.CLOSED)


async def cured(handle: WorkflowHandle[Any, Any], market: Market) -> None:
    await market.move("ETH", "1700")
    call = await until(handle, LoanState.MARGIN_CALL)
    assert call.cure_top_up is not None
    await handle.execute_update("top_up", {"amount": format(call.cure_top_up, "f"),
                                           "tx_id": "DEMO-2-topup"})
    await until(handle, LoanState.ACTIVE)


async def liquidated(handle: WorkflowHandle[Any, Any], market: Market) -> None:
    await market.move("BTC", "44000")  # DEMO-3 at 91% LTV: past the 90% hard floor
    await until(handle, LoanState.LIQUIDATING, LoanState.ACTIVE, LoanState.MARGIN_CALL)
    await until(handle, LoanState.ACTIVE, LoanState.CLOSED, LoanState.DEFAULTED)


async def exists(client: Client, loan_id: str) -> bool:
    try:
        await client.get_workflow_handle(f"loan-{loan_id}").describe()
        return True
    except RPCError:
        return False


async def play(client: Client, settings: Settings, say: Say, monitor_id: str) -> None:
    say("demo: three loans through their lives; prices move through the market monitor")
    market = Market(client, settings, say, monitor_id)
    for asset, price in OPENING.items():
        await market.move(asset, price)
    one, two, three = await asyncio.gather(
        *(open_and_fund(client, settings.task_queue, loan_id) for loan_id in LOANS))
    await repaid(one)
    await cured(two, market)
    await liquidated(three, market)


async def run_demo(client: Client, settings: Settings, say: Say = print, *,
                   monitor_id: str = LIVE_MONITOR_ID) -> None:
    if await exists(client, "DEMO-1"):
        say("demo loans already exist (DEMO-1..3): nothing to do; here they are:")
    else:
        await play(client, settings, say, monitor_id)
    for loan_id in LOANS:
        status = await client.get_workflow_handle(f"loan-{loan_id}").query(
            "status", result_type=LoanStatus
        )
        say(loan_line(status))


def loan_line(status: LoanStatus) -> str:
    """Where a demo loan is, for people: amounts formatted, never `0E-8` (a resumed demo once
    printed `collateral 0E-8 BTC` for a closed loan)."""
    return (f"  {status.loan_id}: {status.state.value:<12} LTV {fmt_ratio(status.ltv):>8}  "
            f"debt {fmt_usd(status.debt_usd)}  "
            f"collateral {fmt_units(status.collateral_asset, status.collateral_amount)}")
