"""Bad input is refused before anything is recorded, with a message that names the field, and the
loan is left exactly as it was."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from loanflow.models import LoanState
from tests.workflows.book import audit_kinds, count, notices
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state


async def refused(handle: WorkflowHandle[Any, Any], update: str, payload: Any) -> str:
    """Send an update that must be refused; the refusal's message."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(update, payload)
    return str(info.value.cause)


async def snapshot(desk: Desk, handle: WorkflowHandle[Any, Any]) -> tuple[Any, ...]:
    status = await desk.settle(handle)
    loan = status.loan_id
    return (
        status.model_dump(),
        await count(desk.db, "custody_transfers", loan),
        await count(desk.db, "ledger_entries", loan),
        len(await notices(desk.db, loan)),
        len(await audit_kinds(desk.db, loan)),
    )


@pytest.mark.parametrize(
    ("update", "payload", "field"),
    [
        ("top_up", {"amount": "-1", "tx_id": "t1"}, "amount"),
        ("top_up", {"amount": "0", "tx_id": "t1"}, "amount"),
        ("top_up", {"amount": "abc", "tx_id": "t1"}, "amount"),
        ("top_up", {"amount": "0.000000001", "tx_id": "t1"}, "amount"),  # finer than a satoshi
        ("top_up", {"amount": "1"}, "tx_id"),
        ("top_up", {"amount": "1", "tx_id": "t1", "asset": "ETH"}, "asset"),
        ("repay", {"amount_usd": "-5", "reference": "r"}, "amount_usd"),
        ("repay", {"amount_usd": "10.001", "reference": "r"}, "amount_usd"),
        ("repay", {"amount_usd": "99999999", "reference": "r"}, "amount_usd"),  # above the debt
        ("repay", {"amount_usd": "10"}, "reference"),
        ("extend_cure", {"hours": 5, "reason": "x", "operator": "o"}, "extend_cure"),  # no call
        ("kyc_decision", {"approved": True, "reviewer": "r", "reason": "x"}, "KYC decision"),
        ("confirm_deposit", {"amount": "1", "tx_id": "t9"}, "confirm_deposit"),  # already active
    ],
)
async def test_bad_update_is_refused_naming_the_field_and_changes_nothing(
    desk: Desk, update: str, payload: dict[str, Any], field: str
) -> None:
    handle = await active_loan(desk, "V1")
    before = await snapshot(desk, handle)
    message = await refused(handle, update, payload)
    assert field in message, message
    assert await snapshot(desk, handle) == before


async def test_a_tx_id_counts_once(desk: Desk) -> None:
    handle = await active_loan(desk, "V2")
    await handle.execute_update("top_up", {"amount": "0.1", "tx_id": "chain-tx-7"})
    before = await snapshot(desk, handle)
    message = await refused(handle, "top_up", {"amount": "0.1", "tx_id": "chain-tx-7"})
    assert "tx_id" in message and "already" in message
    # the deposit's tx id is taken too
    assert "tx_id" in await refused(handle, "top_up", {"amount": "1", "tx_id": "V2-tx1"})
    assert await snapshot(desk, handle) == before


async def test_price_for_the_wrong_asset_is_ignored(desk: Desk) -> None:
    handle = await active_loan(desk, "V3")
    before = await desk.status(handle)
    await handle.signal("price_update", {"asset": "ETH", "price": "1", "observed_at":
                                         (await desk.now()).isoformat()})
    await handle.signal("price_update", {"asset": "BTC", "price": "-3", "observed_at":
                                         (await desk.now()).isoformat()})
    await desk.env.sleep(timedelta(seconds=1))
    after = await desk.status(handle)
    assert after.state == LoanState.ACTIVE and after.price == before.price


async def test_repayment_on_a_closed_loan_is_refused(desk: Desk) -> None:
    handle = await active_loan(desk, "V4")
    debt = (await desk.status(handle)).debt_usd
    assert await handle.execute_update("repay", {"amount_usd": str(debt), "reference": "all"}) == "CLOSED"
    closed = await handle.result()
    entries = await count(desk.db, "ledger_entries", "V4")
    # A closed loan's workflow has completed: Temporal itself refuses the update (the dev server
    # says "workflow execution already completed"; the time-skipping server "update not found").
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update("repay", {"amount_usd": "1.00", "reference": "late"})
    assert await count(desk.db, "ledger_entries", "V4") == entries
    assert (await desk.status(handle)) == closed


async def test_decision_on_a_loan_not_in_review_is_refused(desk: Desk) -> None:
    handle = await active_loan(desk, "V5")
    message = await refused(handle, "kyc_decision", {"approved": False, "reviewer": "r", "reason": "x"})
    assert "not waiting for a KYC decision" in message
    assert (await desk.status(handle)).state == LoanState.ACTIVE


async def test_extension_beyond_the_limit_is_refused(desk: Desk) -> None:
    handle = await active_loan(desk, "V6")
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    message = await refused(handle, "extend_cure", {"hours": 1000, "reason": "x", "operator": "o"})
    assert "hours" in message
    message = await refused(handle, "extend_cure", {"hours": 5, "reason": "", "operator": "o"})
    assert "reason" in message
