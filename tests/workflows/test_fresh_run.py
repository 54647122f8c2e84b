"""The run that onboarded a loan continues as new once the loan is ACTIVE and the run's effects
have landed (patch `issue12-fresh-run-once-serving`): the run a worker keeps cached for the
loan's servicing starts from the loan's file, not from its onboarding's history. Nothing is
lost or done twice across the change of run, and the continued run writes nothing that its
previous run had just written."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from bench.histories import whole_history, workflow_cost
from loanflow.models import LoanState
from loanflow.schema import Loan
from tests.workflows.book import notices, table
from tests.workflows.conftest import Desk
from tests.workflows.test_continue_as_new import called_then_repaid
from tests.workflows.test_import import Ids, ids  # noqa: F401
from tests.workflows.test_lifecycle import active_loan
from tests.workflows.test_one_publish import imported_with_a_stored_price, writes_per_task
from workflows.loan import LoanWorkflow

# Every notice of onboarding, once each (the test's application needs no KYC review).
ONBOARDING = ["application_received", "kyc_approved", "deposit_instructions",
              "collateral_received", "loan_disbursed"]


async def event_types(handle: Any) -> list[int]:
    return [event.event_type async for event in handle.fetch_history_events()]


async def test_an_onboarded_loan_continues_as_new_once_active(desk: Desk, ids: Ids) -> None:
    loan_id = ids("FR1")
    handle = await active_loan(desk, loan_id)
    status = await desk.settle(handle)
    first = desk.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    latest = desk.client.get_workflow_handle_for(LoanWorkflow.run, handle.id)

    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    described = await latest.describe()
    assert described.run_id != handle.first_execution_run_id
    assert described.status == WorkflowExecutionStatus.RUNNING
    # The first run continued only once every notice of onboarding had gone out: each once.
    assert await notices(desk.db, loan_id) == ONBOARDING
    first_events = await event_types(first)
    assert first_events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    # The continued run holds a handful of events and wrote nothing: what the loan shows
    # was written by the run before it (one read-model version per write, none lost).
    latest_events = await event_types(latest)
    assert len(latest_events) <= 12 < len(first_events)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in latest_events
    assert sum(await writes_per_task(latest)) == 0
    # What the benchmark counts as onboarding one loan is both runs' events.
    cost = await workflow_cost(desk.client, handle.id, whole_history)
    assert cost["history_events"] == len(first_events) + len(latest_events)
    async with desk.db.sessions() as s:
        row = await s.get(Loan, loan_id)
    assert row is not None and row.version == sum(await writes_per_task(first))
    assert (row.state, row.debt_usd, row.collateral_amount) == ("ACTIVE", Decimal("30000.00"),
                                                               Decimal("1"))
    # The loan as the application and deposit made it, carried over whole.
    assert (status.state, status.principal_usd, status.collateral_amount) == (
        LoanState.ACTIVE, Decimal("30000.00"), Decimal("1"))
    assert status.deposit_address and status.disbursed_at and status.maturity

    # It goes on serving in the new run: a margin call, then a repayment in full closes it.
    await called_then_repaid(desk, latest, "42000", "fr-wire")  # 1 BTC against $30k: 71.4%
    await desk.settle(latest)
    assert await notices(desk.db, loan_id) == [*ONBOARDING, "margin_call", "repayment_received",
                                               "loan_closed"]
    payouts = table("payouts")
    async with desk.db.sessions() as s:
        paid = (await s.execute(select(payouts.c.purpose)
                                .where(payouts.c.loan_id == loan_id))).scalars().all()
    assert list(paid) == ["disbursement"]  # disbursed once, across both runs


async def test_an_imported_loan_keeps_its_run(desk: Desk, ids: Ids) -> None:
    """An imported loan's run is short already (no onboarding): it does not continue."""
    handle = await imported_with_a_stored_price(desk, ids("FR2"))
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    started = [event async for event in handle.fetch_history_events()][0]
    assert not started.workflow_execution_started_event_attributes.continued_execution_run_id
