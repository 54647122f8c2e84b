"""Revision 0004 fills the borrowers table from the applications the read model holds, so the
notices of loans opened before it are still addressed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from loanflow.db import Database
from loanflow.migrations import current, head, upgrade
from loanflow.models import Borrower
from loanflow.schema import Loan
from loanflow.store.borrowers import find_borrower

AT = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def loan(loan_id: str, minutes: int, application: dict[str, Any] | None) -> Loan:
    return Loan(loan_id=loan_id, version=1, borrower_id="B-7", state="ACTIVE",
                collateral_asset="ETH", collateral_amount=Decimal("20"),
                principal_usd=Decimal("20000.00"), debt_usd=Decimal("20000.00"), ltv=None,
                cure_deadline=None, updated_at=AT + timedelta(minutes=minutes),
                application=application)


def applied(borrower_id: str, email: str) -> dict[str, Any]:
    return {"loan_id": "x", "borrower": {"id": borrower_id, "name": "Grace Hopper",
                                         "email": email, "country": "US"}}


async def test_contacts_come_from_the_stored_applications(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url, "0004")
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            session.add_all([
                loan("OLD", 1, applied("B-7", "grace@old.example")),
                loan("NEW", 2, applied("B-7", "grace@new.example")),
                loan("NONE", 3, None),
                loan("ODD", 4, {"borrower": "not a borrower"}),
                loan("ADA", 5, applied("B-8", "ada@example.com")),
            ])
        await asyncio.to_thread(upgrade, db_url)
        assert current(db_url) == head()
        assert await find_borrower(db, "B-7") == Borrower(
            id="B-7", name="Grace Hopper", email="grace@new.example", country="US")
        found = await find_borrower(db, "B-8")
        assert found is not None and found.email == "ada@example.com"
    finally:
        await db.dispose()
