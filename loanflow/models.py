"""The public operations contract as pydantic models: the application, updates, signals and the
status query. Decimals travel as JSON strings; field names are part of the contract."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from loanflow.money import (
    ASSETS,
    MAX_UNITS,
    MAX_USD,
    check_price,
    is_whole_cents,
    is_whole_units,
)
from loanflow.policy import PolicyOverrides

# Bounds on every string a caller sends (issue 10): each within the database column it lands
# in (loanflow/schema.py, notice_schema.py) and a few KB at most, so that no input can fail a
# workflow task (a 2 MB reason hit PAYLOADS_TOO_LARGE) or make an activity retry forever (a
# 300-character name: "value too long" on PostgreSQL).
LOAN_ID_MAX = 64  # loans.loan_id
LOAN_ID_PATTERN = r"^[A-Za-z0-9._-]+$"  # ':' separates the parts of an idempotency key
BORROWER_ID_MAX = 128  # loans.borrower_id, notices.borrower_id
NAME_MAX = 200  # outbox.to_name is 256
EMAIL_MAX = 254  # RFC 5321's path limit; outbox.to_address is 320
# A tx id or a payment reference ends up inside notice keys (String(200)) after the loan id
# (64) and the notice kind: 100 fits, and every chain's tx hash is shorter (BTC 64, ETH 66).
REFERENCE_MAX = 100
PERSON_MAX = 128  # a reviewer's or an operator's name
TEXT_MAX = 1000  # free text (reasons): kept in the audit trail and in e-mails
SOURCE_MAX = 200  # 'median(bitstamp,coinbase,kraken,...)'


def Text(max_length: int, min_length: int = 1) -> Any:  # noqa: N802 (a field factory)
    return Field(min_length=min_length, max_length=max_length)


# The contract's workflow id of a loan: `loan-<loan_id>`.
WORKFLOW_PREFIX = "loan-"
WORKFLOW_TYPE = "LoanWorkflow"


def workflow_id(loan_id: str) -> str:
    """The contract's workflow id of a loan (`loan-<loan_id>`)."""
    return f"{WORKFLOW_PREFIX}{loan_id}"


class LoanState(str, Enum):
    KYC_REVIEW = "KYC_REVIEW"
    AWAITING_COLLATERAL = "AWAITING_COLLATERAL"
    ACTIVE = "ACTIVE"
    MARGIN_CALL = "MARGIN_CALL"
    LIQUIDATING = "LIQUIDATING"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    DEFAULTED = "DEFAULTED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {LoanState.CLOSED, LoanState.REJECTED, LoanState.CANCELLED, LoanState.DEFAULTED}
)


