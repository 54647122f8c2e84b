"""The `imported_loan` activity: an imported loan reads its own migration record (its trusted
opening figures). The rows are `loanflow.store.imported`, which `loanflow book import` writes."""

from __future__ import annotations

from temporalio import activity

from loanflow.db import Database
from loanflow.effects import ActivityName, MigrationRecord, MigrationRequest
from loanflow.store.claims import claim
from loanflow.store.imported import imported_loan


class MigrationActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.IMPORTED_LOAN)
    async def imported_loan(self, request: MigrationRequest) -> MigrationRecord:
        """The loan's migration record, or `loan=None` if it was never imported. With a
        claim, first the claim of the loan id (as `claim_loan_id`; on PostgreSQL in the same
        transaction): a new imported loan's first local activity does both."""
        claimed = request.claim
        async with self.db.statement() as conn:
            holder = None if claimed is None else await claim(
                conn, claimed.loan_id, claimed.run_id, claimed.borrower_id)
            record = await imported_loan(conn, request.loan_id)
        return MigrationRecord(loan=record, holder=holder)
