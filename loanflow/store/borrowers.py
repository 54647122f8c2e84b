"""Borrowers' contact details as the loans recorded them (`record_loan` keeps them from the
application a loan opens with): notices carry only the borrower id and are addressed from here."""

from __future__ import annotations

from loanflow.db import Database
from loanflow.models import Borrower
from loanflow.schema import BorrowerContact


async def find_borrower(db: Database, borrower_id: str) -> Borrower | None:
    """A borrower's contact details as last recorded; None if no loan of theirs opened yet."""
    async with db.transaction() as session:
        row = await session.get(BorrowerContact, borrower_id)
    if row is None:
        return None
    return Borrower(id=row.borrower_id, name=row.name, email=row.email, country=row.country,
                    timezone=row.timezone)
