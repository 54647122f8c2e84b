"""TEST DOUBLE of helper "import"'s `loanflow.book_import` (same names, same call), used by
`loanflow.stress.importing` until that module is merged. DELETE when it is.

It starts a loan ACTIVE by handing `LoanWorkflow` a loan file already in the serving step (the
shape continue-as-new uses) and books the opening collateral and receivable, which is roughly
what the importer does; the real one validates rows, is idempotent, and may differ."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities.ledger import post_entry
from loanflow import ledger
from loanflow.db import Database
from loanflow.models import Borrower, LoanApplication, LoanState
from loanflow.policy import PolicyOverrides, RiskPolicy
from workflows.loan import LoanWorkflow
from workflows.loan_file import STEPS, LoanFile


class BookError(ValueError):
    pass


@dataclass(frozen=True)
class ImportedLoan:
    loan_id: str
    borrower_id: str
    borrower_name: str
    borrower_email: str
    borrower_country: str
    collateral_asset: str
    collateral_amount: Decimal
    principal_usd: Decimal
    annual_rate: Decimal
    originated_at: datetime
    maturity_at: datetime
    accrued_interest_usd: Decimal = Decimal(0)


@dataclass
class ImportReport:
    started: int = 0
    already_present: int = 0


def read_book(path: Path) -> list[ImportedLoan]:
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
    else:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    try:
        return [_loan(row) for row in rows]
    except (KeyError, ArithmeticError, ValueError) as err:
        raise BookError(f"{path}: {err}") from None


def _loan(row: dict[str, Any]) -> ImportedLoan:
    def when(name: str) -> datetime:
        return datetime.fromisoformat(str(row[name]).replace("Z", "+00:00"))

    return ImportedLoan(
        loan_id=row["loan_id"], borrower_id=row["borrower_id"],
        borrower_name=row["borrower_name"], borrower_email=row["borrower_email"],
        borrower_country=row["borrower_country"], collateral_asset=row["collateral_asset"],
        collateral_amount=Decimal(str(row["collateral_amount"])),
        principal_usd=Decimal(str(row["principal_usd"])),
        accrued_interest_usd=Decimal(str(row.get("accrued_interest_usd") or 0)),
        annual_rate=Decimal(str(row["annual_rate"])),
        originated_at=when("originated_at"), maturity_at=when("maturity_at"),
    )


async def import_book(
    client: Client, db: Database, loans: Sequence[ImportedLoan], *, task_queue: str,
    policy: PolicyOverrides | None = None, memo: dict[str, Any] | None = None,
    on_progress: Callable[..., Any] | None = None,
) -> ImportReport:
    report = ImportReport()
    for loan in loans:
        await _book_opening(db, loan)
        app = _application(loan, policy)
        await client.start_workflow(LoanWorkflow.run, app, id=f"loan-{loan.loan_id}",
                                    task_queue=task_queue, memo=memo or {})
        report.started += 1
        if on_progress is not None:
            on_progress(report.started, len(loans))
    return report


def _application(loan: ImportedLoan, policy: PolicyOverrides | None) -> LoanApplication:
    app = LoanApplication(
        loan_id=loan.loan_id,
        borrower=Borrower(id=loan.borrower_id, name=loan.borrower_name,
                          email=loan.borrower_email, country=loan.borrower_country),
        principal_usd=loan.principal_usd, collateral_asset=loan.collateral_asset,
        collateral_amount=loan.collateral_amount,
        term_days=max((loan.maturity_at - loan.originated_at).days, 1),
        annual_rate=loan.annual_rate, policy=policy,
    )
    rules = policy.apply(RiskPolicy()) if policy else RiskPolicy()
    file = LoanFile.open(app, rules, loan.originated_at).model_copy(update={
        "state": LoanState.ACTIVE, "step": STEPS.index("serve"), "kyc_status": "approved",
        "collateral": loan.collateral_amount, "principal": loan.principal_usd,
        "interest": loan.accrued_interest_usd, "interest_through": loan.originated_at,
        "disbursed_at": loan.originated_at, "maturity": loan.maturity_at,
    })
    return app.model_copy(update={"resume": file.model_dump(mode="json")})


async def _book_opening(db: Database, loan: ImportedLoan) -> None:
    asset, amount = loan.collateral_asset, loan.collateral_amount
    async with db.transaction() as session:
        await post_entry(session, key=f"{loan.loan_id}:import", loan_id=loan.loan_id,
                         memo="imported", lines=[
                             ledger.debit(ledger.custody(asset), asset, amount),
                             ledger.credit(ledger.collateral(loan.loan_id), asset, amount),
                             ledger.debit(ledger.receivable(loan.loan_id), "USD",
                                          loan.principal_usd),
                             ledger.credit(ledger.CASH, "USD", loan.principal_usd),
                         ])
