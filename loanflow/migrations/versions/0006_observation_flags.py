"""Flags on stored price observations: `disputed` (the venues disagreed; `price` is the lowest
quote, `low`/`high` the range) and `unconfirmed` (a jump past the limit waiting for a second
observation). Existing rows are agreed and confirmed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import MONEY

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = (
    ("disputed", lambda: sa.Column("disputed", sa.Boolean(), nullable=False,
                                   server_default=sa.false())),
    ("low", lambda: sa.Column("low", MONEY, nullable=True)),
    ("high", lambda: sa.Column("high", MONEY, nullable=True)),
    ("unconfirmed", lambda: sa.Column("unconfirmed", sa.Boolean(), nullable=False,
                                      server_default=sa.false())),
)


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite supports it with a constant default): no table rebuild. A
    # database made by create_all since these columns came has them already.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("price_observations")}
    for name, column in COLUMNS:
        if name not in present:
            op.add_column("price_observations", column())


def downgrade() -> None:
    with op.batch_alter_table("price_observations") as batch:
        batch.drop_column("unconfirmed")
        batch.drop_column("high")
        batch.drop_column("low")
        batch.drop_column("disputed")
