"""The loan book of the benchmark: N active loans over BTC and ETH with a realistic spread of
LTVs, opened through the real `LoanWorkflow` (KYC, approval on a fresh price, deposit,
disbursement) with bounded concurrency.

LTVs: every loan was opened at or under the 50% maximum, most of them near the top of the
range (triangular between 20% and 50%, mode 42%), at a BTC price 25% above today's: the book
has been through a 20% drawdown, so its current LTVs run from 25% to 62.5%, the way a desk's
book looks before the next leg down.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select
from temporalio.client import (Client, WorkflowUpdateFailedError,
                               WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateStage)
from temporalio.service import RPCError

from activities.market import bounded
from loanflow.db import Database
from loanflow.models import Borrower, LoanApplication
from loanflow.money import units_down, usd_down
from loanflow.schema import Loan

# Prices of the book: BTC opened at 26,750 and now trades at 21,400 (FTX week's start); ETH is
# left alone (only BTC crashes).
SEED_PRICES = {"BTC": Decimal("26750"), "ETH": Decimal("2000")}
START_PRICES = {"BTC": Decimal("21400"), "ETH": Decimal("2000")}
LTV_LOW, LTV_MODE, LTV_HIGH = 0.20, 0.42, 0.50
COUNTRIES = ("GB", "US", "DE", "SG", "CH", "FR", "NL", "JP", "CA", "AU")



class Progress(Protocol):
    def advance(self, name: str, amount: int = 1) -> None: ...

    def set(self, name: str, completed: int) -> None: ...


@dataclass(frozen=True)
class Plan:
    loan_id: str
    app: LoanApplication
    seed_ltv: Decimal


def plan_book(n: int, seed: int = 42, prices: dict[str, Decimal] | None = None,
              prefix: str = "BK") -> list[Plan]:
    """N applications, 60% BTC, each at a drawn LTV of its collateral at the seed price."""
    prices = prices or SEED_PRICES
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        asset = "BTC" if rng.random() < 0.6 else "ETH"
        ltv = Decimal(str(round(rng.triangular(LTV_LOW, LTV_HIGH, LTV_MODE), 4)))
        # collateral from 0.2 to 10 BTC (3 to 150 ETH), log-uniform: many small, some large
        low, high = (0.2, 10.0) if asset == "BTC" else (3.0, 150.0)
        amount = units_down(asset, Decimal(str(round(low * (high / low) ** rng.random(), 6))))
        principal = usd_down(amount * prices[asset] * ltv)
        loan_id = f"{prefix}-{i:06d}"
        borrower = Borrower(id=f"BB-{i:06d}", name=f"Borrower {i}", email=f"b{i}@example.com",
                            country=COUNTRIES[i % len(COUNTRIES)])
        app = LoanApplication(loan_id=loan_id, borrower=borrower, principal_usd=principal,
                              collateral_asset=asset, collateral_amount=amount, term_days=365,
                              annual_rate=Decimal("0.11"))
        plans.append(Plan(loan_id, app, ltv))
    return plans


class Window:
    """At most `size` loans in onboarding (started, not yet ACTIVE) at a time. Started all at
    once, 10,000 loans flood the workers with first workflow tasks and no loan gets through
    onboarding before every one has started; a window keeps onboarding a steady pipeline."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.started = 0
        self.active = 0
        self._moved = asyncio.Event()

    async def admit(self) -> None:
        while self.started - self.active >= self.size:
            self._moved.clear()
            await self._moved.wait()
        self.started += 1

    def set_active(self, active: int) -> None:
        self.active = active
        self._moved.set()


async def start_loans(client: Client, plans: list[Plan], task_queue: str, concurrency: int,
                      progress: Progress, memo: dict[str, Any] | None = None,
                      window: Window | None = None) -> None:
    async def start(plan: Plan) -> None:
        if window is not None:
            await window.admit()
        await client.start_workflow("LoanWorkflow", plan.app, id=f"loan-{plan.loan_id}",
                                    task_queue=task_queue, memo=memo)
        progress.advance("started")

    await bounded(plans, concurrency, start)


async def fund_loans(client: Client, db: Database, plans: list[Plan], concurrency: int,
                     progress: Progress, poll: float = 0.5, window: Window | None = None) -> None:
    """Confirm each loan's deposit as soon as the read model shows it waiting for collateral
    (the `confirm_deposit` validator refuses it before), until every loan is ACTIVE."""
    by_id = {p.loan_id: p for p in plans}
    funded: set[str] = set()  # confirmations accepted or in flight

    async def confirm(loan_id: str) -> None:
        plan = by_id[loan_id]
        handle = client.get_workflow_handle(f"loan-{loan_id}")
        deposit = {"amount": str(plan.app.collateral_amount), "tx_id": f"{loan_id}-deposit"}
        try:
            # Accepted is enough: the loan takes it from there (under load, waiting for the
            # update to complete can outlast the server's long poll).
            await handle.start_update("confirm_deposit", deposit,
                                      wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
            # Refused (the read model showed the loan waiting before the loan itself was: a
            # workflow task that timed out under load), or not known to have landed: again on
            # the next poll while the read model shows it waiting. A copy of one that did land
            # is refused by its tx id, so the deposit counts once either way. (A refusal taken
            # for "landed" left one loan of 1,000 unfunded and the seeding waiting forever.)
            funded.discard(loan_id)
            return
        progress.advance("funded")

    while True:
        waiting = await loans_in_state(db, "AWAITING_COLLATERAL", by_id)
        todo = [loan_id for loan_id in waiting if loan_id not in funded]
        funded.update(todo)
        if todo:
            await bounded(todo, concurrency, confirm)
        active = await count_state(db, "ACTIVE", prefix_of(plans))
        progress.set("active", active)
        if window is not None:
            window.set_active(active)
        if active >= len(plans):
            return
        if not any(loan_id in funded for loan_id in todo):
            await asyncio.sleep(poll)  # nothing new taken: do not hammer a loan that refuses


def prefix_of(plans: list[Plan]) -> str:
    return plans[0].loan_id.split("-")[0] + "-"


async def loans_in_state(db: Database, state: str, ids: dict[str, Any]) -> list[str]:
    async with db.transaction() as s:
        rows = await s.scalars(select(Loan.loan_id).where(Loan.state == state))
        return [r for r in rows if r in ids]


async def count_state(db: Database, state: str, prefix: str) -> int:
    async with db.transaction() as s:
        query = select(func.count()).where(Loan.state == state, Loan.loan_id.like(f"{prefix}%"))
        return int(await s.scalar(query) or 0)
