"""The market monitor's ticks (`loanflow.schema.MarketTick`): per asset, the price a tick formed
or why it formed none, the quotes it saw and the loans it signalled.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import BIG_ID, KEY, MONEY, UTC_TIME

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "market_ticks",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("monitor_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("asset", sa.String(8), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("replay_at", UTC_TIME, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("observation_id", sa.BigInteger(), nullable=True),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("previous_price", MONEY, nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("quotes", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("target_count", sa.Integer(), nullable=False),
        sa.Column("signalled", sa.Integer(), nullable=True),
        sa.Column("gone", sa.Integer(), nullable=True),
        sa.Column("fanned_out_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        if_not_exists=True,  # a database made by create_all since the monitor came has it
    )
    op.create_index("ix_market_ticks_asset_at", "market_ticks", ["asset", "at"],
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_table("market_ticks")
