"""Revision 0007 claims the ids of the loans that have ended, so that none of them can be
started again under its id; running loans are left to claim their own."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from loanflow.db import Database
from loanflow.migrations import current, head, upgrade
from loanflow.schema import LoanClaim
from tests.migrations.test_borrowers_backfill import loan


async def test_ended_loans_are_claimed_and_running_ones_are_not(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url, "0006")
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            for n, state in enumerate(("CLOSED", "REJECTED", "CANCELLED", "DEFAULTED",
                                       "ACTIVE", "KYC_REVIEW", "MARGIN_CALL")):
                row = loan(f"L-{state}", n, None)
                row.state = state
                session.add(row)
        await asyncio.to_thread(upgrade, db_url)
        assert current(db_url) == head()
        async with db.sessions() as session:
            claims = (await session.execute(select(LoanClaim.loan_id, LoanClaim.run_id,
                                                   LoanClaim.borrower_id))).all()
        assert sorted(claims) == [(f"L-{state}", "", "B-7") for state in
                                  ("CANCELLED", "CLOSED", "DEFAULTED", "REJECTED")]
    finally:
        await db.dispose()
