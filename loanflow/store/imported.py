"""Migrated loans' rows: what `loanflow book import` writes (`add_imported_loans`, after
checking `imported_loans` and `known_loans`), and what an imported loan reads back through the
`imported_loan` activity (its trusted opening figures)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loanflow.imported import ImportedLoan
from loanflow.money import tidy
from loanflow.schema import ImportedLoanRow, Loan

# Loan ids per `IN (...)` query: far below every database's limit on bound parameters.
CHUNK = 500
FIELDS = tuple(ImportedLoan.model_fields)


def as_model(row: ImportedLoanRow) -> ImportedLoan:
    """The stored record; amounts as written (PostgreSQL pads NUMERIC to 18 places)."""
    values = {name: getattr(row, name) for name in FIELDS}
    return ImportedLoan.model_validate(
        {k: tidy(v) if isinstance(v, Decimal) else v for k, v in values.items()}
    )


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


async def imported_loan(conn: AsyncConnection, loan_id: str) -> ImportedLoan | None:
    """One loan's migration record, on the caller's connection (columns, not an ORM object:
    every imported loan opens with this read)."""
    row = (await conn.execute(_ONE, {"loan_id": loan_id})).first()
    return None if row is None else as_model(row)


_ONE = select(*(getattr(ImportedLoanRow, name) for name in FIELDS)).where(
    ImportedLoanRow.loan_id == bindparam("loan_id"))


async def imported_loans(session: AsyncSession, ids: Sequence[str]) -> dict[str, ImportedLoan]:
    """The stored migration records of these loan ids, by id."""
    found: dict[str, ImportedLoan] = {}
    for part in _chunks(ids):
        rows = await session.scalars(select(ImportedLoanRow).where(ImportedLoanRow.loan_id.in_(part)))
        found.update((row.loan_id, as_model(row)) for row in rows)
    return found


async def known_loans(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Which of these loan ids the desk's read model already has."""
    known: set[str] = set()
    for part in _chunks(ids):
        known.update(await session.scalars(select(Loan.loan_id).where(Loan.loan_id.in_(part))))
    return known


async def add_imported_loans(session: AsyncSession, loans: Sequence[ImportedLoan]) -> None:
    """Insert migration records (one multi-row statement per chunk, in the caller's
    transaction). A loan id stored meanwhile by another import fails the whole transaction."""
    for start in range(0, len(loans), CHUNK):
        rows = [loan.model_dump() for loan in loans[start:start + CHUNK]]
        await session.execute(insert(ImportedLoanRow), rows)
