"""Finding loans through Temporal visibility: list filters become a query on the loan search
attributes (the same query an operator types into the Web UI), and each execution becomes a
row. Search attributes of type Double are floats; they only ever filter and display here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from typing import TYPE_CHECKING

from loanflow import search_attributes as sa
from loanflow.cli.ids import WORKFLOW_PREFIX, WORKFLOW_TYPE
from loanflow.cli.errors import CliError
from loanflow.cli.output import decimal_text
from loanflow.models import LoanState
from loanflow.money import ASSETS

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecution

# A bare number at or above this is surely a percentage typed without its '%'.
RATIO_CEILING = Decimal(2)


@dataclass(frozen=True)
class Filters:
    states: tuple[str, ...] = ()
    asset: str | None = None
    borrower: str | None = None
    ltv_min: Decimal | None = None
    ltv_max: Decimal | None = None
    running_only: bool = False


@dataclass(frozen=True)
class LoanRow:
    loan_id: str
    state: str | None
    collateral_asset: str | None
    ltv: Decimal | None
    debt_usd: Decimal | None
    borrower_id: str | None
    cure_deadline: datetime | None
    workflow_status: str
    started_at: datetime


def make_filters(*, states: list[str], asset: str | None, borrower: str | None,
                 ltv_min: str | None, ltv_max: str | None, running_only: bool) -> Filters:
    """Validate what the operator typed; errors name the option."""
    return Filters(
        states=tuple(check_state(s) for s in states),
        asset=check_asset(asset) if asset else None,
        borrower=keyword("borrower", borrower) if borrower else None,
        ltv_min=parse_ltv("ltv-min", ltv_min),
        ltv_max=parse_ltv("ltv-max", ltv_max),
        running_only=running_only,
    )


def check_state(state: str) -> str:
    value = state.strip().upper()
    if value not in LoanState.__members__:
        names = ", ".join(LoanState.__members__)
        raise CliError(f"state: {state!r} is not a loan state ({names})")
    return value


def check_asset(asset: str) -> str:
    value = asset.strip().upper()
    if value not in ASSETS:
        raise CliError(f"asset: {asset!r} is not supported ({' or '.join(ASSETS)})")
    return value


def keyword(option: str, value: str) -> str:
    """A value placed inside quotes in the query: quotes would end the string early."""
    if "'" in value or '"' in value or not value.strip():
        raise CliError(f"{option}: {value!r} must be non-empty and contain no quotes")
    return value.strip()


def parse_ltv(option: str, text: str | None) -> Decimal | None:
    """'0.7' or '70%' -> Decimal('0.7')."""
    if text is None:
        return None
    raw = text.strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise CliError(f"{option}: {text!r} is not a ratio (0.7) or a percentage (70%)") from None
    if not value.is_finite() or value < 0:
        raise CliError(f"{option}: {text!r} must be zero or more")
    if not raw.endswith("%") and value >= RATIO_CEILING:
        raise CliError(f"{option}: {text!r} looks like a percentage: write {raw}% or "
                       f"{value / 100} (a ratio)")
    return value


def list_query(filters: Filters) -> str:
    """The visibility query for the filters (all of them must hold)."""
    # A loan's earlier runs keep the search attributes they handed over with (every onboarded
    # loan continues as new once ACTIVE): its current run alone is the loan.
    current = "= 'Running'" if filters.running_only else "!= 'ContinuedAsNew'"
    parts = [f"WorkflowType = '{WORKFLOW_TYPE}'", f"ExecutionStatus {current}"]
    if filters.states:
        quoted = ", ".join(f"'{s}'" for s in filters.states)
        parts.append(f"{sa.LOAN_STATE.name} IN ({quoted})")
    if filters.asset:
        parts.append(f"{sa.COLLATERAL_ASSET.name} = '{filters.asset}'")
    if filters.borrower:
        parts.append(f"{sa.BORROWER_ID.name} = '{filters.borrower}'")
    # Plain digits: `--ltv-min 7e-1` must not print (or query) `LoanLtv >= 7E-1`.
    if filters.ltv_min is not None:
        parts.append(f"{sa.LOAN_LTV.name} >= {decimal_text(filters.ltv_min)}")
    if filters.ltv_max is not None:
        parts.append(f"{sa.LOAN_LTV.name} <= {decimal_text(filters.ltv_max)}")
    return " AND ".join(parts)


async def find_loans(client: Client, query: str, limit: int | None) -> list[LoanRow]:
    return [row_of(execution) async for execution in client.list_workflows(query, limit=limit)]


def row_of(execution: WorkflowExecution) -> LoanRow:
    attrs = execution.typed_search_attributes
    return LoanRow(
        loan_id=execution.id.removeprefix(WORKFLOW_PREFIX),
        state=attrs.get(sa.LOAN_STATE),
        collateral_asset=attrs.get(sa.COLLATERAL_ASSET),
        ltv=as_decimal(attrs.get(sa.LOAN_LTV)),
        debt_usd=as_decimal(attrs.get(sa.DEBT_USD)),
        borrower_id=attrs.get(sa.BORROWER_ID),
        cure_deadline=attrs.get(sa.CURE_DEADLINE),
        workflow_status=execution.status.name if execution.status else "UNKNOWN",
        started_at=execution.start_time,
    )


def as_decimal(value: float | None) -> Decimal | None:
    """A Double search attribute as the shortest Decimal that round-trips (0.7, not
    0.6999999999999999555910790149937)."""
    return None if value is None else Decimal(repr(value))
