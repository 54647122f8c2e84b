"""Borrowers' contact details by borrower id (`loanflow.schema.BorrowerContact`): notices carry
only the borrower id, and the notice activity reads name and e-mail here. Filled from the
applications the read model already holds, so loans opened before this revision still get
their notices.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import LOAN_ID, UTC_TIME

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "borrowers"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("borrower_id"),
        if_not_exists=True,  # a database made by create_all since borrowers came has it
    )
    backfill()


def backfill() -> None:
    """One row per borrower from the stored applications (the newest loan's wins)."""
    connection = op.get_bind()
    loans = sa.table("loans", sa.column("loan_id"), sa.column("updated_at"),
                     sa.column("application", sa.JSON()))
    borrowers = sa.table(TABLE, sa.column("borrower_id"))
    known = set(connection.execute(sa.select(borrowers.c.borrower_id)).scalars())
    rows: dict[str, dict[str, Any]] = {}
    found = connection.execute(
        sa.select(loans.c.loan_id, loans.c.application).where(loans.c.application.is_not(None))
        .order_by(loans.c.updated_at)
    )
    for loan_id, application in found:
        row = contact_row(loan_id, application)
        if row is not None and row["borrower_id"] not in known:
            rows[row["borrower_id"]] = row
    if rows:
        op.bulk_insert(sa.table(TABLE, *(sa.column(name) for name in ROW_COLUMNS),
                                sa.column("updated_at", UTC_TIME)), list(rows.values()))


ROW_COLUMNS = ("borrower_id", "name", "email", "country", "timezone", "loan_id")


def contact_row(loan_id: str, application: Any) -> dict[str, Any] | None:
    borrower = application.get("borrower") if isinstance(application, dict) else None
    if not isinstance(borrower, dict) or not borrower.get("id"):
        return None
    return {"borrower_id": str(borrower["id"]), "name": str(borrower.get("name", "")),
            "email": str(borrower.get("email", "")), "country": str(borrower.get("country", "")),
            "timezone": borrower.get("timezone"), "loan_id": loan_id,
            "updated_at": datetime.now(timezone.utc)}


def downgrade() -> None:
    op.drop_table(TABLE)
