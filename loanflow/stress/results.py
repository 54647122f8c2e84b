"""results.json: what the window did to every loan, read from the private database's audit
trail (the decisions the loans themselves recorded), in window time.

Deterministic by construction: loans in book order, events in each loan's own audit order,
times to the second in window time, decimals as strings, nothing from the wall clock. An event
is dated by the price observation it acted on (every tick is stamped with its own hour), so a
deadline sale is dated at its deadline hour whatever the machine's speed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from loanflow import ledger
from loanflow.db import Database
from loanflow.money import tidy
from loanflow.notice_schema import SENT, OutboxRow
from loanflow.policy import RiskPolicy
from loanflow.schema import (
    AuditRecord,
    ExchangeOrder,
    LedgerEntry,
    LedgerLineRow,
    MarketTick,
    PriceObservation,
)
from loanflow.stress.book import BookLoan, bucket_label
from loanflow.stress.clock import Clock, iso
from loanflow.stress.prices import PriceSet
from loanflow.stress.policies import NamedPolicy

KINDS = {"ltv_warning": "warning", "margin_call": "margin_call", "cured": "cured",
         "liquidation": "liquidation"}
FINAL_STATES = {"DEFAULTED": "default", "CLOSED": "closed"}
# The loan's own names for why it sold -> the report's.
CAUSES = {"cure_deadline": "deadline", "liquidation_level": "confirmed",
          "hard_floor": "hard_floor", "maturity": "maturity"}
SALE_CAUSES = ("deadline", "confirmed", "hard_floor")


async def collect(db: Database, clock: Clock, prices: PriceSet, loans: Sequence[BookLoan],
                  policies: Sequence[NamedPolicy]) -> dict[str, Any]:
    async with db.sessions() as session:
        audit = (await session.scalars(select(AuditRecord).order_by(AuditRecord.id))).all()
        observed = dict((await session.execute(
            select(PriceObservation.id, PriceObservation.observed_at))).all())
        ticks = (await session.scalars(
            select(MarketTick).where(MarketTick.status == "no_price")
            .order_by(MarketTick.at, MarketTick.asset))).all()
        emails = dict((await session.execute(
            select(OutboxRow.loan_id, func.count()).where(OutboxRow.status == SENT)
            .group_by(OutboxRow.loan_id))).all())
        written_off = (await session.execute(
            select(LedgerEntry.loan_id, LedgerLineRow.amount)
            .join(LedgerLineRow, LedgerLineRow.entry_id == LedgerEntry.id)
            .where(LedgerLineRow.account == ledger.SHORTFALL_LOSS))).all()
        sales = (await session.execute(
            select(ExchangeOrder.loan_id, ExchangeOrder.gross_usd))).all()
    by_loan: dict[str, list[AuditRecord]] = defaultdict(list)
    for row in audit:
        by_loan[row.loan_id].append(row)
    money = Money(bad_debt=_sums(written_off), proceeds=_sums(sales), emails=emails)
    entries = [loan_entry(loan, events(by_loan[loan.loan_id], observed, clock)) for loan in loans]
    return {
        "window": {"start": iso(prices.first_tick), "end": iso(prices.last_tick),
                   "assets": prices.assets()},
        "policies": [describe_policy(p) for p in policies],
        "no_price_hours": [
            {"at": iso(clock.to_window(t.at)), "asset": t.asset, "reasons": list(t.reasons)}
            for t in ticks
        ],
        "loans": entries,
        "summary": summarise(entries, policies, money, prices),
    }


def loan_entry(loan: BookLoan, loan_events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "loan_id": loan.loan_id, "policy": loan.policy, "asset": loan.collateral_asset,
        "ltv0": str(loan.ltv0), "principal_usd": str(loan.principal_usd),
        "annual_rate": str(loan.annual_rate), "collateral_amount": str(loan.collateral_amount),
        "events": loan_events,
    }


def events(rows: Iterable[AuditRecord], observed: Mapping[int, datetime],
           clock: Clock) -> list[dict[str, Any]]:
    """A loan's audit trail as the report's events, oldest first."""
    out: list[dict[str, Any]] = []
    for row in sorted(rows, key=_audit_seq):
        kind = KINDS.get(row.kind)
        if kind is None and row.kind == "state":
            kind = FINAL_STATES.get((row.detail or {}).get("new", ""))
        if kind is None:
            continue
        out.append(event(kind, row, _dated(row, observed, clock, out)))
    return out


def event(kind: str, row: AuditRecord, at: datetime) -> dict[str, Any]:
    detail = row.detail or {}
    sale = kind == "liquidation"
    return {
        "at": iso(at),
        "kind": kind,
        "ltv": detail.get("ltv_before" if sale else "ltv"),
        "price": None if row.price is None else str(tidy(row.price)),
        "quantity_sold": detail.get("quantity") if sale else None,
        "ltv_after": detail.get("ltv_after") if sale else None,
        "cause": CAUSES.get(detail.get("cause", ""), detail.get("cause")) if sale else None,
    }


def _dated(row: AuditRecord, observed: Mapping[int, datetime], clock: Clock,
           earlier: list[dict[str, Any]]) -> datetime:
    """The hour of the observation the decision acted on; a state change without one (a
    default, a close) follows the sale that caused it."""
    if row.observation_id is not None and row.observation_id in observed:
        return clock.to_window(observed[row.observation_id])
    if earlier:
        return datetime.fromisoformat(earlier[-1]["at"].replace("Z", "+00:00"))
    at = clock.to_window(row.at)
    return at.replace(minute=0, second=0, microsecond=0)


def _audit_seq(row: AuditRecord) -> int:
    return int(row.key.rsplit(":", 1)[1])  # L1:audit:<n>: the loan's own order


def describe_policy(policy: NamedPolicy) -> dict[str, Any]:
    overrides = policy.overrides.model_dump(mode="json", exclude_none=True) if policy.overrides else {}
    rules = policy.overrides.apply(RiskPolicy()) if policy.overrides else RiskPolicy()
    return {"name": policy.name, "overrides": overrides, "policy": rules.model_dump(mode="json")}


# --- the summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """Per loan, from the books rather than the audit: bad debt written off (ledger), gross
    sale proceeds (the venue's fills) and e-mails the mail server accepted (outbox)."""

    bad_debt: Mapping[str, Decimal]
    proceeds: Mapping[str, Decimal]
    emails: Mapping[str, int]


def _sums(rows: Iterable[Any]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for loan_id, amount in rows:
        totals[loan_id] += Decimal(amount)
    return dict(totals)


def summarise(entries: Sequence[dict[str, Any]], policies: Sequence[NamedPolicy],
              money: Money, prices: PriceSet) -> dict[str, Any]:
    buckets = sorted({Decimal(e["ltv0"]) for e in entries})
    by_bucket = []
    for policy in policies:
        for bucket in buckets:
            chosen = [e for e in entries if e["policy"] == policy.name
                      and Decimal(e["ltv0"]) == bucket]
            if chosen:
                by_bucket.append({"policy": policy.name, "ltv0": str(bucket),
                                  **tally(chosen, money)})
    by_policy = [{"policy": p.name, **tally([e for e in entries if e["policy"] == p.name], money)}
                 for p in policies]
    return {
        "loans": len(entries),
        "hours": len(prices.ticks()),
        "venues": {a: prices.venues(a) for a in prices.assets()},
        "quorum": prices.rules().quorum,
        "by_policy": by_policy,
        "by_bucket": by_bucket,
    }


def tally(entries: Sequence[dict[str, Any]], money: Money) -> dict[str, Any]:
    """Counts and sums over some loans' events (a policy, or a policy's LTV bucket)."""
    count: Counter[str] = Counter()
    sold: dict[str, Decimal] = defaultdict(Decimal)
    causes: Counter[str] = Counter()
    after: list[Decimal] = []
    for entry in entries:
        kinds = {e["kind"] for e in entry["events"]}
        for e in entry["events"]:
            count[e["kind"]] += 1
            if e["kind"] == "liquidation":
                causes[e["cause"] or "other"] += 1
                sold[entry["asset"]] += Decimal(e["quantity_sold"] or 0)
                if e["ltv_after"] is not None:
                    after.append(Decimal(e["ltv_after"]))
        count["loans_called"] += "margin_call" in kinds
        count["loans_sold"] += "liquidation" in kinds
    return {
        "loans": len(entries),
        "warnings": count["warning"],
        "margin_calls": count["margin_call"],
        "cures": count["cured"],
        "sales": count["liquidation"],
        "sales_by_cause": {c: causes[c] for c in (*SALE_CAUSES, *sorted(set(causes) - set(SALE_CAUSES)))},
        "loans_called": count["loans_called"],
        "loans_sold": count["loans_sold"],
        "collateral_sold": {a: str(tidy(q)) for a, q in sorted(sold.items())},
        "ltv_after_sales": spread(after),
        "defaults": count["default"],
        "sale_proceeds_usd": _usd(money.proceeds, entries),
        "bad_debt_usd": _usd(money.bad_debt, entries),
        "emails_sent": sum(money.emails.get(e["loan_id"], 0) for e in entries),
    }


def _usd(per_loan: Mapping[str, Decimal], entries: Sequence[dict[str, Any]]) -> str:
    total = sum((per_loan.get(e["loan_id"], Decimal(0)) for e in entries), Decimal(0))
    return str(total.quantize(Decimal("0.01")))


def spread(values: Sequence[Decimal]) -> dict[str, str | None]:
    if not values:
        return {"mean": None, "min": None, "max": None}
    mean = (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.0001"))
    places = Decimal("0.0001")
    return {"mean": str(mean), "min": str(min(values).quantize(places)),
            "max": str(max(values).quantize(places))}


def write(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def bucket_name(ltv0: str) -> str:
    return f"{bucket_label(Decimal(ltv0))}%"


