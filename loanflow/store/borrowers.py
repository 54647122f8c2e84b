"""Where a loan's notices go: the contact details of the loan's own application, as its first
read-model write recorded them (`loans.application`). Notices carry only the borrower id, so
no name or e-mail is in a loan's history; the notice activity reads them here.

Why the loan's own application and not the borrower's latest details: the `borrowers` table is
keyed by borrower id and the newest application wins there. Addressed from it, one application
under an existing borrower's id (an operator's typo, or anyone who can start a workflow with the
stock CLI) would send that borrower's margin calls and sales, with their amounts, collateral
and deadlines, to the new application's address, even if that application were rejected. A
loan's own application is the contract its borrower signed; no other loan can change it.
`borrowers` is read only for a loan whose record holds no application."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loanflow.db import Database
from loanflow.models import Borrower
from loanflow.schema import BorrowerContact, Loan


async def find_contact(db: Database | AsyncConnection, loan_id: str) -> Borrower | None:
    """The contact details loan `loan_id` opened with; None while its first read-model write
    has not landed (it records them). Read on a connection of its own, or in the caller's
    transaction (a loan's write addressing its notices sees its own first snapshot)."""
    if isinstance(db, Database):
        async with db.engine.connect() as conn:
            return await find_contact(conn, loan_id)
    row = (await db.execute(_APPLICATION, {"loan_id": loan_id})).first()
    if row is None:
        return None
    return _applicant(row.application) or await _latest(db, row.borrower_id)


async def find_borrower(db: Database, borrower_id: str) -> Borrower | None:
    """A borrower's contact details as last recorded; None if no loan of theirs opened yet."""
    async with db.engine.connect() as conn:
        return await _latest(conn, borrower_id)


def _applicant(application: dict[str, Any] | None) -> Borrower | None:
    """The borrower an application names; None if it names none that validates (a row
    written by hand, say): the caller falls back to the borrower's recorded details."""
    borrower = (application or {}).get("borrower")
    if not isinstance(borrower, dict):
        return None
    try:
        return Borrower.model_validate(borrower)
    except ValidationError:
        return None


async def _latest(conn: AsyncConnection, borrower_id: str) -> Borrower | None:
    row = (await conn.execute(_CONTACT, {"borrower_id": borrower_id})).first()
    if row is None:
        return None
    return Borrower(id=row.borrower_id, name=row.name, email=row.email, country=row.country,
                    timezone=row.timezone)


# Every notice is addressed here: statements built once, columns rather than ORM objects (the
# ORM's identity map and session cost more than the read).
_APPLICATION = select(Loan.borrower_id, Loan.application).where(
    Loan.loan_id == bindparam("loan_id"))
_CONTACT = select(
    BorrowerContact.borrower_id, BorrowerContact.name, BorrowerContact.email,
    BorrowerContact.country, BorrowerContact.timezone,
).where(BorrowerContact.borrower_id == bindparam("borrower_id"))
