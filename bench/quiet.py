"""The quiet market: a calm month (2023-07) replayed with hourly ticks over a book of loans on
the time-skipping test server, so that a month of the loans' own timers (the daily safety net,
interest) really runs, in a couple of minutes. Counted from each loan's history: workflow tasks
per loan per day, and history events per loan, extrapolated to a simulated year, against
Temporal's continue-as-new suggestion (4,096 events by default) and hard limit (51,200)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.book import fund_loans, plan_book, start_loans
from bench.market import Monitor
from loanflow.binaries import test_server
from loanflow.db import Database
from loanflow.prices.aggregate import AggregationRules
from loanflow.prices.messages import (
    FeedSpec,
    MonitorInput,
    MonitorProgress,
    ReplayFeed,
    ReplayPlan,
)
from loanflow.prices.replay import ReplaySource
from loanflow.settings import Settings
from loanflow.temporal_client import data_converter
from loanflow.worker import build_worker

SUGGEST_CONTINUE_AS_NEW = 4096
HISTORY_LIMIT = 51200
WINDOW = "2023-07"


@dataclass
class Counts:
    events: int = 0
    tasks: int = 0
    signals: int = 0
    runs: int = 1


@dataclass
class QuietResult:
    loans: int
    days: float
    ticks: int
    signalled: int
    tasks_per_loan_day: float
    tasks_per_loan_day_max: float
    events_per_loan_year: float
    events_per_loan_year_max: float
    signals_per_loan_day: float
    continued_as_new: int
    wall_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


async def quiet_month(root: Path, settings: Settings, loans: int, days: float,
                      progress: Any) -> QuietResult:
    began = time.monotonic()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(settings), test_server_existing_path=test_server())
    db = Database(f"sqlite+aiosqlite:///{root / 'quiet.db'}")
    # Counting events, not timing: no simulated latency (it would only slow the month down).
    quiet = settings.model_copy(update={"fake_latency_ms": 0, "task_queue": "loans-quiet",
                                        "database_url": str(db.url)})
    try:
        await db.create_all()
        async with build_worker(env.client, db, quiet, max_cached_workflows=loans + 100):
            return await _run(env, db, quiet, loans, days, progress, began)
    finally:
        await db.dispose()
        await env.shutdown()


async def _run(env: WorkflowEnvironment, db: Database, settings: Settings, n: int, days: float,
               progress: Any, began: float) -> QuietResult:
    task_queue = settings.task_queue
    source = ReplaySource.for_window(WINDOW)
    first, _ = source.span()
    opening = {asset: await _price(source, asset, first) for asset in ("BTC", "ETH")}
    # The same book shape as the crash: opened 25% higher, now 20% down from there.
    seed = {asset: (price / Decimal("0.8")).quantize(Decimal("0.01")) for asset, price in opening.items()}
    memo = {"search_attributes": False}  # the test server has no custom search attributes
    monitor = await Monitor.start(env.client, settings.market_queue, 64, memo=None)
    for asset, price in seed.items():
        await monitor.tick(asset, price)
    plans = plan_book(n, seed=7, prices=seed, prefix="QT")
    progress.add("quiet: loans active", n)
    await start_loans(env.client, plans, task_queue, 50, progress, memo=memo)
    await fund_loans(env.client, db, plans, 50, _Renamed(progress, "quiet: loans active"))
    await monitor.handle.signal("stop")
    ids = [f"loan-{p.loan_id}" for p in plans]
    before = {i: await _counts(env.client, i) for i in ids}
    clock_before = await env.get_current_time()

    ticks = int(days * 24)
    plan = ReplayPlan(start=first, end=first + timedelta(hours=ticks - 1), speed=Decimal(1))
    # Binance quotes the window in USDT: taken at par (a calm month; USDT within 0.1% of $1).
    spec = MonitorInput(feed=FeedSpec(replay=ReplayFeed(window=WINDOW)), replay=plan,
                        rules=AggregationRules(usdt_usd=Decimal(1)))
    progress.add("quiet: simulated hours", ticks)
    replay = await env.client.start_workflow("MarketMonitor", spec, id="market-replay-2023-07",
                                             task_queue=settings.market_queue, result_type=MonitorProgress)
    result: MonitorProgress = await replay.result()
    progress.set("quiet: simulated hours", ticks)
    await asyncio.sleep(1)  # let a wake-up that started with the last tick finish
    elapsed = (await env.get_current_time() - clock_before) / timedelta(days=1)
    after = {i: await _counts(env.client, i) for i in ids}
    return _summarise(before, after, elapsed, ticks, result.state.signalled, began)


class _Renamed:
    """`fund_loans` reports 'active'; show it under the quiet step's own bar."""

    def __init__(self, progress: Any, name: str) -> None:
        self.progress, self.name = progress, name

    def advance(self, name: str, amount: int = 1) -> None:
        pass

    def set(self, name: str, completed: int) -> None:
        if name == "active":
            self.progress.set(self.name, completed)


async def _price(source: ReplaySource, asset: str, at: Any) -> Decimal:
    quotes = source.quotes_at(asset, at)
    ordered = sorted(q.price for q in quotes)
    return ordered[len(ordered) // 2]


async def _counts(client: Client, workflow_id: str) -> Counts:
    """Events, workflow tasks and signals over every run of the loan so far."""
    counts = Counts(runs=0)
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).run_id
    while run_id:
        counts.runs += 1
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        previous = None
        async for event in handle.fetch_history_events():
            counts.events += 1
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                counts.tasks += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                counts.signals += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                previous = event.workflow_execution_started_event_attributes.continued_execution_run_id
        run_id = previous or None
    return counts


def _summarise(before: dict[str, Counts], after: dict[str, Counts], days: float, ticks: int,
               signalled: int, began: float) -> QuietResult:
    events = [after[i].events - before[i].events for i in after]
    tasks = [after[i].tasks - before[i].tasks for i in after]
    signals = [after[i].signals - before[i].signals for i in after]
    n = len(after)
    per_year = 365 / days
    return QuietResult(
        loans=n,
        days=round(days, 3),
        ticks=ticks,
        signalled=signalled,
        tasks_per_loan_day=round(sum(tasks) / n / days, 3),
        tasks_per_loan_day_max=round(max(tasks) / days, 3),
        events_per_loan_year=round(sum(events) / n * per_year, 1),
        events_per_loan_year_max=round(max(events) * per_year, 1),
        signals_per_loan_day=round(sum(signals) / n / days, 4),
        continued_as_new=sum(1 for i in after if after[i].runs > before[i].runs),
        wall_seconds=round(time.monotonic() - began, 1),
        extra={"events_per_loan_day": round(sum(events) / n / days, 2),
               "suggest_continue_as_new_events": SUGGEST_CONTINUE_AS_NEW,
               "history_limit_events": HISTORY_LIMIT},
    )
