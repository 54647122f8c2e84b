"""The one place a stress run touches the book importer: reading an import file, and starting
the book ACTIVE on the private server (dates shifted onto its clock)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from loanflow.db import Database
from loanflow.policy import PolicyOverrides
from loanflow.stress.book import BookLoan, BookSpecError, starting_ltv
from loanflow.stress.clock import Clock

from loanflow.book_import import BookError, ImportedLoan, import_book, read_book


def read(path: Path, first_prices: Mapping[str, Decimal]) -> list[BookLoan]:
    """An import file (CSV or JSON) as a stress book; each loan's bucket is its LTV at the
    window's first price."""
    try:
        imported = read_book(path)
    except BookError as err:
        raise BookSpecError(f"--book: {err}") from None
    loans = []
    for x in imported:
        if x.collateral_asset not in first_prices:
            raise BookSpecError(f"--book: loan {x.loan_id}: no {x.collateral_asset} prices "
                                f"in the window")
        loan = BookLoan(
            loan_id=x.loan_id, borrower_id=x.borrower_id, borrower_name=x.borrower_name,
            borrower_email=x.borrower_email, borrower_country=x.borrower_country,
            collateral_asset=x.collateral_asset, collateral_amount=x.collateral_amount,
            principal_usd=x.principal_usd, annual_rate=x.annual_rate,
            originated_at=x.originated_at, maturity_at=x.maturity_at, ltv0=Decimal(0),
            accrued_interest_usd=x.accrued_interest_usd,
        )
        loans.append(replace(loan, ltv0=starting_ltv(loan, first_prices[x.collateral_asset])))
    return loans


async def start(
    client: Client, db: Database, loans: Sequence[BookLoan], clock: Clock, *, task_queue: str,
    policy: PolicyOverrides | None, on_progress: Callable[..., Any] | None = None,
) -> Any:
    """Start `loans` ACTIVE through the importer, their dates on the server's clock."""
    imported = [
        ImportedLoan(
            loan_id=x.loan_id, borrower_id=x.borrower_id, borrower_name=x.borrower_name,
            borrower_email=x.borrower_email, borrower_country=x.borrower_country,
            collateral_asset=x.collateral_asset, collateral_amount=x.collateral_amount,
            principal_usd=x.principal_usd, accrued_interest_usd=x.accrued_interest_usd,
            annual_rate=x.annual_rate, originated_at=clock.to_server(x.originated_at),
            maturity_at=clock.to_server(x.maturity_at),
        )
        for x in loans
    ]
    return await import_book(client, db, imported, task_queue=task_queue, policy=policy,
                             memo={"search_attributes": False}, on_progress=on_progress)
