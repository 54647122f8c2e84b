"""The market monitor has a task queue of its own, so a price tick never waits behind the
loans' work. Shown by the extreme case: no worker polls the loans queue at all, and the
production worker's market half still answers ticks and signals the crossed loan."""

from __future__ import annotations

import uuid
from decimal import Decimal

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from loanflow.db import Database
from loanflow.prices.messages import ManualTick, MonitorInput, TickSummary
from loanflow.prices.sources import Quote
from loanflow.worker import build_worker
from tests.market.conftest import Market
from tests.support import Inbox, quiet_settings
from tests.workflows.book import application
from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

VENUES = ("bitstamp", "coinbase", "kraken")


def tick(price: str) -> ManualTick:
    return ManualTick(quotes=[Quote(venue=v, asset="BTC", price=Decimal(price)) for v in VENUES])


async def signals(env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    names = []
    async for event in env.client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            names.append(event.workflow_execution_signaled_event_attributes.signal_name)
    return names


def test_the_market_queue_is_named_for_the_loans_queue_unless_set() -> None:
    assert quiet_settings(task_queue="loans").market_queue == "loans-market"
    assert quiet_settings(task_queue="desk-a").market_queue == "desk-a-market"
    assert quiet_settings(market_task_queue="prices").market_queue == "prices"


async def test_ticks_are_answered_with_the_loans_queue_unpolled(
    ts_env: WorkflowEnvironment, sqlite_db: Database, smtp_server: tuple[Inbox, int],
) -> None:
    settings = quiet_settings(smtp_port=smtp_server[1], task_queue=f"loans-{uuid.uuid4().hex[:8]}")
    workers = build_worker(ts_env.client, sqlite_db, settings)
    assert workers.market_queue == f"{settings.task_queue}-market"
    # A loan on the loans queue, which nothing polls: it cannot even run its first task.
    loan = await ts_env.client.start_workflow(
        LoanWorkflow.run, application("TQ1"), id=f"loan-TQ1-{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue, memo={"search_attributes": False})
    desk = Market(ts_env, sqlite_db, settings.task_queue)
    desk.track(loan)
    # 1 BTC against $14,000: the margin call is at $20,000.
    await desk.publish(loan.id.removeprefix("loan-"), "BTC", "14000")
    async with workers.market:
        monitor = desk.track(await ts_env.client.start_workflow(
            MarketMonitor.run, MonitorInput(), id=f"market-tq-{uuid.uuid4().hex[:6]}",
            task_queue=workers.market_queue))
        await monitor.execute_update("tick", tick("21000"), result_type=TickSummary)
        crash = await monitor.execute_update("tick", tick("18500"), result_type=TickSummary)
        assert crash.signalled == 1
        await desk.close()
    assert (await monitor.describe()).task_queue == workers.market_queue
    assert await signals(ts_env, loan.id) == ["price_update"]