class Borrower(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Text(BORROWER_ID_MAX)
    name: str = Text(NAME_MAX)
    email: str = Text(EMAIL_MAX)
    country: str = Text(8)
    timezone: str | None = Field(None, max_length=64)


class LoanApplication(BaseModel):
    """Input of `LoanWorkflow`. What `temporal workflow start --input '{...}'` sends. Unknown
    fields are refused (a misspelt `polcy` would otherwise silently give the standard terms)."""

    model_config = ConfigDict(extra="forbid")

    loan_id: str = Field(min_length=1, max_length=LOAN_ID_MAX, pattern=LOAN_ID_PATTERN)
    borrower: Borrower
    principal_usd: Decimal
    collateral_asset: str = Text(8)
    collateral_amount: Decimal
    term_days: int
    annual_rate: Decimal
    policy: PolicyOverrides | None = None
    # Operations tuning: continue-as-new after this many history events (Temporal's own
    # suggestion is always honoured too). Tests set it low to force continue-as-new.
    history_limit: int | None = None
    # Only runs continued by loanflow before continue-as-new state moved out of the start input
    # carry this (their histories must still replay). A fresh start that sends it is rejected.
    resume: dict[str, Any] | None = None
    # "import": a loan migrated from another system by `loanflow book import`. The loan takes
    # its figures from its migration record in the database (never from this input) and
    # starts ACTIVE; without a record it rejects itself. None: normal onboarding.
    origin: Literal["import"] | None = None


class ApplicationProblem(ValueError):
    """An application that cannot become a loan; the message names the field."""


def check_application(app: LoanApplication) -> None:
    """Business validation of an application. Raises ApplicationProblem naming the field."""
    if not app.loan_id.strip() or len(app.loan_id) > LOAN_ID_MAX:
        raise ApplicationProblem(f"loan_id: must be 1 to {LOAN_ID_MAX} characters")
    if app.collateral_asset not in ASSETS:
        raise ApplicationProblem(
            f"collateral_asset: {app.collateral_asset!r} is not supported (BTC or ETH)"
        )
    _positive("principal_usd", app.principal_usd, MAX_USD)
    if not is_whole_cents(app.principal_usd):
        raise ApplicationProblem("principal_usd: must be whole cents")
    _positive("collateral_amount", app.collateral_amount, MAX_UNITS)
    if not is_whole_units(app.collateral_asset, app.collateral_amount):
        raise ApplicationProblem(
            f"collateral_amount: more decimal places than {app.collateral_asset} has"
        )
    if not 1 <= app.term_days <= 3650:
        raise ApplicationProblem("term_days: must be between 1 and 3650")
    if not Decimal(0) <= app.annual_rate < Decimal(1):
        raise ApplicationProblem("annual_rate: must be a fraction in [0, 1), e.g. 0.12 for 12%")
    if app.history_limit is not None and app.history_limit < 200:
        raise ApplicationProblem("history_limit: must be at least 200 events")


def _positive(name: str, value: Decimal, limit: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise ApplicationProblem(f"{name}: must be a positive amount (got {value})")
    if value >= limit:
        raise ApplicationProblem(f"{name}: {value} is implausibly large (limit {limit:,})")


# --- updates ----------------------------------------------------------------------------------


def bounded_positive(v: Decimal, limit: Decimal, what: str) -> Decimal:
    """Validator body: a finite amount above zero and below a sanity limit."""
    if not v.is_finite() or v <= 0:
        raise ValueError(f"must be {what}")
    if v >= limit:
        raise ValueError(f"is implausibly large (limit {limit:,})")
    return v


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class KycDecision(RequestModel):
    approved: bool
    reviewer: str = Text(PERSON_MAX)
    reason: str = Text(TEXT_MAX)


class CollateralDeposit(RequestModel):
    """`confirm_deposit` and `top_up`: collateral units received under a custody tx id."""

    amount: Decimal
    tx_id: str = Text(REFERENCE_MAX)

    @field_validator("amount")
    @classmethod
    def _positive_amount(cls, v: Decimal) -> Decimal:
        return bounded_positive(v, MAX_UNITS, "a positive number of collateral units")


class Repayment(RequestModel):
    amount_usd: Decimal
    reference: str = Text(REFERENCE_MAX)

    @field_validator("amount_usd")
    @classmethod
    def _cents(cls, v: Decimal) -> Decimal:
        bounded_positive(v, MAX_USD, "a positive dollar amount")
        if not is_whole_cents(v):
            raise ValueError("must be whole cents")
        return v


class CureExtension(RequestModel):
    hours: int = Field(gt=0, le=10_000)  # the policy's max_extension_hours is the real limit
    reason: str = Text(TEXT_MAX)
    operator: str = Text(PERSON_MAX)


class PriceUpdate(RequestModel):
    """Signal `price_update`: one market observation. A plain `{asset, price, observed_at,
    source}` is an agreed price. The optional rest is set by the market monitor when its venues
    disagreed past the deviation limit (`disputed`): `price` is then the LOWEST venue quote
    (warnings and margin calls act on it), `low`/`high` the range and `venues` every venue's
    quote in USD; a sale waits for an agreeing observation, except at the hard floor if it
    holds at `high`. The price must lie in its asset's sane range
    (`loanflow.money.PRICE_BOUNDS`)."""

    asset: str = Text(8)
    price: Decimal
    observed_at: datetime
    source: str = Field("manual", min_length=1, max_length=SOURCE_MAX)
    observation_id: int | None = Field(None, ge=0, le=2**63 - 1)
    disputed: bool = False
    low: Decimal | None = None
    high: Decimal | None = None
    venues: dict[str, Decimal] | None = None

    @field_validator("price")
    @classmethod
    def _positive_price(cls, v: Decimal, info: ValidationInfo) -> Decimal:
        asset = info.data.get("asset")
        if asset not in ASSETS:  # the asset's own error (or "not this loan's") says it
            if not v.is_finite() or v <= 0:
                raise ValueError("must be a positive price")
            return v
        return check_price(asset, v)

    @field_validator("low", "high")
    @classmethod
    def _positive_bound(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and (not v.is_finite() or v <= 0):
            raise ValueError("must be a positive price")
        return v

    def payload(self) -> dict[str, Any]:
        """The signal's JSON: the plain contract for an agreed price (no empty dispute fields)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @field_validator("observed_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a time zone (ISO 8601 UTC, e.g. 2022-11-09T23:00:00Z)")
        return v.astimezone(timezone.utc)


M = TypeVar("M", bound=BaseModel)


class RequestError(ValueError):
    """A request that failed validation; the message names the field and the reason."""


def parse_request(model: type[M], raw: Any) -> M:
    """Parse a JSON object into `model`, turning pydantic's errors into one clear line."""
    if isinstance(raw, model):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    if not isinstance(raw, dict):
        raise RequestError(f"expected a JSON object for {model.__name__}, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise RequestError(describe_validation_error(err)) from None


def describe_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "input"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


# --- query ------------------------------------------------------------------------------------


class LoanStatus(BaseModel):
    """What the `status` query returns."""

    loan_id: str
    state: LoanState
    ltv: Decimal | None
    collateral_asset: str
    collateral_amount: Decimal
    debt_usd: Decimal
    principal_usd: Decimal
    interest_usd: Decimal
    fees_usd: Decimal
    cure_deadline: datetime | None
    cure_top_up: Decimal | None
    cure_repay_usd: Decimal | None
    price: Decimal | None
    price_observed_at: datetime | None
    price_fresh: bool
    required_collateral: Decimal
    deposit_address: str | None
    funding_deadline: datetime | None
    disbursed_at: datetime | None
    maturity: datetime | None
    shortfall_usd: Decimal
    reason: str | None
    # "screening", "manual_review" (waiting for a `kyc_decision`), "approved", "rejected", or
    # "migrated" (an imported loan: screened by the system it came from)
    kyc_status: str
    trigger_prices: dict[str, Decimal | None]
    # What the loan waits for before it can go on, if anything outside it: "price" (a fresh
    # price, for approval or disbursement; `reason` says which and until when). An update's
    # reply stops waiting for the loan to act once it waits for something else.
    waiting_for: str | None = None
