"""Loans migrated from another system (`loanflow.schema.ImportedLoanRow`): the opening figures
`loanflow book import` validated, which each imported loan's workflow reads once and books.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import LOAN_ID, MONEY, UTC_TIME

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imported_loans",
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("borrower_name", sa.String(200), nullable=False),
        sa.Column("borrower_email", sa.String(254), nullable=False),
        sa.Column("borrower_country", sa.String(2), nullable=False),
        sa.Column("collateral_asset", sa.String(8), nullable=False),
        sa.Column("collateral_amount", MONEY, nullable=False),
        sa.Column("principal_usd", MONEY, nullable=False),
        sa.Column("accrued_interest_usd", MONEY, nullable=False),
        sa.Column("annual_rate", MONEY, nullable=False),
        sa.Column("originated_at", UTC_TIME, nullable=False),
        sa.Column("maturity_at", UTC_TIME, nullable=False),
        sa.Column("imported_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("loan_id"),
        if_not_exists=True,  # a database made by create_all since imports came has it
    )


def downgrade() -> None:
    op.drop_table("imported_loans")
