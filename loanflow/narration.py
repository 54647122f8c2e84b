"""The `loanflow up` console's running commentary: one line for each thing the desk does to a
loan (a disbursement, a margin call, a cure, a sale, a default, a close), as it happens.

The lines come from the loans' audit trail in the database (every decision is recorded there
with the figures it used), read every half second from where the stack started: a restarted
stack narrates what happens from then on, not the book's whole past.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select

from loanflow.db import Database
from loanflow.loan_metadata import people_time
from loanflow.money import fmt_ratio, fmt_units, fmt_usd
from loanflow.schema import AuditRecord, Loan

Say = Callable[[str], None]
POLL_SECONDS = 0.5
# Final states worth a line of their own (the decision that led to them has its own line).
ENDINGS = {"CLOSED", "DEFAULTED", "CANCELLED", "REJECTED"}
# The audit trail's codes in words.
CURES = {"top_up": "a top-up", "repayment": "a repayment", "market": "the market"}
DUST = {"dust": "; all of it: what a partial sale would leave was too small to size to the cent"}
CAUSES = {"hard_floor": "past the hard floor", "liquidation_level": "at the liquidation level",
          "cure_deadline": "cure deadline passed", "maturity": "unpaid after maturity"}


def number(value: Any) -> Decimal | None:
    """A figure of the audit detail (recorded as a string) as a Decimal; None if absent."""
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value: Any) -> str:
    amount = number(value)
    return "?" if amount is None else fmt_usd(amount)


def ltv(value: Any) -> str:
    return fmt_ratio(number(value))


def units(asset: str, value: Any) -> str:
    amount = number(value)
    return f"? {asset}" if amount is None else fmt_units(asset, amount)


def deadline(value: Any) -> str:
    try:
        return people_time(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return str(value)


def at_price(asset: str, price: Decimal | None) -> str:
    return "" if price is None else f" at {asset} {fmt_usd(price)}"


def line(kind: str, detail: dict[str, Any], asset: str, price: Decimal | None) -> str | None:
    """What a person is told about one decision; None for the desk's inner workings (screening,
    waiting for prices, pending confirmations), which the audit trail keeps for disputes."""
    d, p = detail, at_price(asset, price)
    texts: dict[str, Callable[[], str]] = {
        "disbursed": lambda: f"disbursed {money(d.get('principal'))}{p}",
        "deposit": lambda: f"collateral received: {units(asset, d.get('amount'))}",
        "top_up": lambda: f"top-up received: {units(asset, d.get('amount'))}",
        "repayment": lambda: f"repayment received: {money(d.get('amount'))} "
                             f"(reference {d.get('reference')})",
        "ltv_warning": lambda: f"LTV warning: LTV {ltv(d.get('ltv'))}{p}",
        "margin_call": lambda: f"MARGIN CALL: LTV {ltv(d.get('ltv'))}{p}; cure by adding "
                               f"{units(asset, d.get('cure_top_up'))} or repaying "
                               f"{money(d.get('cure_repay_usd'))} by "
                               f"{deadline(d.get('cure_deadline'))}",
        "reminder": lambda: f"margin-call reminder sent: {d.get('hours_before')} h left, "
                            f"LTV {ltv(d.get('ltv'))}",
        "cure_extended": lambda: f"cure deadline extended by {d.get('hours')} h to "
                                 f"{deadline(d.get('cure_deadline'))} by {d.get('operator')}",
        "cured": lambda: f"margin call cured by {CURES.get(d.get('how'), d.get('how'))}: "
                         f"LTV {ltv(d.get('ltv'))}{p}",
        "liquidation": lambda: f"SOLD {units(asset, d.get('quantity'))} at "
                               f"{money(d.get('fill_price'))} "
                               f"({CAUSES.get(d.get('cause'), d.get('cause'))}): "
                               f"{money(d.get('applied'))} applied, fee {money(d.get('fee'))}, "
                               f"LTV {ltv(d.get('ltv_before'))} -> {ltv(d.get('ltv_after'))}"
                               + DUST.get(d.get("closed_out"), ""),
        "liquidation_short": lambda: "sale short of target (the market was below the limit): "
                                     "the rest is sold at the next price",
        "sale_waits_for_agreement": lambda: f"sale due{p} but the venues disagree: waiting",
    }
    if kind == "state" and d.get("new") in ENDINGS:
        reason = f" ({d['reason']})" if d.get("reason") else ""
        return f"{d['new']}{reason}"
    text = texts.get(kind)
    return None if text is None else text()


class Narrator:
    """Reads the audit trail past the last row it has told, and says each new decision."""

    def __init__(self, db: Database, say: Say) -> None:
        self.db, self.say = db, say
        self.last_id = 0

    async def start_here(self) -> None:
        """Tell only what happens from now on."""
        async with self.db.sessions() as session:
            self.last_id = (await session.scalar(select(func.max(AuditRecord.id)))) or 0

    async def tell_new(self) -> int:
        """Say every decision recorded since the last call; how many rows were read."""
        query = (select(AuditRecord, Loan.collateral_asset)
                 .outerjoin(Loan, Loan.loan_id == AuditRecord.loan_id)
                 .where(AuditRecord.id > self.last_id).order_by(AuditRecord.id).limit(500))
        async with self.db.sessions() as session:
            rows = (await session.execute(query)).all()
        for record, asset in rows:
            self.last_id = record.id
            text = line(record.kind, dict(record.detail or {}), asset or "", record.price)
            if text is not None:
                self.say(f"  {record.loan_id}: {text}")
        return len(rows)

    async def run(self) -> None:
        paused = False
        while True:
            try:
                await self.tell_new()
                paused = False
            except Exception as err:  # noqa: BLE001  (a commentary must never stop the stack)
                if not paused:  # once per outage, not every half second
                    self.say(f"  (narration paused: cannot read the audit trail: {err})")
                paused = True
            await asyncio.sleep(POLL_SECONDS)


@contextlib.asynccontextmanager
async def narrating(db: Database, say: Say) -> AsyncIterator[Narrator]:
    """Narrate the desk while the block runs."""
    narrator = Narrator(db, say)
    await narrator.start_here()
    task = asyncio.create_task(narrator.run())
    try:
        yield narrator
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
