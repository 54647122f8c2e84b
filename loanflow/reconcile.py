"""Reconciling the loans read model with the loans themselves (`loanflow book reconcile`).

The workflow is the truth; the `loans` row is what it last published. A row can drift: a write
from a workflow task that failed and was never retried, an operator's hand edit, a restore. The
market monitor picks warning and call targets from these rows, so drift can hide a loan from a
crash. Reconciling asks every loan in the read model for its `status` and rewrites the rows that
disagree, keeping their version so the loan's own next publish still wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from loanflow.db import Database
from loanflow.models import LoanStatus
from loanflow.schema import Loan

# The read model's columns that must agree with the loan's status, and how to read each from it.
COMPARED: dict[str, Callable[[LoanStatus], Any]] = {
    "state": lambda s: s.state.value,
    "collateral_amount": lambda s: s.collateral_amount,
    "principal_usd": lambda s: s.principal_usd,
    "cure_deadline": lambda s: s.cure_deadline,
    "warning_price": lambda s: s.trigger_prices.get("warning"),
    "margin_call_price": lambda s: s.trigger_prices.get("margin_call"),
    "liquidation_price": lambda s: s.trigger_prices.get("liquidation"),
    "cure_price": lambda s: s.trigger_prices.get("cure"),
}
CONCURRENCY = 20

Status = Callable[[str], Awaitable[LoanStatus | None]]


@dataclass
class Drift:
    loan_id: str
    # column -> [read model, loan]
    fields: dict[str, list[Any]] = field(default_factory=dict)
    repaired: bool = False


@dataclass
class Reconciliation:
    checked: int = 0
    unreachable: list[str] = field(default_factory=list)
    drifted: list[Drift] = field(default_factory=list)
    dry_run: bool = False


def differences(row: Loan, status: LoanStatus) -> dict[str, list[Any]]:
    found = {}
    for column, read in COMPARED.items():
        stored, truth = getattr(row, column), read(status)
        if not same(stored, truth):
            found[column] = [stored, truth]
    return found


def same(stored: Any, truth: Any) -> bool:
    if isinstance(stored, Decimal) and isinstance(truth, Decimal):
        return stored == truth
    if isinstance(stored, datetime) and isinstance(truth, datetime):
        return stored == truth
    return bool(stored == truth)


async def reconcile(db: Database, status_of: Status, *, dry_run: bool) -> Reconciliation:
    """Compare every loan row with its loan's status; rewrite the rows that differ unless
    `dry_run`. `status_of` returns None for a loan that cannot answer (no such workflow)."""
    async with db.transaction() as session:
        rows = list(await session.scalars(select(Loan).order_by(Loan.loan_id)))
    result = Reconciliation(checked=len(rows), dry_run=dry_run)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def check(row: Loan) -> None:
        async with limit:
            status = await status_of(row.loan_id)
        if status is None:
            result.unreachable.append(row.loan_id)
            return
        found = differences(row, status)
        if found:
            drift = Drift(row.loan_id, found)
            if not dry_run:
                drift.repaired = await repair(db, row, status)
            result.drifted.append(drift)

    await asyncio.gather(*(check(row) for row in rows))
    result.drifted.sort(key=lambda d: d.loan_id)
    result.unreachable.sort()
    return result


async def repair(db: Database, row: Loan, status: LoanStatus) -> bool:
    """Rewrite the row from the loan's status, only if the loan has not published since it
    was read (same version): a newer snapshot is the loan's own word and stands."""
    values = {column: read(status) for column, read in COMPARED.items()}
    values["ltv"] = status.ltv if status.ltv is not None and status.ltv.is_finite() else None
    values["debt_usd"] = status.debt_usd
    async with db.transaction() as session:
        done = await session.execute(
            update(Loan).where(Loan.loan_id == row.loan_id, Loan.version == row.version)
            .values(**values)
        )
    return bool(done.rowcount)
