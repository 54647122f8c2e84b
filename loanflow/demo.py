"""A short scripted demo: three loans through their lives on a running stack.

DEMO-1 is repaid and closed; DEMO-2 is margin-called and cured by a top-up; DEMO-3 is
liquidated when BTC crashes through its hard floor. Run twice, it finds its loans and only
shows where they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from loanflow.models import Borrower, LoanApplication, LoanState, LoanStatus
from loanflow.money import fmt_ratio, fmt_units, fmt_usd

Say = Callable[[str], None]

BORROWERS = {
    "DEMO-1": Borrower(id="B-001", name="Ada Lovelace", email="ada@example.com", country="GB",
                       timezone="Europe/London"),
    "DEMO-2": Borrower(id="B-002", name="Grace Hopper", email="grace@example.com", country="US",
                       timezone="America/New_York"),
    "DEMO-3": Borrower(id="B-003", name="Satoshi Ng", email="satoshi@example.com", country="SG",
                       timezone="Asia/Singapore"),
}


def demo_application(loan_id: str) -> LoanApplication:
    return LoanApplication(
        loan_id=loan_id,
        borrower=BORROWERS[loan_id],
        principal_usd=Decimal("40000.00"),
        collateral_asset="BTC",
        collateral_amount=Decimal("1.00000000"),
        term_days=180,
        annual_rate=Decimal("0.11"),
    )


def price(value: str) -> dict[str, str]:
    """A desk price observation for BTC, taken now."""
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"asset": "BTC", "price": value, "observed_at": now, "source": "demo"}


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


async def open_and_fund(client: Client, task_queue: str, loan_id: str, say: Say) -> WorkflowHandle[Any, Any]:
    app = demo_application(loan_id)
    handle = await client.start_workflow("LoanWorkflow", app, id=f"loan-{loan_id}", task_queue=task_queue)
    await handle.signal("price_update", price("100000"))
    await until(handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "1", "tx_id": f"{loan_id}-deposit"})
    status = await until(handle, LoanState.ACTIVE)
    say(f"  {loan_id}: disbursed $40,000.00 against 1 BTC at $100,000 (LTV {fmt_ratio(status.ltv)})")
    return handle


async def repaid(client: Client, task_queue: str, say: Say) -> None:
    handle = await open_and_fund(client, task_queue, "DEMO-1", say)
    status = await handle.query("status", result_type=LoanStatus)
    await handle.execute_update("repay", {"amount_usd": format(status.debt_usd, "f"),
                                          "reference": "DEMO-1-wire"})
    await until(handle, LoanState.CLOSED)
    say("  DEMO-1: repaid in full, collateral released: CLOSED")


async def cured(client: Client, task_queue: str, say: Say) -> None:
    handle = await open_and_fund(client, task_queue, "DEMO-2", say)
    await handle.signal("price_update", price("56000"))
    call = await until(handle, LoanState.MARGIN_CALL)
    assert call.cure_top_up is not None and call.cure_repay_usd is not None
    top_up = fmt_units("BTC", call.cure_top_up)
    say(f"  DEMO-2: BTC at $56,000, LTV {fmt_ratio(call.ltv)}: MARGIN_CALL, cure by "
        f"{top_up} or {fmt_usd(call.cure_repay_usd)} before {call.cure_deadline:%Y-%m-%d %H:%M} UTC")
    await handle.execute_update("top_up", {"amount": format(call.cure_top_up, "f"),
                                           "tx_id": "DEMO-2-topup"})
    status = await until(handle, LoanState.ACTIVE)
    say(f"  DEMO-2: topped up {top_up}, LTV {fmt_ratio(status.ltv)}: cured, ACTIVE")


async def liquidated(client: Client, task_queue: str, say: Say) -> None:
    handle = await open_and_fund(client, task_queue, "DEMO-3", say)
    await handle.signal("price_update", price("44000"))
    await until(handle, LoanState.LIQUIDATING, LoanState.ACTIVE, LoanState.MARGIN_CALL)
    status = await until(handle, LoanState.ACTIVE, LoanState.CLOSED, LoanState.DEFAULTED)
    say(f"  DEMO-3: BTC crashed to $44,000 (LTV past the 90% hard floor): liquidated to "
        f"LTV {fmt_ratio(status.ltv)}, {fmt_units('BTC', status.collateral_amount)} left, "
        f"{status.state.value}")


async def exists(client: Client, loan_id: str) -> bool:
    try:
        await client.get_workflow_handle(f"loan-{loan_id}").describe()
        return True
    except RPCError:
        return False


async def run_demo(client: Client, task_queue: str, say: Say = print) -> None:
    if await exists(client, "DEMO-1"):
        say("demo loans already exist (DEMO-1..3): nothing to do; here they are:")
    else:
        say("demo: three loans through their lives")
        await asyncio.gather(
            repaid(client, task_queue, say),
            cured(client, task_queue, say),
            liquidated(client, task_queue, say),
        )
    for loan_id in BORROWERS:
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
