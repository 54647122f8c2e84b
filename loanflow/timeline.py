"""A loan's timeline from the database: its decisions (the audit trail), the notices it sent
(with their e-mail's delivery status) and its ledger entries, merged in time order.

This is what a person reads in a dispute: what the loan decided, on which price and
thresholds, what it told the borrower, and what it booked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from loanflow.db import Database
from loanflow.money import WIDE, fmt_ratio
from loanflow.notice_schema import NoticeRow, OutboxRow
from loanflow.schema import AuditRecord, LedgerEntry, Loan

DECISION, NOTICE, LEDGER = "decision", "notice", "ledger"
# At the same instant a decision comes before the notice and the booking it caused.
_RANK = {DECISION: 0, NOTICE: 1, LEDGER: 2}


@dataclass(frozen=True)
class Event:
    at: datetime
    source: str  # decision | notice | ledger
    kind: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


async def load_timeline(db: Database, loan_id: str) -> list[Event] | None:
    """Every event of the loan, oldest first; None if the database has never seen the loan."""
    async with db.sessions() as session:
        known = await session.get(Loan, loan_id)
        audit = (await session.scalars(
            select(AuditRecord).where(AuditRecord.loan_id == loan_id).order_by(AuditRecord.id)
        )).all()
        notices = (await session.execute(
            select(NoticeRow, OutboxRow)
            .outerjoin(OutboxRow, OutboxRow.notice_key == NoticeRow.key)
            .where(NoticeRow.loan_id == loan_id)
        )).all()
        entries = (await session.scalars(
            select(LedgerEntry).where(LedgerEntry.loan_id == loan_id).order_by(LedgerEntry.id)
        )).all()
    if known is None and not (audit or notices or entries):
        return None
    events = [decision(r) for r in audit]
    events += [notice(n, o) for n, o in notices]
    events += [booking(e) for e in entries]
    return in_order(events)


def in_order(events: Iterable[Event]) -> list[Event]:
    # sorted() is stable: events of one source keep their database order within an instant.
    return sorted(events, key=lambda e: (e.at, _RANK[e.source]))


def decision(row: AuditRecord) -> Event:
    detail = dict(row.detail or {})
    if row.price is not None:
        detail["price"] = plain(row.price)
    if row.kind == "state":
        summary = f"{detail.get('previous')} -> {detail.get('new')}"
        if detail.get("reason"):
            summary += f" ({detail['reason']})"
    else:
        summary = describe(detail)
    return Event(row.at, DECISION, row.kind, summary, {"key": row.key, **detail})


def notice(row: NoticeRow, outbox: OutboxRow | None) -> Event:
    status = outbox.status if outbox is not None else "recorded"
    to = outbox.to_address if outbox is not None else row.borrower.get("email", "?")
    summary = f"to {to}: {status}"
    if outbox is not None and outbox.last_error:
        summary += f" ({outbox.last_error})"
    detail = {"key": row.key, "status": status, "to": to, **row.data}
    return Event(row.created_at, NOTICE, row.kind, summary, detail)


def booking(entry: LedgerEntry) -> Event:
    lines = [
        {"account": x.account, "currency": x.currency, "amount": x.amount} for x in entry.lines
    ]
    legs = "; ".join(f"{x['account']} {signed(x['amount'])} {x['currency']}" for x in lines)
    return Event(entry.created_at, LEDGER, "entry", f"{entry.memo}: {legs}",
                 {"key": entry.key, "memo": entry.memo, "lines": lines})


def describe(detail: dict[str, Any]) -> str:
    """`name=value` pairs of a decision's details, empty values left out; LTVs as people read
    them (the audit keeps the workflow's exact ratio, up to 60 digits)."""
    return ", ".join(f"{k}={shown(k, v)}" for k, v in detail.items()
                     if v not in (None, "", [], {}))


def shown(name: str, value: Any) -> Any:
    """An LTV detail (`ltv`, `ltv_before`, `margin_call_ltv`, ...) as a percentage; the rest as
    it is."""
    if "ltv" not in name or not isinstance(value, (str, Decimal)):
        return value
    try:
        ratio = Decimal(value)
    except ArithmeticError:
        return value
    return fmt_ratio(ratio) if not ratio.is_nan() else value


def signed(amount: Decimal) -> str:
    """Debits with a plus sign, credits with a minus sign."""
    text = plain(amount)
    return text if amount < 0 else f"+{text}"


def plain(amount: Decimal) -> str:
    """Digits without an exponent or trailing zeros: 2000, not 2E+3 (SQLite hands back
    normalised decimals) nor 2000.000000000000000000 (PostgreSQL's NUMERIC(38, 18))."""
    return format(amount.normalize(WIDE), "f")
