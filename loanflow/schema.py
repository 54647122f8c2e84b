"""The database tables: the loans read model, the audit trail, the double-entry ledger and the
records of every outside effect (custody transfers, payouts, exchange orders, prices).

Every table that records an effect has a unique business `key` (DESIGN.md, "Effects happen
exactly once"): the database itself refuses a second effect with the same key, whatever the
activities' own checks missed (two workers racing, a retry after a crash).

Amounts are exact decimals (`Money`, through `Base.type_annotation_map`). Trigger prices use
`PRICE`, a real numeric on both databases, so the market monitor can range-query them.
Timestamps are `UtcDateTime`: always stored in UTC and always returned time-zone aware, also on
SQLite, whose DATETIME drops the zone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from loanflow.db import PRICE, Base

# An autoincrementing 64-bit id on PostgreSQL; on SQLite only INTEGER is an alias of the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

KEY = String(200)  # idempotency keys: loan_id (<= 64) + step + sequence
LOAN_ID = String(64)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is UTC in the database and aware in Python.

    Naive datetimes are refused on write: a naive time is ambiguous and would be stored as if
    it were UTC. SQLite returns naive values (it has no zone): they are UTC by construction,
    so the zone is put back on read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone (UTC)")
        value = value.astimezone(timezone.utc)
        # SQLite would write the wall-clock digits and drop the offset: store plain UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        return as_utc(value)


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime; a naive one is taken to be UTC (what SQLite hands back)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- the read model and the audit trail ---------------------------------------------------------


class Loan(Base):
    """The latest published snapshot of one loan. The workflow is the truth; this row lets
    people, the CLI and the market monitor see the book without asking every workflow."""

    __tablename__ = "loans"

    loan_id: Mapped[str] = mapped_column(LOAN_ID, primary_key=True)
    # Snapshots only grow in version: an older one arriving late never overwrites a newer one.
    version: Mapped[int] = mapped_column(BigInteger)
    borrower_id: Mapped[str] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    collateral_asset: Mapped[str] = mapped_column(String(8))
    collateral_amount: Mapped[Decimal]
    principal_usd: Mapped[Decimal]
    debt_usd: Mapped[Decimal]
    ltv: Mapped[Decimal | None]
    cure_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime)
    warning_price: Mapped[Decimal | None] = mapped_column(PRICE)
    margin_call_price: Mapped[Decimal | None] = mapped_column(PRICE)
    liquidation_price: Mapped[Decimal | None] = mapped_column(PRICE)
    cure_price: Mapped[Decimal | None] = mapped_column(PRICE)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Sent with the first snapshot only; later snapshots leave it as it is (SQL NULL, not JSON
    # null, so that COALESCE keeps the stored one).
    application: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    # A price tick for one asset asks "whose trigger lies in [new, old]?": one index per trigger.
    __table_args__ = (
        Index("ix_loans_asset_warning_price", "collateral_asset", "warning_price"),
        Index("ix_loans_asset_margin_call_price", "collateral_asset", "margin_call_price"),
        Index("ix_loans_asset_liquidation_price", "collateral_asset", "liquidation_price"),
        Index("ix_loans_asset_cure_price", "collateral_asset", "cure_price"),
        # The book lists margin calls by deadline.
        Index("ix_loans_state_cure_deadline", "state", "cure_deadline"),
    )


class BorrowerContact(Base):
    """A borrower's latest contact details, keyed by borrower id, written when one of their
    loans opens (the newest application wins). Notices are addressed from each loan's own
    application (`Loan.application`): a newer application under the same id must not redirect
    an older loan's notices. Read only for a loan recorded without its application. Text
    columns: an over-long name must never make the read-model write fail."""

    __tablename__ = "borrowers"

    borrower_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(Text)
    # The loan whose application these details came from.
    loan_id: Mapped[str] = mapped_column(LOAN_ID)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LoanClaim(Base):
    """Which workflow a loan id belongs to: the first run (`first_execution_run_id`, kept
    through continue-as-new) of the first `LoanWorkflow` started under it. Every record,
    notice, transfer and ledger entry of a loan is keyed by its loan id, so a second workflow
    under the same id (the stock CLI starts one once the first has closed) would find the
    first loan's effects done and carry on as if they were its own. Such a run finds the id
    claimed by another run and refuses itself (`workflows.loan`)."""

    __tablename__ = "loan_claims"

    loan_id: Mapped[str] = mapped_column(LOAN_ID, primary_key=True)
    # Empty for a loan that ended before claims were kept (revision 0007).
    run_id: Mapped[str] = mapped_column(String(64))
    borrower_id: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditRecord(Base):
    """One decision of a loan, with the price and thresholds it used (for disputes)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(KEY, unique=True)
    loan_id: Mapped[str] = mapped_column(LOAN_ID, index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    price: Mapped[Decimal | None]
    observation_id: Mapped[int | None] = mapped_column(BigInteger)


# --- the ledger ---------------------------------------------------------------------------------


class LedgerEntry(Base):
    """One balanced posting. Its lines sum to zero per currency (checked by loanflow.ledger
    before anything is written)."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(KEY, unique=True)
    loan_id: Mapped[str] = mapped_column(LOAN_ID, index=True)
    memo: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    lines: Mapped[list[LedgerLineRow]] = relationship(
        back_populates="entry", lazy="selectin", order_by="LedgerLineRow.id"
    )


class LedgerLineRow(Base):
    """One leg of an entry: debit positive, credit negative, in one currency (USD, BTC, ETH)."""

    __tablename__ = "ledger_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(200), index=True)
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal]

    entry: Mapped[LedgerEntry] = relationship(back_populates="lines")


# --- custody ------------------------------------------------------------------------------------


class CustodyAccount(Base):
    """The deposit address the custodian opened for one loan's collateral."""

    __tablename__ = "custody_accounts"

    loan_id: Mapped[str] = mapped_column(LOAN_ID, primary_key=True)
    asset: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CustodyTransfer(Base):
    """Collateral in (a deposit or top-up seen on-chain) or out (released to the borrower)."""

    __tablename__ = "custody_transfers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(KEY, unique=True)
    loan_id: Mapped[str] = mapped_column(LOAN_ID, index=True)
    direction: Mapped[str] = mapped_column(String(3))  # 'in' | 'out'
    asset: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal]
    # On-chain tx id for deposits; the custodian's withdrawal reference for releases.
    tx_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        # A tx id counts once per loan...
        UniqueConstraint("loan_id", "tx_id", name="uq_custody_transfers_loan_tx"),
        # ...and an incoming tx belongs to one loan only, even when two loans race to claim it.
        Index(
            "uq_custody_transfers_deposit_tx",
            "tx_id",
            unique=True,
            sqlite_where=text("direction = 'in'"),
            postgresql_where=text("direction = 'in'"),
        ),
    )


