"""Custom search attributes of the loan book (the operations contract). No personal data: search
attributes are stored in clear by Temporal."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

LOAN_STATE = SearchAttributeKey.for_keyword("LoanState")
LOAN_LTV = SearchAttributeKey.for_float("LoanLtv")
COLLATERAL_ASSET = SearchAttributeKey.for_keyword("CollateralAsset")
BORROWER_ID = SearchAttributeKey.for_keyword("BorrowerId")
CURE_DEADLINE = SearchAttributeKey.for_datetime("CureDeadline")
DEBT_USD = SearchAttributeKey.for_float("DebtUsd")

ALL = (LOAN_STATE, LOAN_LTV, COLLATERAL_ASSET, BORROWER_ID, CURE_DEADLINE, DEBT_USD)


def as_double(value: Decimal) -> float:
    """Search attributes of type Double are IEEE floats; used for filtering the book in the Web
    UI only, never for a decision. Money itself stays Decimal."""
    return float(value)


def loan_updates(
    *,
    state: str,
    ltv: Decimal | None,
    asset: str,
    borrower_id: str,
    cure_deadline: datetime | None,
    debt_usd: Decimal,
) -> list[SearchAttributeUpdate]:
    """The full set of updates describing a loan now (unset where a value is absent)."""
    return [
        LOAN_STATE.value_set(state),
        LOAN_LTV.value_set(as_double(ltv)) if ltv is not None and ltv.is_finite()
        else LOAN_LTV.value_unset(),
        COLLATERAL_ASSET.value_set(asset),
        BORROWER_ID.value_set(borrower_id),
        CURE_DEADLINE.value_set(cure_deadline) if cure_deadline else CURE_DEADLINE.value_unset(),
        DEBT_USD.value_set(as_double(debt_usd)),
    ]
