"""The desk's view of the whole book: loans and debt by state, collateral by asset and its
value, the LTV distribution, and the margin calls by deadline with what cures each.

It reads the loans read model and the latest stored price of each asset. LTVs and cure amounts
are marked to that price: the desk's view of the market now. (Each loan acts on the newest
price it has received itself, which `loanflow status` shows; between a price move and the
signals that follow it the two may differ.) The functions below `load_book` are pure, so the
figures are tested without a database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from loanflow.db import Database
from loanflow.models import LoanState
from loanflow.money import ASSETS
from loanflow.policy import PolicyOverrides, RiskPolicy
from loanflow.risk import collateral_value, cure_repay, cure_top_up, ltv
from loanflow.schema import Loan
from loanflow.store.prices import latest_observation

ZERO = Decimal(0)
BUCKET = Decimal("0.05")
# Loans at or above this LTV share the last bucket (collateral worth less than the debt).
TOP = Decimal("1.00")
# Loans that carry market risk: they have collateral against debt.
OPEN_STATES = frozenset({LoanState.ACTIVE.value, LoanState.MARGIN_CALL.value,
                         LoanState.LIQUIDATING.value})


@dataclass(frozen=True)
class BookLoan:
    """One row of the read model, as the book needs it."""

    loan_id: str
    borrower_id: str
    state: str
    asset: str
    collateral: Decimal
    debt_usd: Decimal
    ltv: Decimal | None  # as the loan last published it
    cure_deadline: datetime | None
    policy: RiskPolicy = RiskPolicy()


@dataclass(frozen=True)
class MarketPrice:
    asset: str
    price: Decimal
    observed_at: datetime


@dataclass(frozen=True)
class StateTotal:
    state: str
    loans: int
    debt_usd: Decimal


@dataclass(frozen=True)
class AssetTotal:
    asset: str
    loans: int
    amount: Decimal
    price: Decimal | None
    observed_at: datetime | None
    value_usd: Decimal | None  # None without a price


@dataclass(frozen=True)
class Bucket:
    """Open loans with low <= LTV < high (high None: the last, open-ended bucket)."""

    low: Decimal
    high: Decimal | None
    loans: int
    debt_usd: Decimal


@dataclass(frozen=True)
class MarginCall:
    loan_id: str
    borrower_id: str
    asset: str
    collateral: Decimal
    debt_usd: Decimal
    ltv: Decimal | None
    price: Decimal | None
    cure_deadline: datetime | None
    cure_target_ltv: Decimal
    cure_top_up: Decimal | None  # None without a price
    cure_repay_usd: Decimal | None


@dataclass(frozen=True)
class Book:
    as_of: datetime
    loans: int
    debt_usd: Decimal
    states: list[StateTotal]
    collateral: list[AssetTotal]
    histogram: list[Bucket]
    unpriced: int  # open loans whose LTV is unknown (no price yet)
    margin_calls: list[MarginCall]


# --- reading the database -----------------------------------------------------------------------


async def load_book(db: Database, now: datetime) -> Book:
    loans = await load_loans(db)
    prices = {}
    for asset in ASSETS:
        latest = await latest_observation(db, asset)
        if latest is not None:
            prices[asset] = MarketPrice(asset, latest.price, latest.observed_at)
    return summarize(loans, prices, now)


async def load_loans(db: Database) -> list[BookLoan]:
    columns = (Loan.loan_id, Loan.borrower_id, Loan.state, Loan.collateral_asset,
               Loan.collateral_amount, Loan.debt_usd, Loan.ltv, Loan.cure_deadline)
    async with db.sessions() as session:
        rows = (await session.execute(select(*columns).order_by(Loan.loan_id))).all()
        # Only a margin call needs its policy (the cure target): read those applications alone.
        applications = dict((await session.execute(
            select(Loan.loan_id, Loan.application).where(Loan.state == LoanState.MARGIN_CALL.value)
        )).all())
    return [
        BookLoan(*row, policy=policy_of(applications.get(row.loan_id))) for row in rows
    ]


def policy_of(application: Mapping[str, Any] | None) -> RiskPolicy:
    """The loan's policy: the defaults with the application's overrides, if it has any. (The
    workflow rejects an application whose overrides are invalid, so a live loan's are valid.)"""
    overrides = (application or {}).get("policy")
    if not overrides:
        return RiskPolicy()
    try:
        return PolicyOverrides.model_validate(overrides).apply(RiskPolicy())
    except (ValidationError, ValueError):
        return RiskPolicy()


# --- the figures --------------------------------------------------------------------------------


def summarize(loans: Sequence[BookLoan], prices: Mapping[str, MarketPrice], now: datetime) -> Book:
    marked = {loan.loan_id: marked_ltv(loan, prices) for loan in loans}
    open_loans = [loan for loan in loans if loan.state in OPEN_STATES]
    return Book(
        as_of=now,
        loans=len(loans),
        debt_usd=sum((loan.debt_usd for loan in loans), ZERO),
        states=by_state(loans),
        collateral=by_asset(loans, prices),
        histogram=histogram(open_loans, marked),
        unpriced=sum(1 for loan in open_loans if marked[loan.loan_id] is None),
        margin_calls=margin_calls(loans, prices, marked),
    )


def marked_ltv(loan: BookLoan, prices: Mapping[str, MarketPrice]) -> Decimal | None:
    """LTV at the latest market price; the loan's own last LTV when there is no price."""
    market = prices.get(loan.asset)
    if market is None or loan.collateral <= 0:
        return loan.ltv
    return ltv(loan.debt_usd, loan.collateral, market.price)


def by_state(loans: Iterable[BookLoan]) -> list[StateTotal]:
    """Every state in lifecycle order, with zeros, so scripts can rely on the keys."""
    count: Counter[str] = Counter()
    debt: dict[str, Decimal] = defaultdict(Decimal)
    for loan in loans:
        count[loan.state] += 1
        debt[loan.state] += loan.debt_usd
    return [StateTotal(s.value, count[s.value], debt[s.value]) for s in LoanState]


def by_asset(loans: Iterable[BookLoan], prices: Mapping[str, MarketPrice]) -> list[AssetTotal]:
    """Collateral the desk holds, per asset (loans still waiting for theirs included), and its
    value at the latest price, rounded down like every collateral value."""
    amount: dict[str, Decimal] = defaultdict(Decimal)
    holders: Counter[str] = Counter()
    for loan in loans:
        if loan.collateral > 0:
            amount[loan.asset] += loan.collateral
            holders[loan.asset] += 1
    totals = []
    for asset in ASSETS:
        market = prices.get(asset)
        value = collateral_value(amount[asset], market.price) if market else None
        totals.append(AssetTotal(asset, holders[asset], amount[asset],
                                 market.price if market else None,
                                 market.observed_at if market else None, value))
    return totals


def bucket_of(value: Decimal) -> int:
    """The index of the 5% bucket that holds an LTV; everything from 100% up shares one."""
    if not value.is_finite() or value >= TOP:
        return int(TOP / BUCKET)
    return int((value / BUCKET).to_integral_value(rounding=ROUND_FLOOR))


def histogram(open_loans: Iterable[BookLoan], marked: Mapping[str, Decimal | None]) -> list[Bucket]:
    """Open loans per 5% LTV bucket, from the lowest bucket in use to the highest (the empty
    ones in between included, so the shape reads right)."""
    count: Counter[int] = Counter()
    debt: dict[int, Decimal] = defaultdict(Decimal)
    for loan in open_loans:
        value = marked[loan.loan_id]
        if value is not None:
            count[bucket_of(value)] += 1
            debt[bucket_of(value)] += loan.debt_usd
    if not count:
        return []
    last = int(TOP / BUCKET)
    return [
        Bucket(BUCKET * i, None if i == last else BUCKET * (i + 1), count[i], debt[i])
        for i in range(min(count), max(count) + 1)
    ]


def margin_calls(loans: Iterable[BookLoan], prices: Mapping[str, MarketPrice],
                 marked: Mapping[str, Decimal | None]) -> list[MarginCall]:
    """Loans in margin call, the nearest deadline first, with what cures each at the latest
    price: collateral to add, or dollars to repay, to bring LTV to the loan's cure target."""
    calls = [call(loan, prices.get(loan.asset), marked[loan.loan_id])
             for loan in loans if loan.state == LoanState.MARGIN_CALL.value]
    return sorted(calls, key=lambda c: (
        c.cure_deadline is None,  # a call without a deadline (not yet published) goes last
        c.cure_deadline.timestamp() if c.cure_deadline else 0.0,
        c.loan_id,
    ))


def call(loan: BookLoan, market: MarketPrice | None, current: Decimal | None) -> MarginCall:
    target = loan.policy.cure_target_ltv
    top_up = repay = None
    if market is not None:
        top_up = cure_top_up(loan.asset, loan.debt_usd, loan.collateral, market.price, target)
        repay = cure_repay(loan.debt_usd, loan.collateral, market.price, target)
    return MarginCall(
        loan_id=loan.loan_id, borrower_id=loan.borrower_id, asset=loan.asset,
        collateral=loan.collateral, debt_usd=loan.debt_usd, ltv=current,
        price=market.price if market else None, cure_deadline=loan.cure_deadline,
        cure_target_ltv=target, cure_top_up=top_up, cure_repay_usd=repay,
    )
