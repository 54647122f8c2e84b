"""The initial schema: exactly the tables `Database.create_all` made before migrations existed
(the loans read model, the audit trail, the ledger, custody, payouts, the exchange, prices,
notices and the outbox).

The column types come from `loanflow.migrations.types`, not from the models, so a later change
to the models cannot change what this revision did.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loanflow.migrations.types import BIG_ID, KEY, LOAN_ID, MONEY, PRICE, UTC_TIME

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What `loanflow.migrations.upgrade` expects of a database made by create_all before it
# adopts the database at this revision.
TABLES = (
    "audit_log", "custody_accounts", "custody_transfers", "exchange_orders", "ledger_entries",
    "ledger_lines", "loans", "notices", "outbox", "payouts", "price_observations",
)


def upgrade() -> None:
    read_model()
    ledger()
    effects()
    notices()


def read_model() -> None:
    op.create_table(
        "loans",
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("collateral_asset", sa.String(8), nullable=False),
        sa.Column("collateral_amount", MONEY, nullable=False),
        sa.Column("principal_usd", MONEY, nullable=False),
        sa.Column("debt_usd", MONEY, nullable=False),
        sa.Column("ltv", MONEY, nullable=True),
        sa.Column("cure_deadline", UTC_TIME, nullable=True),
        sa.Column("warning_price", PRICE, nullable=True),
        sa.Column("margin_call_price", PRICE, nullable=True),
        sa.Column("liquidation_price", PRICE, nullable=True),
        sa.Column("cure_price", PRICE, nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("application", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("loan_id"),
    )
    op.create_index("ix_loans_borrower_id", "loans", ["borrower_id"])
    op.create_index("ix_loans_state", "loans", ["state"])
    for trigger in ("warning", "margin_call", "liquidation", "cure"):
        op.create_index(f"ix_loans_asset_{trigger}_price", "loans",
                        ["collateral_asset", f"{trigger}_price"])

    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("observation_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_audit_log_loan_id", "audit_log", ["loan_id"])


def ledger() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("memo", sa.String(500), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_ledger_entries_loan_id", "ledger_entries", ["loan_id"])

    op.create_table(
        "ledger_lines",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("entry_id", BIG_ID, nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_lines_account", "ledger_lines", ["account"])
    op.create_index("ix_ledger_lines_entry_id", "ledger_lines", ["entry_id"])


def effects() -> None:
    """Custody, payouts, the exchange's fills and market prices."""
    op.create_table(
        "custody_accounts",
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("asset", sa.String(8), nullable=False),
        sa.Column("address", sa.String(128), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("loan_id"),
        sa.UniqueConstraint("address"),
    )

    op.create_table(
        "custody_transfers",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("asset", sa.String(8), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("tx_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("loan_id", "tx_id", name="uq_custody_transfers_loan_tx"),
    )
    op.create_index("ix_custody_transfers_loan_id", "custody_transfers", ["loan_id"])
    incoming = sa.text("direction = 'in'")
    op.create_index("uq_custody_transfers_deposit_tx", "custody_transfers", ["tx_id"],
                    unique=True, sqlite_where=incoming, postgresql_where=incoming)

    op.create_table(
        "payouts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("amount_usd", MONEY, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(128), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_payouts_loan_id", "payouts", ["loan_id"])

    op.create_table(
        "exchange_orders",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("client_order_id", KEY, nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("asset", sa.String(8), nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("reference_price", MONEY, nullable=False),
        sa.Column("fill_price", MONEY, nullable=False),
        sa.Column("gross_usd", MONEY, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_order_id"),
    )
    op.create_index("ix_exchange_orders_loan_id", "exchange_orders", ["loan_id"])

    op.create_table(
        "price_observations",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("asset", sa.String(8), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("observed_at", UTC_TIME, nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_price_observations_asset_observed", "price_observations",
                    ["asset", "observed_at"])


def notices() -> None:
    op.create_table(
        "notices",
        sa.Column("key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("borrower_id", sa.String(128), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("borrower", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_notices_loan_id", "notices", ["loan_id"])

    op.create_table(
        "outbox",
        sa.Column("notice_key", KEY, nullable=False),
        sa.Column("loan_id", LOAN_ID, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("to_name", sa.String(256), nullable=False),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("smtp_response", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("claimed_at", UTC_TIME, nullable=True),
        sa.Column("data_started_at", UTC_TIME, nullable=True),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["notice_key"], ["notices.key"]),
        sa.PrimaryKeyConstraint("notice_key"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_outbox_loan_id", "outbox", ["loan_id"])
    op.create_index("ix_outbox_status", "outbox", ["status"])


def downgrade() -> None:
    # Children before parents (foreign keys); dropping a table drops its indexes.
    for table in ("outbox", "notices", "price_observations", "exchange_orders", "payouts",
                  "custody_transfers", "custody_accounts", "ledger_lines", "ledger_entries",
                  "audit_log", "loans"):
        op.drop_table(table)
