"""A loan migrated from another system (`loanflow book import`): it starts ACTIVE.

Its start input is the public `LoanApplication` marked `origin: "import"`; the input carries no
state. The figures come from the loan's migration record, which `loanflow book import` wrote
to the database after validating the whole file: the loan reads it through an activity, and
rejects itself if there is none (a start by hand cannot invent a migrated loan) or if the input
names another borrower or other figures.

An imported loan skips KYC, approval, funding and disbursement. It opens its deposit address
(for top-ups), books its opening balances once (`<loan>:import`: the receivable of principal
plus accrued interest, and the collateral held), and enters servicing. It does not look at the
max initial LTV: a loan imported above the margin-call level gets its warning, margin call or
liquidation on its first fresh price, by the normal rules.

Interest: the accrued interest is the opening interest; interest accrues from the moment of
import on (whole days, like every loan), whatever `originated_at` says. The system the loan
comes from accounted for the days before, and counting them again would charge them twice.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from loanflow import ledger as account
    from loanflow.effects import (
        ActivityName,
        DepositAddress,
        DepositAddressRequest,
        LedgerLine,
        MigrationRecord,
        MigrationRequest,
    )
    from loanflow.imported import ImportedLoan, mismatch
    from loanflow.models import LoanState
    from workflows.base import IdTaken, LoanBase, iso, text
    from workflows.calls import EFFECT_RETRY, effect
    from workflows.loan_file import STEPS


class Migration(LoanBase):
    def is_imported(self) -> bool:
        return self.app.origin == "import"

    def adopts_unwritten(self) -> bool:
        """An imported loan's first step in a run with IMPORT_IN_ONE_TASK: nothing is written
        before the adoption, whose first look at the loan writes it ACTIVE (or its rejection
        writes it REJECTED). Asked where the run's first publish was, so that an older run
        asks for its patches at the same point of its history."""
        return self.is_imported() and self.f.step == 0 and self.import_in_one_task()

    async def adopt(self) -> str | None:
        """Open an imported loan ACTIVE from its migration record; why it cannot be, or None."""
        app = self.app
        claim = self.id_claim()  # made with the read: one local activity
        found = await self.read(
            ActivityName.IMPORTED_LOAN,
            MigrationRequest(loan_id=app.loan_id, claim=claim),
            MigrationRecord,
            summary="migration record" if claim is None else "claim loan id, migration record",
            retry=EFFECT_RETRY,  # a database outage must not reject a migrated loan
        )
        if claim is not None and found.holder != claim.run_id:
            raise IdTaken(found.holder or "")
        record = found.loan
        if record is None:
            return (f"loan {app.loan_id} has no migration record: imported loans are started "
                    "by `loanflow book import`")
        problem = mismatch(record, app)
        if problem is not None:
            return f"not the imported loan {app.loan_id}: {problem}"
        # Independent effects, both idempotent by key: side by side, one round trip; with
        # IMPORT_IN_ONE_TASK as local activities, in the task that read the record.
        local = self.import_in_one_task()
        address, _ = await asyncio.gather(
            effect(
                ActivityName.OPEN_DEPOSIT_ADDRESS,
                DepositAddressRequest(loan_id=app.loan_id, asset=record.collateral_asset),
                DepositAddress,
                summary="open deposit address",
                local=local,
            ),
            self.post("import", f"opening balances migrated from {iso(record.originated_at)}",
                      opening_lines(record), local=local),
        )
        self.take_over(record, address.address)
        # The loop's next step after this one is servicing.
        self.f.step = STEPS.index("serve") - 1
        return None

    def take_over(self, record: ImportedLoan, address: str) -> None:
        """The loan's file as the opening posting booked it."""
        f, now = self.f, self.now()
        f.kyc_status = "migrated"
        f.deposit_address = address
        f.collateral = f.required_collateral = record.collateral_amount
        f.principal = record.principal_usd
        # Opening interest is in the ledger already (posted with the receivable).
        f.interest = f.interest_posted = f.total_interest = record.accrued_interest_usd
        f.disbursed_at = record.originated_at
        f.interest_through = now
        f.maturity = record.maturity_at
        # last_revaluation stays empty: the first revaluation reads the stored market price.
        self.set_state(LoanState.ACTIVE)
        self.audit("imported", principal=record.principal_usd,
                   accrued_interest=record.accrued_interest_usd,
                   collateral=record.collateral_amount, originated_at=record.originated_at,
                   maturity=record.maturity_at, annual_rate=record.annual_rate)
        self.notify(
            "loan_migrated",
            principal_usd=text(record.principal_usd),
            interest_usd=text(record.accrued_interest_usd),
            debt_usd=text(f.debt()),
            collateral_asset=record.collateral_asset,
            collateral_amount=text(record.collateral_amount),
            annual_rate=text(record.annual_rate),
            originated_at=iso(record.originated_at),
            maturity=iso(record.maturity_at),
            address=address,
        )


def opening_lines(record: ImportedLoan) -> list[LedgerLine]:
    """The opening entry: the borrower owes principal plus accrued interest, and the desk
    holds the collateral for them (in the asset's own units)."""
    loan, asset = record.loan_id, record.collateral_asset
    return [
        account.debit(account.receivable(loan), "USD", record.opening_debt),
        account.credit(account.OPENING_BALANCES, "USD", record.opening_debt),
        account.debit(account.custody(asset), asset, record.collateral_amount),
        account.credit(account.collateral(loan), asset, record.collateral_amount),
    ]
