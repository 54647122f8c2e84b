"""Loan ids claimed by their first workflow (`loanflow.schema.LoanClaim`): a new loan workflow
claims its id before anything else, and one whose id an earlier loan holds refuses itself.
Filled with the loans that have ended (run id unknown: empty), so that none of them can be
started again under its id. Loans still running are left to themselves: they claimed nothing
and never will (they are past their first step), and one whose first step is retried on the
new code must find its id free.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import LOAN_ID, UTC_TIME

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "loan_claims"
ENDED = ("CLOSED", "REJECTED", "CANCELLED", "DEFAULTED")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("claimed_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("loan_id"),
        if_not_exists=True,  # a database made by create_all since claims came has it
    )
    backfill()


def backfill() -> None:
    connection = op.get_bind()
    loans = sa.table("loans", sa.column("loan_id"), sa.column("borrower_id"),
                     sa.column("state"))
    claims = sa.table(TABLE, sa.column("loan_id"))
    held = set(connection.execute(sa.select(claims.c.loan_id)).scalars())
    now = datetime.now(timezone.utc)
    rows = [{"loan_id": loan_id, "run_id": "", "borrower_id": borrower_id, "claimed_at": now}
            for loan_id, borrower_id in connection.execute(
                sa.select(loans.c.loan_id, loans.c.borrower_id).where(loans.c.state.in_(ENDED)))
            if loan_id not in held]
    if rows:
        op.bulk_insert(sa.table(TABLE, sa.column("loan_id"), sa.column("run_id"),
                                sa.column("borrower_id"), sa.column("claimed_at", UTC_TIME)),
                       rows)


def downgrade() -> None:
    op.drop_table(TABLE)
