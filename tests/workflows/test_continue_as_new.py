"""Continue-as-new keeps the loan identical: forced here with a low history limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from loanflow.models import LoanState
from tests.workflows.book import assert_books_agree
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state
from tests.workflows.test_validators import refused
from workflows.loan import LoanWorkflow

async def continued(desk: Desk, handle, first_run: str) -> bool:  # type: ignore[no-untyped-def]
    await desk.env.sleep(timedelta(seconds=1))
    return (await handle.describe()).run_id != first_run


# What must survive a new run unchanged (the price moves on purpose, so it is left out).
KEPT = ("state", "collateral_amount", "debt_usd", "principal_usd", "interest_usd",
        "deposit_address", "disbursed_at", "maturity", "required_collateral", "kyc_status")


async def test_loan_survives_continue_as_new(desk: Desk) -> None:
    handle = await active_loan(desk, "CAN1", history_limit=200)
    await handle.execute_update("top_up", {"amount": "0.25", "tx_id": "before-can"})
    await handle.execute_update("repay", {"amount_usd": "100.00", "reference": "wire-before"})
    before = (await desk.settle(handle)).model_dump(include=set(KEPT))
    first_run = (await handle.describe()).run_id

    # Quiet-market ticks (no band crossed) until the run has continued as new at least once.
    latest = desk.client.get_workflow_handle_for(LoanWorkflow.run, handle.id)
    for tick in range(400):
        await desk.price(handle, "BTC", str(100000 + tick % 7))
        # A burst of signals keeps the server refusing the continue-as-new (it must not drop
        # them); a pause lets it go through, as between real ticks.
        if tick % 20 == 19 and await continued(desk, latest, first_run):
            break
    assert (await latest.describe()).run_id != first_run, "expected a continue-as-new"

    after = (await desk.settle(latest)).model_dump(include=set(KEPT))
    assert after == before
    # Carried state still guards exactly-once: the old tx id and reference are still known.
    assert "tx_id" in await refused(latest, "top_up", {"amount": "0.25", "tx_id": "before-can"})
    assert "reference" in await refused(
        latest, "repay", {"amount_usd": "1.00", "reference": "wire-before"}
    )
    # And the loan goes on working: a margin call, then a repayment in full closes it.
    await called_then_repaid(desk, latest, "33000", "wire-after")  # 1.25 BTC vs ~$29.9k: 72.5%


async def called_then_repaid(desk: Desk, latest: Any, price: str, reference: str) -> None:
    """A continued loan still works: `price` opens a margin call, then a repayment of the
    whole debt closes the loan, and the books agree with it."""
    await desk.price(latest, "BTC", price)
    await wait_state(desk, latest, LoanState.MARGIN_CALL)
    debt = (await desk.status(latest)).debt_usd
    await latest.execute_update("repay", {"amount_usd": str(debt), "reference": reference})
    result = await latest.result()
    assert result.state == LoanState.CLOSED
    await assert_books_agree(desk.db, result)


async def test_waiting_loan_continues_as_new_too(desk: Desk) -> None:
    from tests.workflows.book import application

    app = application("CAN2", history_limit=200)
    handle = await desk.open(app)
    await desk.price(handle, "BTC", "100000")
    await wait_state(desk, handle, LoanState.AWAITING_COLLATERAL)
    first_run = (await handle.describe()).run_id
    latest = desk.client.get_workflow_handle_for(LoanWorkflow.run, handle.id)
    for tick in range(400):
        await desk.price(handle, "BTC", str(100000 + tick % 5))
        # A burst of signals keeps the server refusing the continue-as-new (it must not drop
        # them); a pause lets it go through, as between real ticks.
        if tick % 20 == 19 and await continued(desk, latest, first_run):
            break
    assert (await latest.describe()).run_id != first_run
    status = await desk.status(latest)
    assert status.state == LoanState.AWAITING_COLLATERAL and status.deposit_address
    await latest.execute_update("confirm_deposit", {"amount": "1", "tx_id": "late-deposit"})
    await wait_state(desk, latest, LoanState.ACTIVE)
    await desk.env.sleep(timedelta(seconds=1))
