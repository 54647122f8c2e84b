"""The market monitor's harness: the time-skipping server, a worker with the loan and monitor
workflows and every real activity (the fan-out signals through the test server's client),
SQLite, a real SMTP server, and a tiny recorder workflow that stands in for a loan where a test
only cares which loans were signalled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.registry import build_activities
from activities.store import upsert_snapshot
from loanflow.db import Database
from loanflow.effects import LoanSnapshot
from loanflow.models import LoanState, LoanStatus
from loanflow.prices.messages import LIVE_MONITOR_ID, ManualTick, MonitorInput, TickSummary
from loanflow.prices.sources import Quote
from loanflow.risk import trigger_price
from loanflow.worker import WORKFLOWS
from tests.market.recorder import PriceRecorder
from tests.support import Inbox, idle, quiet_settings
from tests.workflows.book import application
from tests.workflows.conftest import Desk, ts_env  # noqa: F401  (the shared time-skipping server)
from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

D = Decimal
UTC = timezone.utc


@pytest_asyncio.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}")
    await database.create_all()
    yield database
    await database.dispose()


class Market(Desk):
    """One test's desk with its market monitor."""

    def track(self, handle: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
        self.handles.append(handle)
        return handle

    async def start_monitor(self, spec: MonitorInput | None = None,
                            monitor_id: str = LIVE_MONITOR_ID) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            MarketMonitor.run, spec or MonitorInput(), id=f"{monitor_id}-{uuid.uuid4().hex[:6]}",
            task_queue=self.task_queue,
        )
        return self.track(handle)

    async def tick(self, monitor: WorkflowHandle[Any, Any], asset: str, *prices: str,
                   venues: tuple[str, ...] = ("bitstamp", "coinbase", "kraken")) -> TickSummary:
        """A manual tick: each price from one venue, quoted now."""
        quotes = [Quote(venue=v, asset=asset, price=D(p)) for v, p in zip(venues, prices)]
        return await monitor.execute_update("tick", ManualTick(quotes=quotes),
                                            result_type=TickSummary)

    async def recorder(self, loan_id: str) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            PriceRecorder.run, id=f"loan-{loan_id}", task_queue=self.task_queue)
        return self.track(handle)

    async def publish(self, loan_id: str, asset: str, debt: str, amount: str = "1",
                      state: str = "ACTIVE") -> LoanSnapshot:
        """Publish a loan's triggers to the read model the way `record_loan` does."""
        snapshot = book_snapshot(loan_id, asset, D(debt), D(amount), state)
        async with self.db.transaction() as session:
            await upsert_snapshot(session, snapshot)
        return snapshot


def book_snapshot(loan_id: str, asset: str, debt: Decimal, amount: Decimal,
                  state: str = "ACTIVE", version: int = 1) -> LoanSnapshot:
    def trigger(threshold: str) -> Decimal | None:
        return trigger_price(debt, amount, D(threshold))

    return LoanSnapshot(
        loan_id=loan_id, version=version, borrower_id="B-1", state=state,
        collateral_asset=asset, collateral_amount=amount, principal_usd=debt, debt_usd=debt,
        ltv=None, cure_deadline=None, warning_price=trigger("0.65"),
        margin_call_price=trigger("0.70"), liquidation_price=trigger("0.80"),
        cure_price=trigger("0.60"), updated_at=datetime(2022, 11, 1, tzinfo=UTC),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def market(
    ts_env: WorkflowEnvironment,  # noqa: F811
    sqlite_db: Database,
    smtp_server: tuple[Inbox, int],
) -> AsyncIterator[Market]:
    task_queue = f"market-{uuid.uuid4().hex[:8]}"
    settings = quiet_settings(smtp_port=smtp_server[1])
    worker = Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[*WORKFLOWS, PriceRecorder],
        activities=build_activities(sqlite_db, settings, client=ts_env.client),
        max_concurrent_activities=50,
    )
    async with worker:
        desk = Market(ts_env, sqlite_db, task_queue)
        yield desk
        await desk.close()
        await asyncio.sleep(0)


async def open_active_loan(market: Market, loan_id: str, asset: str, principal: str,
                           amount: str) -> WorkflowHandle[Any, Any]:
    """A real LoanWorkflow taken to ACTIVE on the stored price (store one first)."""
    app = application(loan_id, collateral_asset=asset, principal_usd=D(principal),
                      collateral_amount=D(amount))
    handle = market.track(await market.client.start_workflow(
        LoanWorkflow.run, app, id=f"loan-{loan_id}", task_queue=market.task_queue,
        memo={"search_attributes": False},
    ))
    await wait_state(market, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": amount, "tx_id": f"{loan_id}-tx"})
    await wait_state(market, handle, LoanState.ACTIVE)
    return handle


async def wait_state(market: Market, handle: WorkflowHandle[Any, Any], state: LoanState,
                     limit: int = 100) -> LoanStatus:
    for _ in range(limit):
        status: LoanStatus = await handle.query("status", result_type=LoanStatus)
        if status.state == state:
            return status
        await market.env.sleep(timedelta(seconds=1))
    raise AssertionError(f"{handle.id} stuck in {status.state}, expected {state}")


async def settle(handle: WorkflowHandle[Any, Any], limit: float = 30) -> None:
    """Until the loan has no activity in flight (notices, read-model writes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if await idle(handle):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} still has activities in flight after {limit}s")