# --- payouts and the exchange -------------------------------------------------------------------


class Payout(Base):
    """Dollars sent to the borrower: the loan itself, or a liquidation surplus."""

    __tablename__ = "payouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(KEY, unique=True)
    loan_id: Mapped[str] = mapped_column(LOAN_ID, index=True)
    borrower_id: Mapped[str] = mapped_column(String(128))
    amount_usd: Mapped[Decimal]
    purpose: Mapped[str] = mapped_column(String(16))  # 'disbursement' | 'surplus'
    status: Mapped[str] = mapped_column(String(16))
    # The payment rail's own reference (a wire or ACH id), for reconciliation.
    reference: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ExchangeOrder(Base):
    """A filled market sell. Written by the (fake) venue itself: the row is the venue's own
    idempotency record, so a client order id fills once however often it is sent."""

    __tablename__ = "exchange_orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(KEY, unique=True)
    order_id: Mapped[str] = mapped_column(String(64))  # the venue's own order id
    loan_id: Mapped[str] = mapped_column(LOAN_ID, index=True)
    asset: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal]
    reference_price: Mapped[Decimal]
    fill_price: Mapped[Decimal]
    gross_usd: Mapped[Decimal]
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# --- prices -------------------------------------------------------------------------------------


class PriceObservation(Base):
    """A market price formed from one or more sources (the monitor stores the median)."""

    __tablename__ = "price_observations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(8))
    price: Mapped[Decimal]
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The quotes behind the price, {source: price as a string}, for disputes.
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The venues disagreed past the deviation limit: `price` is the lowest quote, `low`/`high`
    # the range (`sources` every venue). Warnings and calls act on it; a sale waits.
    # (Server defaults only: an insert that does not name the flags is an agreed, accepted
    # price, and works on a database migrated before they existed.)
    disputed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    low: Mapped[Decimal | None]
    high: Mapped[Decimal | None]
    # A jump past the limit from the last accepted observation: kept for the record, never
    # signalled nor read by a loan until a second observation confirms the move.
    unconfirmed: Mapped[bool] = mapped_column(Boolean, server_default=false())

    __table_args__ = (Index("ix_price_observations_asset_observed", "asset", "observed_at"),)


class MarketTick(Base):
    """One market-monitor tick for one asset: the price it formed, or the "no price" condition
    with its reasons, every quote it saw (used or dropped, and why), and the loans whose
    trigger prices the move crossed. The no-price rows are what operators look at when the
    market goes dark (`loanflow market status`); `key` makes a retried tick store nothing twice,
    and `targets` is the fixed list a retried fan-out signals again (never more loans)."""

    __tablename__ = "market_ticks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(KEY, unique=True)
    monitor_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    asset: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The historical moment a replay tick stands for (None when live).
    replay_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # 'price' | 'no_price'
    observation_id: Mapped[int | None] = mapped_column(BigInteger)
    price: Mapped[Decimal | None]
    previous_price: Mapped[Decimal | None]
    reasons: Mapped[list[str]] = mapped_column(JSON)
    # [{venue, price, at, currency, used, reason}] for every quote the tick saw.
    quotes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # {loan_id: [crossed trigger kinds]}: the loans this tick signals.
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)
    target_count: Mapped[int] = mapped_column(Integer, default=0)
    signalled: Mapped[int | None] = mapped_column(Integer)
    gone: Mapped[int | None] = mapped_column(Integer)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_market_ticks_asset_at", "asset", "at"),)


# --- migrated loans -----------------------------------------------------------------------------


class ImportedLoanRow(Base):
    """A loan migrated from another system, as `loanflow book import` validated it: the trusted
    source of its opening figures. The loan's workflow reads its row once, when it starts, and
    books exactly these (its start input only names the loan). Written once per loan id; an
    import of the same loan with other figures is refused."""

    __tablename__ = "imported_loans"

    loan_id: Mapped[str] = mapped_column(LOAN_ID, primary_key=True)
    borrower_id: Mapped[str] = mapped_column(String(128))
    borrower_name: Mapped[str] = mapped_column(String(200))
    borrower_email: Mapped[str] = mapped_column(String(254))
    borrower_country: Mapped[str] = mapped_column(String(2))
    collateral_asset: Mapped[str] = mapped_column(String(8))
    collateral_amount: Mapped[Decimal]
    principal_usd: Mapped[Decimal]
    accrued_interest_usd: Mapped[Decimal]
    annual_rate: Mapped[Decimal]
    originated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    maturity_at: Mapped[datetime] = mapped_column(UtcDateTime)
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
