"""Loan ids claimed by their first workflow (`loanflow.schema.LoanClaim`): a loan id names one
loan for ever, whatever the Temporal server's id reuse policy lets a start do."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loanflow.db import dialect_name, inserts_of_new_rows
from loanflow.schema import LoanClaim, utcnow


async def claim(conn: AsyncConnection, loan_id: str, run_id: str, borrower_id: str) -> str:
    """Claim `loan_id` for `run_id` unless another run holds it; the run that holds it. Two
    statements, each safe alone: the insert does nothing if the id is held (a retry of this
    claim, or another run's), and the read answers who holds it."""
    await hold(conn, loan_id, run_id, borrower_id)
    return (await conn.execute(_HOLDER, {"loan_id": loan_id})).scalar_one()


async def hold(conn: AsyncConnection, loan_id: str, run_id: str, borrower_id: str) -> None:
    """Claim `loan_id` for `run_id` if no run holds it yet; nothing if one does."""
    await conn.execute(_INSERTS[dialect_name(conn)],
                       {"loan_id": loan_id, "run_id": run_id, "borrower_id": borrower_id,
                        "claimed_at": utcnow()})


# Built once: every new loan claims its id.
_INSERTS = inserts_of_new_rows(LoanClaim, LoanClaim.loan_id)
_HOLDER = select(LoanClaim.run_id).where(LoanClaim.loan_id == bindparam("loan_id"))
