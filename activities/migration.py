"""The `imported_loan` activity: an imported loan reads its own migration record (its trusted
opening figures). The rows are `loanflow.store.imported`, which `loanflow book import` writes."""

from __future__ import annotations

from temporalio import activity

from loanflow.db import Database
from loanflow.effects import ActivityName, MigrationRecord, MigrationRequest
from loanflow.store.imported import imported_loans


class MigrationActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.IMPORTED_LOAN)
    async def imported_loan(self, request: MigrationRequest) -> MigrationRecord:
        """The loan's migration record, or `loan=None` if it was never imported."""
        async with self.db.sessions() as session:
            found = await imported_loans(session, [request.loan_id])
        return MigrationRecord(loan=found.get(request.loan_id))
