"""Inputs and results of every activity: the effects a loan asks of the outside world.

Workflow code calls activities by the names below with these models, so it never imports the
activity modules (and through them SQLAlchemy, SMTP or HTTP code). Every request that moves
money, collateral or a message carries an idempotency `key` built from the business
(`loan_id` + step + sequence), never from the run id.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from loanflow.imported import ImportedLoan
from loanflow.models import Borrower, PriceUpdate


class ActivityName:
    SCREEN_BORROWER = "screen_borrower"
    LATEST_PRICE = "latest_price"
    OPEN_DEPOSIT_ADDRESS = "open_deposit_address"
    RECORD_DEPOSIT = "record_deposit"
    RELEASE_COLLATERAL = "release_collateral"
    DISBURSE = "disburse"
    SELL_COLLATERAL = "sell_collateral"
    POST_LEDGER = "post_ledger"
    RECORD_NOTICE = "record_notice"
    RECORD_LOAN = "record_loan"
    REFRESH_LOAN = "refresh_loan"
    IMPORTED_LOAN = "imported_loan"
    CLAIM_LOAN_ID = "claim_loan_id"


def effect_key(loan_id: str, step: str, seq: int | str | None = None) -> str:
    """The business idempotency key of one effect: `L1:disburse`, `L1:sale:3`."""
    return f"{loan_id}:{step}" if seq is None else f"{loan_id}:{step}:{seq}"


# --- KYC ----------------------------------------------------------------------------------------


class ScreeningRequest(BaseModel):
    loan_id: str
    borrower: Borrower
    principal_usd: Decimal


class ScreeningResult(BaseModel):
    outcome: Literal["approved", "rejected", "review"]
    reasons: list[str] = Field(default_factory=list)


# --- prices -------------------------------------------------------------------------------------


class PriceRequest(BaseModel):
    asset: str
    # The loan's clock: no observation stamped later than this (plus a small skew) is read.
    now: datetime | None = None


class LatestPrice(BaseModel):
    observation: PriceUpdate | None = None


# --- custody ------------------------------------------------------------------------------------


class DepositAddressRequest(BaseModel):
    loan_id: str
    asset: str


class DepositAddress(BaseModel):
    address: str


class DepositRecord(BaseModel):
    """Collateral that arrived on-chain under `tx_id` (a tx id counts once per loan)."""

    key: str
    loan_id: str
    asset: str
    amount: Decimal
    tx_id: str
    kind: Literal["deposit", "top_up"]


class CollateralRelease(BaseModel):
    key: str
    loan_id: str
    asset: str
    amount: Decimal
    reason: str


class TransferReceipt(BaseModel):
    key: str
    transfer_id: str
    amount: Decimal
    created: bool


# --- payouts ------------------------------------------------------------------------------------


class PayoutRequest(BaseModel):
    key: str
    loan_id: str
    borrower_id: str
    amount_usd: Decimal
    purpose: Literal["disbursement", "surplus"]


class PayoutReceipt(BaseModel):
    key: str
    payout_id: str
    amount_usd: Decimal
    created: bool


# --- exchange -----------------------------------------------------------------------------------


class SaleRequest(BaseModel):
    """Sell collateral for USD. `debt_usd` caps what is applied to the loan; any excess of the
    net proceeds is owed back to the borrower. With `limit_price` (whole cents) the sale never
    fills below it and may fill less than `quantity`, or nothing (the receipt says what
    filled); without (requests of workflows started before limits existed), a market sale."""

    key: str
    loan_id: str
    asset: str
    quantity: Decimal
    reference_price: Decimal
    fee_rate: Decimal
    debt_usd: Decimal
    limit_price: Decimal | None = None


class SaleReceipt(BaseModel):
    """What a sale did: `quantity` is what filled (0 for a limit order the market did not
    reach: then every amount is 0 and nothing was booked)."""

    key: str
    order_id: str
    quantity: Decimal
    fill_price: Decimal
    gross_usd: Decimal
    fee_usd: Decimal
    applied_usd: Decimal
    surplus_usd: Decimal
    created: bool


# --- ledger -------------------------------------------------------------------------------------


class LedgerLine(BaseModel):
    account: str
    currency: str
    amount: Decimal  # debit positive, credit negative


class LedgerPosting(BaseModel):
    key: str
    loan_id: str
    memo: str
    lines: list[LedgerLine]


class PostingReceipt(BaseModel):
    key: str
    created: bool


# --- notices and the read model -----------------------------------------------------------------


class Notice(BaseModel):
    """One borrower notice. `data` holds the figures the message states, as strings.

    A loan sends the borrower's id only: the write that records the notice (or, for loans
    started before NOTICES_WITH_WRITES, the notice activity) reads the contact details from
    the database (the loan's own application, `loanflow.store.borrowers`), so no name or
    e-mail is in the loan's history. Notices sent before that carried `borrower` inline; those
    are still accepted, and the activity fills `borrower` in itself before rendering."""

    key: str
    loan_id: str
    kind: str
    borrower_id: str = ""
    borrower: Borrower | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _addressed(self) -> Notice:
        if not self.borrower_id:
            if self.borrower is None:
                raise ValueError("borrower_id: a notice needs the borrower's id")
            self.borrower_id = self.borrower.id
        return self


class NoticeReceipt(BaseModel):
    key: str
    created: bool
    status: str = "recorded"


class AuditEntry(BaseModel):
    """One decision with the price and thresholds it used."""

    key: str
    at: datetime
    kind: str
    state: str
    detail: dict[str, Any] = Field(default_factory=dict)
    price: Decimal | None = None
    observation_id: int | None = None


class LoanSnapshot(BaseModel):
    """The read model of one loan, published whenever it changes. `version` only grows, so an
    older snapshot arriving late never overwrites a newer one. Trigger prices let the market
    monitor find the loans a price move affects with one range query."""

    loan_id: str
    version: int
    borrower_id: str
    state: str
    collateral_asset: str
    collateral_amount: Decimal
    principal_usd: Decimal
    debt_usd: Decimal
    ltv: Decimal | None
    cure_deadline: datetime | None
    warning_price: Decimal | None
    margin_call_price: Decimal | None
    liquidation_price: Decimal | None
    cure_price: Decimal | None
    updated_at: datetime
    application: dict[str, Any] | None = None


class LoanRecord(BaseModel):
    snapshot: LoanSnapshot
    audit: list[AuditEntry] = Field(default_factory=list)
    # Record the borrower's contact details from the first snapshot's application; False for a
    # start that is not the borrower's (a refused import), whose details may be anyone's.
    contact: bool = True
    # The loan's first run, on the first write of a run that did not claim its loan id at its
    # start (a loan started before claims were kept): the write claims it if no run holds it.
    claim_run: str | None = None
    # The notices the loan sent since its last write (runs with NOTICES_WITH_WRITES): recorded
    # in the outbox with the write, each once by its key, and mailed by the notice relay.
    notices: list[Notice] = Field(default_factory=list)


class RefreshRequest(BaseModel):
    """A loan's daily look in one local activity: publish `record` and read the newest stored
    observation of `asset` (not after `now`, the loan's clock). The snapshot is written with
    its LTV at that observation's price (`risk.shown_ltv`), else as sent."""

    asset: str
    now: datetime
    record: LoanRecord


class Refreshed(BaseModel):
    observation: PriceUpdate | None = None


# --- migrated loans -----------------------------------------------------------------------------


class ClaimRequest(BaseModel):
    """A new loan workflow's claim on its loan id: `run_id` is its first run's id."""

    loan_id: str
    run_id: str
    borrower_id: str


class Claim(BaseModel):
    """The run the loan id belongs to (the claimant's own if it was free)."""

    run_id: str


class MigrationRequest(BaseModel):
    loan_id: str
    # A new imported loan's claim on its id, made with the read (one local activity).
    claim: ClaimRequest | None = None


class MigrationRecord(BaseModel):
    """The loan's row of `imported_loans` (written by `loanflow book import`), or None; with
    a claim, the run that holds the loan id."""

    loan: ImportedLoan | None = None
    holder: str | None = None
