"""Reading back what a loan did, from the database: notices, sales, ledger, audit trail."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from loanflow import ledger
from loanflow.db import Base, Database
from loanflow.models import Borrower, LoanApplication, LoanStatus
from loanflow.policy import PolicyOverrides
from loanflow.store.ledger import account_balances, check_book

BORROWER = Borrower(id="B-100", name="Ada Lovelace", email="ada@example.com", country="GB")
# Someone else, applying under a loan id or a borrower id that is not theirs.
MALLORY = Borrower(id="B-666", name="Mallory", email="mallory@example.net", country="US")
# A policy a loan started now rejects itself for (`loanflow open` would refuse it first): a
# sale sized to a negative LTV would sell all the collateral.
BAD_POLICY = PolicyOverrides(post_liquidation_ltv=Decimal("-0.5"))


def application(loan_id: str, **overrides: Any) -> LoanApplication:
    """A standard application: $30,000 against 1 BTC for a year at 12%."""
    values: dict[str, Any] = {
        "loan_id": loan_id,
        "borrower": BORROWER,
        "principal_usd": Decimal("30000.00"),
        "collateral_asset": "BTC",
        "collateral_amount": Decimal("1"),
        "term_days": 365,
        "annual_rate": Decimal("0.12"),
    }
    values.update(overrides)
    return LoanApplication(**values)


def table(name: str) -> Any:
    import loanflow.notice_schema  # noqa: F401
    import loanflow.schema  # noqa: F401

    return Base.metadata.tables[name]


async def notices(db: Database, loan_id: str, kind: str | None = None) -> list[str]:
    """The kinds of notices recorded for a loan, in the order they were recorded."""
    t = table("notices")
    query = select(t.c.kind).where(t.c.loan_id == loan_id).order_by(t.c.created_at, t.c.key)
    if kind is not None:
        query = query.where(t.c.kind == kind)
    async with db.sessions() as s:
        return list((await s.execute(query)).scalars())


async def notice_data(db: Database, loan_id: str, kind: str) -> list[dict[str, Any]]:
    """The figures of a loan's notices of one kind, in the order they were recorded."""
    t = table("notices")
    query = (select(t.c.data).where(t.c.loan_id == loan_id, t.c.kind == kind)
             .order_by(t.c.created_at, t.c.key))
    async with db.sessions() as s:
        return list((await s.execute(query)).scalars())


async def count(db: Database, table_name: str, loan_id: str) -> int:
    t = table(table_name)
    async with db.sessions() as s:
        return (await s.execute(select(func.count()).where(t.c.loan_id == loan_id))).scalar_one()


async def sales(db: Database, loan_id: str) -> list[Any]:
    t = table("exchange_orders")
    async with db.sessions() as s:
        return list((await s.execute(select(t).where(t.c.loan_id == loan_id))).all())


async def audit_kinds(db: Database, loan_id: str) -> list[str]:
    t = table("audit_log")
    async with db.sessions() as s:
        rows = await s.execute(select(t.c.kind).where(t.c.loan_id == loan_id).order_by(t.c.id))
        return list(rows.scalars())


async def assert_books_agree(db: Database, status: LoanStatus) -> None:
    """The whole ledger balances, and this loan's accounts agree with the loan's own state."""
    async with db.sessions() as s:
        assert await check_book(s) == []
        balances = await account_balances(s)
    loan = status.loan_id
    receivable = balances.get((ledger.receivable(loan), "USD"), Decimal(0))
    held = -balances.get((ledger.collateral(loan), status.collateral_asset), Decimal(0))
    owed = status.principal_usd + status.interest_usd + status.fees_usd
    if status.state.value in ("DEFAULTED", "CLOSED", "CANCELLED", "REJECTED"):
        owed = Decimal(0)
    assert receivable == owed, f"ledger receivable {receivable} != loan debt {owed}"
    assert held == status.collateral_amount, f"ledger collateral {held} != {status.collateral_amount}"
