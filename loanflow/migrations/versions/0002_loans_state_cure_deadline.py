"""An index for the margin calls by deadline: the desk reads the loans in one state ordered
by cure deadline (`loanflow book`), most of all in a crash, when there are thousands.

IF NOT EXISTS: a database made by `create_all` once `loanflow.schema` declares this index
already has it when `upgrade` adopts the database at revision 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_loans_state_cure_deadline"


def upgrade() -> None:
    op.create_index(INDEX, "loans", ["state", "cure_deadline"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="loans", if_exists=True)
