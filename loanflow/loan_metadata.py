"""What the Temporal Web UI shows of a loan, in people's words: the static summary and details
given when the loan's workflow starts, and the current details the loan keeps up to date.

Temporal stores user metadata in clear on its side (the payload codec encrypts what loanflow
sends, but the list view and the CLI show summaries to anyone who can read the namespace): no
personal data here, only the borrower's id, never a name or an address.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from loanflow.models import LoanApplication
from loanflow.money import fmt_ratio, fmt_units, fmt_usd

# Fixed names, not the locale's: the worker's locale must not change what the UI shows.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def people_time(moment: datetime) -> str:
    """A moment as a person reads it: `Thu 3 Dec 2026, 16:08 UTC`."""
    at = moment.astimezone(timezone.utc)
    return (f"{_DAYS[at.weekday()]} {at.day} {_MONTHS[at.month - 1]} {at.year}, "
            f"{at:%H:%M} UTC")


def static_summary(app: LoanApplication) -> str:
    """One line for the workflow list and the loan's page header."""
    return (f"Loan {app.loan_id} · borrower {app.borrower.id} · {app.collateral_asset} · "
            f"principal {fmt_usd(app.principal_usd)}")


def static_details(app: LoanApplication) -> str:
    """The loan's terms as it was applied for (markdown)."""
    return "\n".join([
        f"**Loan {app.loan_id}**",
        "",
        f"- borrower: {app.borrower.id}",
        f"- principal: {fmt_usd(app.principal_usd)}",
        f"- collateral: {fmt_units(app.collateral_asset, app.collateral_amount)}",
        f"- term: {app.term_days} days at {fmt_ratio(app.annual_rate)} a year",
    ])


def start_metadata(app: LoanApplication) -> dict[str, Any]:
    """The keyword arguments of `Client.start_workflow` that give a loan its summary."""
    return {"static_summary": static_summary(app), "static_details": static_details(app)}


def current_details(*, state: str, ltv: Decimal | None, debt: Decimal, collateral: Decimal,
                    asset: str, deadlines: list[tuple[str, datetime]],
                    reason: str | None, started: LoanApplication | None = None) -> str:
    """The loan now (markdown): state, LTV, debt and collateral, and the deadlines that
    matter in this state, in people's formats; last, for a run that continued as new (the
    SDK cannot give such a run a summary of its own), the summary and terms its loan was
    started with (`started`)."""
    lines = [f"**{state}**",
             f"LTV {fmt_ratio(ltv)} · debt {fmt_usd(debt)} · "
             f"collateral {fmt_units(asset, collateral)}"]
    lines += [f"{name}: {people_time(at)}" for name, at in deadlines]
    if reason:
        lines.append(f"reason: {reason}")
    if started is not None:
        lines += [static_summary(started), static_details(started)]
    return "\n\n".join(lines)
