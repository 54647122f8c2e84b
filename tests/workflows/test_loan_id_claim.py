"""A loan id names one loan for ever: a workflow started under the id of a loan that has ended
(the stock CLI's default id reuse policy allows it) refuses itself and does nothing, instead
of finding the earlier loan's effects done and carrying on as if they were its own."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle

from loanflow.models import LoanState
from loanflow.policy import PolicyOverrides
from loanflow.schema import LoanClaim, Loan
from tests.workflows.book import (BAD_POLICY, BORROWER, MALLORY, application, count,
                                  notices)
from tests.workflows.conftest import Desk
from tests.workflows.test_import import Ids, handle_of, ids, migrated, run_import  # noqa: F401
from tests.workflows.test_lifecycle import active_loan, wait_state
from workflows import base


async def books_of(desk: Desk, loan_id: str) -> tuple[Any, ...]:
    """What the desk holds of a loan: ledger entries, custody accounts, notices, and its row's
    state, borrower and version."""
    async with desk.db.sessions() as s:
        row = await s.get(Loan, loan_id)
    assert row is not None
    return (await count(desk.db, "ledger_entries", loan_id),
            await count(desk.db, "custody_accounts", loan_id),
            await notices(desk.db, loan_id), (row.state, row.borrower_id, row.version))


async def holder_of(desk: Desk, loan_id: str) -> str | None:
    """The run that holds a loan id's claim, None if no run does."""
    async with desk.db.sessions() as s:
        return await s.scalar(select(LoanClaim.run_id).where(LoanClaim.loan_id == loan_id))


async def repay_and_close(desk: Desk, handle: WorkflowHandle[Any, Any]) -> None:
    """Repay the loan in full: it closes and its workflow ends."""
    status = await desk.status(handle)
    assert await handle.execute_update(
        "repay", {"amount_usd": str(status.debt_usd), "reference": "wire-1"}) == "CLOSED"
    await handle.result()
    await desk.settle(handle)


async def repaid_loan(desk: Desk, loan_id: str) -> WorkflowHandle[Any, Any]:
    """A loan of BORROWER's, opened, repaid in full and closed; its workflow has ended."""
    handle = await active_loan(desk, loan_id)
    await repay_and_close(desk, handle)
    return handle


async def test_a_closed_loan_cannot_be_started_again_under_its_id(desk: Desk, ids: Ids) -> None:
    loan_id = ids("REUSE1")
    handle = await repaid_loan(desk, loan_id)
    before = await books_of(desk, loan_id)

    # Another borrower's application under the closed loan's id, started as the stock CLI
    # starts it (the server allows a new run once the first has closed).
    again = await desk.open(application(loan_id, borrower=MALLORY))
    result = await again.result()
    assert result.state == LoanState.REJECTED
    assert f"loan_id: {loan_id!r} belongs to an earlier loan" in (result.reason or "")
    assert handle.first_execution_run_id != again.first_execution_run_id
    await desk.settle(again)
    # Nothing written, booked or sent: the read model still shows the first loan, closed.
    assert await books_of(desk, loan_id) == before
    assert before[3][:2] == ("CLOSED", BORROWER.id)
    assert await holder_of(desk, loan_id) == handle.first_execution_run_id


@pytest.mark.parametrize("policy", [None, BAD_POLICY], ids=["as-imported", "bad-policy"])
async def test_an_ended_imported_loan_does_not_come_back(
    desk: Desk, ids: Ids, policy: PolicyOverrides | None
) -> None:
    loan_id = ids("REUSE2")
    now = await desk.now()
    loan = migrated(loan_id, now)
    await run_import(desk, [loan])
    handle = handle_of(desk, loan_id)
    await wait_state(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    await handle.terminate("ended by operations")
    before = await books_of(desk, loan_id)
    assert before[0] == 1 and before[2] == ["loan_migrated"]

    # Its own application again, by hand: it would adopt the migration record once more and
    # find its opening balances and deposit address done, ACTIVE with the old loan's debt.
    # With a bad policy it was rejected at once and mailed its borrower the rejection.
    again = await desk.open(loan.application().model_copy(update={"policy": policy}))
    result = await again.result()
    assert result.state == LoanState.REJECTED and result.debt_usd == Decimal(0)
    assert "belongs to an earlier loan" in (result.reason or "")
    await desk.settle(again)
    assert await books_of(desk, loan_id) == before


async def test_a_rejected_start_under_an_ended_loans_id_mails_no_one(
    desk: Desk, ids: Ids
) -> None:
    loan_id = ids("REUSE3")
    handle = await repaid_loan(desk, loan_id)
    before = await books_of(desk, loan_id)
    assert "application_rejected" not in before[2]

    # The same borrower's id with a policy the loan rejects itself for, by the stock CLI.
    # Rejected before it claimed, it scheduled an "application rejected" notice under the
    # closed loan's id, addressed from that loan's application: to its borrower.
    again = await desk.open(application(loan_id, policy=BAD_POLICY))
    result = await again.result()
    assert result.state == LoanState.REJECTED
    assert f"loan_id: {loan_id!r} belongs to an earlier loan" in (result.reason or "")
    await desk.settle(again)
    assert await books_of(desk, loan_id) == before
    assert handle.first_execution_run_id != again.first_execution_run_id


async def test_a_rejected_start_under_a_new_id_claims_it(desk: Desk, ids: Ids) -> None:
    loan_id = ids("REUSE4")
    handle = await desk.open(application(loan_id, policy=BAD_POLICY))
    result = await handle.result()
    assert result.state == LoanState.REJECTED and (result.reason or "").startswith("policy: ")
    await desk.settle(handle)
    assert await notices(desk.db, loan_id) == ["application_rejected"]
    assert await holder_of(desk, loan_id) == handle.first_execution_run_id


async def test_a_loan_started_before_claims_claims_its_id_with_its_next_write(
    backlog_desk: Desk, ids: Ids, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade: a loan onboarded by the code from before claims (its runs recorded with
    IMPORT_IN_ONE_TASK as their newest patch, its writes claiming nothing) claims its id for
    its first run with its first write on the new code, and once it has closed a start under
    its id is refused."""
    desk, loan_id = backlog_desk, ids("UPGRADE")
    # The old code, as far as claims go. The desk's workers cache no workflow: every task
    # replays the loan's history on the code of the moment, as after a deployment.
    monkeypatch.setattr(base, "LEVELS", base.LEVELS[base.LEVELS.index(base.IMPORT_IN_ONE_TASK):])
    monkeypatch.setattr(base.LoanBase, "_claim_run", lambda self: None)
    handle = await active_loan(desk, loan_id)
    await desk.settle(handle)
    assert await holder_of(desk, loan_id) is None
    async with desk.backlog():
        monkeypatch.undo()  # the upgrade
    await desk.price(handle, "BTC", "90000")  # a new LTV: the loan writes its read model
    await desk.settle(handle)
    assert await holder_of(desk, loan_id) == handle.first_execution_run_id

    await repay_and_close(desk, handle)
    again = await desk.open(application(loan_id, borrower=MALLORY))
    result = await again.result()
    assert result.state == LoanState.REJECTED
    assert f"loan_id: {loan_id!r} belongs to an earlier loan" in (result.reason or "")
