"""A loan migrated from another system: one row of a book import, its checks, and the
application that starts its workflow. Pure (no I/O), so the workflow can use it too.

The figures of an imported loan never travel in the workflow's start input (that is the public
`LoanApplication`, which anyone who can start a workflow controls). `loanflow book import`
writes each validated row to the `imported_loans` table and starts the loan with a normal
application marked `origin="import"`; the loan then reads its row back through an activity and
books exactly those figures (`workflows.migration`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationInfo, field_validator

from loanflow.models import Borrower, LoanApplication, bounded_positive
from loanflow.money import ASSETS, MAX_UNITS, MAX_USD, is_whole_cents, is_whole_units
from loanflow.policy import PolicyOverrides

ORIGIN = "import"
# The longest term a loan product has (`check_application`: term_days <= 3650).
MAX_TERM_DAYS = 3650


def _text(value: str, limit: int) -> str:
    if not value:
        raise ValueError("must not be empty")
    if len(value) > limit:
        raise ValueError(f"at most {limit} characters")
    if any(not ch.isprintable() for ch in value):
        raise ValueError("has control characters")
    return value


class ImportedLoan(BaseModel):
    """One loan as the system it comes from knows it, on the day it is migrated. Decimals are
    exact (strings in JSON and CSV); times are ISO 8601 with a zone, kept in UTC."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    loan_id: str
    borrower_id: str
    borrower_name: str
    borrower_email: str
    borrower_country: str
    collateral_asset: str
    collateral_amount: Decimal
    principal_usd: Decimal
    accrued_interest_usd: Decimal = Decimal(0)
    annual_rate: Decimal
    originated_at: datetime
    maturity_at: datetime

    # Where the row was read (a line of the file), for the messages of later checks.
    _line: int | None = PrivateAttr(default=None)

    @property
    def line(self) -> int | None:
        return self._line

    def at_line(self, line: int) -> ImportedLoan:
        self._line = line
        return self

    # --- checks: each names its field through pydantic's error location ---------------------

    @field_validator("loan_id")
    @classmethod
    def _loan_id(cls, v: str) -> str:
        _text(v, 64)
        if any(ch.isspace() for ch in v):
            raise ValueError("must not contain spaces")
        return v

    @field_validator("borrower_id")
    @classmethod
    def _borrower_id(cls, v: str) -> str:
        return _text(v, 128)

    @field_validator("borrower_name")
    @classmethod
    def _borrower_name(cls, v: str) -> str:
        return _text(v, 200)

    @field_validator("borrower_email")
    @classmethod
    def _email(cls, v: str) -> str:
        _text(v, 254)
        local, at, domain = v.rpartition("@")
        if not at or not local or "." not in domain or any(ch.isspace() for ch in v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v

    @field_validator("borrower_country")
    @classmethod
    def _country(cls, v: str) -> str:
        if len(v) != 2 or not v.isascii() or not v.isalpha():
            raise ValueError(f"must be an ISO 3166-1 alpha-2 code such as GB (got {v!r})")
        return v.upper()

    @field_validator("collateral_asset")
    @classmethod
    def _asset(cls, v: str) -> str:
        if v.upper() not in ASSETS:
            raise ValueError(f"unknown asset {v!r} (BTC or ETH)")
        return v.upper()

    @field_validator("collateral_amount")
    @classmethod
    def _collateral(cls, v: Decimal, info: ValidationInfo) -> Decimal:
        bounded_positive(v, MAX_UNITS, "a positive number of collateral units")
        asset = info.data.get("collateral_asset")
        if asset is not None and not is_whole_units(asset, v):
            raise ValueError(f"more decimal places than {asset} has")
        return v

    @field_validator("principal_usd")
    @classmethod
    def _principal(cls, v: Decimal) -> Decimal:
        bounded_positive(v, MAX_USD, "positive")
        if not is_whole_cents(v):
            raise ValueError("must be whole cents")
        return v

    @field_validator("accrued_interest_usd")
    @classmethod
    def _accrued(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or v < 0:
            raise ValueError("must be zero or a positive amount")
        if v >= MAX_USD or not is_whole_cents(v):
            raise ValueError("must be whole cents" if v < MAX_USD else "is implausibly large")
        return v

    @field_validator("annual_rate")
    @classmethod
    def _rate(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or not Decimal(0) <= v < Decimal(1):
            raise ValueError("must be a fraction in [0, 1), e.g. 0.12 for 12%")
        return v

    @field_validator("originated_at", "maturity_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a time zone (ISO 8601 UTC, e.g. 2024-03-01T00:00:00Z)")
        return v.astimezone(timezone.utc)

    @field_validator("maturity_at")
    @classmethod
    def _term(cls, v: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("originated_at")
        if start is None:
            return v
        if v <= start:
            raise ValueError("must be after originated_at")
        if v - start > timedelta(days=MAX_TERM_DAYS):
            raise ValueError(f"at most {MAX_TERM_DAYS} days after originated_at")
        return v

    # --- what the loan is made of -------------------------------------------------------------

    @property
    def borrower(self) -> Borrower:
        return Borrower(id=self.borrower_id, name=self.borrower_name, email=self.borrower_email,
                        country=self.borrower_country)

    @property
    def term_days(self) -> int:
        """The term in whole days, a part day counted as a day."""
        return max(1, math.ceil((self.maturity_at - self.originated_at) / timedelta(days=1)))

    @property
    def opening_debt(self) -> Decimal:
        return self.principal_usd + self.accrued_interest_usd

    def application(self, policy: PolicyOverrides | None = None) -> LoanApplication:
        """The public start input of this loan's workflow. Its figures only name the loan (and
        show in the read model); the loan books those of its migration record."""
        return LoanApplication(
            loan_id=self.loan_id,
            borrower=self.borrower,
            principal_usd=self.principal_usd,
            collateral_asset=self.collateral_asset,
            collateral_amount=self.collateral_amount,
            term_days=self.term_days,
            annual_rate=self.annual_rate,
            policy=policy,
            origin=ORIGIN,
        )

    def same_as(self, other: ImportedLoan) -> bool:
        """The same loan with the same figures (1.50 and 1.5 are the same amount)."""
        return self.model_dump() == other.model_dump()


# Fields of the application that must agree with the migration record.
_CHECKED = ("principal_usd", "collateral_asset", "collateral_amount", "annual_rate", "term_days")


def mismatch(record: ImportedLoan, app: LoanApplication) -> str | None:
    """Why a start input does not belong to this migration record, or None. A workflow started
    by hand with `origin: "import"` for an imported loan id must not put another borrower's
    address on its notices or claim other figures."""
    expected = record.application(app.policy)
    if app.loan_id != expected.loan_id:
        return f"loan_id: {app.loan_id} is not the migration record's {expected.loan_id}"
    if app.borrower.model_dump(exclude={"timezone"}) != expected.borrower.model_dump(
        exclude={"timezone"}
    ):
        return "borrower: differs from the migration record"
    for field in _CHECKED:
        mine: Any = getattr(app, field)
        theirs: Any = getattr(expected, field)
        if mine != theirs:
            return f"{field}: {mine} differs from the migration record's {theirs}"
    return None
