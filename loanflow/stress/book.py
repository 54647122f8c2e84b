"""The book a stress run tests: generated per asset and LTV bucket, or read from an import file.

Loans are kept in window time here (`BookLoan`); `importing` shifts them onto the server's clock
and starts them through the book importer, the same path a migrated book takes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from loanflow.money import ASSETS, units_up, wide
from loanflow.risk import ltv

DEFAULT_PRINCIPAL = Decimal("100000.00")
DEFAULT_LTVS = (Decimal("0.40"), Decimal("0.50"), Decimal("0.60"), Decimal("0.65"))
# Rates and terms a seed draws from: terms all run past the longest window, so no loan matures
# inside it (a stress run is about the market, not about maturities).
RATES = tuple(Decimal(r) / 1000 for r in range(80, 145, 5))  # 8% .. 14%
TERMS_DAYS = (180, 270, 365)


class BookSpecError(ValueError):
    """A book option that cannot be used; the message names the option."""


@dataclass(frozen=True)
class BookLoan:
    """One loan of the book, dates in window time. `ltv0`: its bucket (generated) or its LTV at
    the window's first price (read from a file)."""

    loan_id: str
    borrower_id: str
    borrower_name: str
    borrower_email: str
    borrower_country: str
    collateral_asset: str
    collateral_amount: Decimal
    principal_usd: Decimal
    annual_rate: Decimal
    originated_at: datetime
    maturity_at: datetime
    ltv0: Decimal
    accrued_interest_usd: Decimal = Decimal(0)
    policy: str = "default"

    def for_policy(self, policy: str) -> BookLoan:
        """The same loan under another policy: its id prefixed with the policy's name."""
        return replace(self, loan_id=f"{policy}-{self.loan_id}", policy=policy)


def parse_ltvs(text: str) -> list[Decimal]:
    values = []
    for part in text.split(","):
        try:
            value = Decimal(part.strip())
        except ArithmeticError:
            raise BookSpecError(f"--ltv: {part.strip()!r} is not a number") from None
        if not value.is_finite() or not 0 < value < 1:
            raise BookSpecError(f"--ltv: {part.strip()} must be a fraction in (0, 1), e.g. 0.65")
        values.append(value)
    if len(set(values)) != len(values):
        raise BookSpecError("--ltv: a bucket is given twice")
    return values


def parse_assets(text: str) -> list[str]:
    assets = [a.strip().upper() for a in text.split(",") if a.strip()]
    for asset in assets:
        if asset not in ASSETS:
            raise BookSpecError(f"--assets: {asset} is not supported (BTC or ETH)")
    if not assets or len(set(assets)) != len(assets):
        raise BookSpecError("--assets: name each asset once, e.g. BTC,ETH")
    return assets


def generate(
    assets: Sequence[str], ltvs: Sequence[Decimal], per_bucket: int, seed: int,
    first_prices: Mapping[str, Decimal], originated_at: datetime,
    principal: Decimal = DEFAULT_PRINCIPAL,
) -> list[BookLoan]:
    """`per_bucket` loans per asset and LTV bucket, collateral sized so that each loan's LTV
    at the window's first price is its bucket (collateral rounded up, so at most the bucket).
    Rates and terms are drawn from `seed`: the same arguments give the same book."""
    if per_bucket < 1:
        raise BookSpecError("--loans-per-bucket: must be at least 1")
    rng = random.Random(seed)
    loans = []
    for asset in assets:
        price = first_prices[asset]
        for bucket in ltvs:
            for n in range(1, per_bucket + 1):
                with wide():
                    amount = units_up(asset, principal / (bucket * price))
                number = len(loans) + 1
                loans.append(BookLoan(
                    loan_id=f"{asset}-{bucket_label(bucket)}-{n:03d}",
                    borrower_id=f"SB-{number:05d}",
                    borrower_name=f"Stress Borrower {number}",
                    borrower_email=f"borrower{number}@stress.example",
                    borrower_country="US",
                    collateral_asset=asset,
                    collateral_amount=amount,
                    principal_usd=principal,
                    annual_rate=rng.choice(RATES),
                    originated_at=originated_at,
                    maturity_at=originated_at + timedelta(days=rng.choice(TERMS_DAYS)),
                    ltv0=bucket,
                ))
    return loans


def bucket_label(value: Decimal) -> str:
    """0.65 -> '65', 0.425 -> '42.5' (a bucket as people say it, and in loan ids)."""
    return format((value * 100).normalize(), "f")


def starting_ltv(loan: BookLoan, price: Decimal) -> Decimal:
    """A loan's LTV at the window's first price, to 4 places (its bucket when read from a file)."""
    value = ltv(loan.principal_usd + loan.accrued_interest_usd, loan.collateral_amount, price)
    if value is None or not value.is_finite():
        raise BookSpecError(f"--book: loan {loan.loan_id}: collateral worth nothing")
    return value.quantize(Decimal("0.0001"))
