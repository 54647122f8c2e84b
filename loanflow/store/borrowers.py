"""Borrowers' contact details as the loans recorded them (`record_loan` keeps them from the
application a loan opens with): notices carry only the borrower id and are addressed from here."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from loanflow.db import Database
from loanflow.models import Borrower
from loanflow.schema import BorrowerContact


async def find_borrower(db: Database, borrower_id: str) -> Borrower | None:
    """A borrower's contact details as last recorded; None if no loan of theirs opened yet."""
    async with db.engine.connect() as conn:
        row = (await conn.execute(_CONTACT, {"borrower_id": borrower_id})).first()
    if row is None:
        return None
    return Borrower(id=row.borrower_id, name=row.name, email=row.email, country=row.country,
                    timezone=row.timezone)


# Every notice is addressed here: one statement built once, columns rather than an ORM object
# (the ORM's identity map and session cost more than the read).
_CONTACT = select(
    BorrowerContact.borrower_id, BorrowerContact.name, BorrowerContact.email,
    BorrowerContact.country, BorrowerContact.timezone,
).where(BorrowerContact.borrower_id == bindparam("borrower_id"))
