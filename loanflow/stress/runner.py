"""One stress run: a private time-skipping Temporal server, a private SQLite database and mail
sink, the production worker (loans and market monitor), the book imported ACTIVE, and the
monitor replaying the window on the window's own clock (`clock`). Nothing here talks to the
live desk: every address and file is this run's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from loanflow.binaries import test_server
from loanflow.db import Database
from loanflow.mail.sink import MailSink
from loanflow.schema import MarketTick
from loanflow.prices.messages import (
    MONITOR_WORKFLOW,
    FeedSpec,
    LastPrice,
    MonitorInput,
    MonitorState,
    ReplayFeed,
    ReplayPlan,
)
from loanflow.stress import importing
from loanflow.stress.book import BookLoan
from loanflow.stress.clock import IMPORT_BUDGET, Clock
from loanflow.stress.policies import NamedPolicy
from loanflow.stress.workers import (
    TASK_QUEUE,
    extra_workers,
    private_database,
    stress_settings,
    stress_worker,
)
from loanflow.stress.prices import PriceSet
from loanflow.worker import Workers

MONITOR_ID = "stress-market"
# The price "before the window": above every trigger, so the first tick's move reaches every
# loan already at a level (a loan imported at 75% is called on the first tick, not a day later
# by its safety-net timer). Only the monitor's crossing band sees it; no loan ever does.
CEILING = Decimal(10) ** 12
# After the last tick the clock runs on to just before the next hour, as it does after every
# other tick: what the last hour's price decides (a deadline a few minutes later) happens.
LAST_HOUR_TAIL = timedelta(minutes=59)
# No hour replayed for this long (real time) means something is wedged, not slow: the busiest
# crash hour of a 1,000-loan book takes well under a minute.
STALL_SECONDS = 600


class StressError(RuntimeError):
    """A run that cannot go on; the message says why."""


@dataclass
class Progress:
    """What a progress bar shows."""

    phase: str
    done: int = 0
    total: int = 0
    window_at: datetime | None = None


@dataclass
class RunOutcome:
    clock: Clock
    db: Database
    workdir: Path
    loans: list[BookLoan]
    seconds: dict[str, float] = field(default_factory=dict)
    simulated_hours: int = 0
    warning: str | None = None


def policy_book(book: Sequence[BookLoan], policies: Sequence[NamedPolicy]) -> list[BookLoan]:
    """The same book once per policy, ids prefixed with the policy's name."""
    return [loan.for_policy(p.name) for p in policies for loan in book]


async def run(
    prices: PriceSet, book: Sequence[BookLoan], policies: Sequence[NamedPolicy], *, seed: int,
    workdir: Path, on_progress: Callable[[Progress], None] = lambda p: None,
    processes: int = 1,
) -> RunOutcome:
    """Run the book through the window; returns where the private database is, for `results`.
    The caller disposes of `outcome.db`."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = private_database(workdir)
    await db.create_all()
    loans = policy_book(book, policies)
    outcome = RunOutcome(clock=Clock(timedelta(0)), db=db, workdir=workdir, loans=loans)
    with MailSink(workdir / "mail", port=0) as sink:
        settings = stress_settings(seed, sink.port, workdir)
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter, test_server_existing_path=test_server())
        try:
            cache = len(loans) + 100
            workers = stress_worker(env.client, db, settings, seed, cache)
            address = env.client.service_client.config.target_host
            more = extra_workers(processes - 1, address, workdir, sink.port, seed, cache)
            await _drive(env, db, prices, book, policies, workers, more, outcome, on_progress)
        finally:
            await env.shutdown()
    return outcome


async def _drive(
    env: WorkflowEnvironment, db: Database, prices: PriceSet, book: Sequence[BookLoan],
    policies: Sequence[NamedPolicy], workers: Workers, more: AbstractAsyncContextManager[None],
    outcome: RunOutcome, on_progress: Callable[[Progress], None],
) -> None:
    started = time.monotonic()
    clock = outcome.clock = Clock.lay(await env.get_current_time(), prices.first_tick)
    # The worker starts once the whole book is in: the loans' first looks at themselves (and
    # so their daily revaluations) then fall as close together as the worker can take them,
    # instead of spread over the import; each simulated day costs the work, not the spread.
    await _import(env.client, db, book, policies, clock, on_progress)
    outcome.seconds["import"] = time.monotonic() - started
    async with workers, more:
        await _loans_settled(env, prices, clock, outcome, on_progress)
        replay_started = time.monotonic()
        monitor = await _start_monitor(env.client, prices, clock, workers.market_queue)
        await _follow(db, monitor, len(prices.ticks()), on_progress)
        on_progress(Progress("last hour", len(prices.ticks()), len(prices.ticks()),
                             prices.last_tick))
        await env.sleep(LAST_HOUR_TAIL)
        await _settle(env.client, [loan.loan_id for loan in outcome.loans], on_progress)
        outcome.seconds["replay"] = time.monotonic() - replay_started
    outcome.simulated_hours = len(prices.ticks())


async def _loans_settled(env: WorkflowEnvironment, prices: PriceSet, clock: Clock,
                         outcome: RunOutcome, on_progress: Callable[[Progress], None]) -> None:
    """Every imported loan has taken its first look at itself, before the first tick."""
    await _settle(env.client, [loan.loan_id for loan in outcome.loans], on_progress)
    ready_at = await env.get_current_time()
    if ready_at >= clock.to_server(prices.first_tick):
        raise StressError("importing the book took longer than an hour of real time: "
                          "try fewer loans")
    if ready_at - clock.to_server(prices.start) > IMPORT_BUDGET:
        outcome.warning = (f"the book took {ready_at - clock.to_server(prices.start)} to import "
                           f"and start; past {IMPORT_BUDGET} some loans' daily revaluations "
                           f"fall more than 15 minutes after a tick and see no fresh price")


async def _import(
    client: Client, db: Database, book: Sequence[BookLoan], policies: Sequence[NamedPolicy],
    clock: Clock, on_progress: Callable[[Progress], None],
) -> None:
    total = len(book) * len(policies)
    for index, policy in enumerate(policies):
        base, calls = index * len(book), 0

        def progress(*_: Any) -> None:  # whatever the importer reports: one call per loan
            nonlocal calls
            calls += 1
            on_progress(Progress("import", base + min(calls, len(book)), total))

        overrides = policy.overrides
        if overrides is not None and not overrides.model_dump(exclude_none=True):
            overrides = None  # the desk's defaults: nothing to override
        await importing.start(client, db, [loan.for_policy(policy.name) for loan in book],
                              clock, task_queue=TASK_QUEUE, policy=overrides,
                              on_progress=progress)
    on_progress(Progress("import", total, total))


async def _start_monitor(
    client: Client, prices: PriceSet, clock: Clock, queue: str
) -> WorkflowHandle[Any, Any]:
    before = clock.to_server(prices.start)
    spec = MonitorInput(
        assets=prices.assets(),
        feed=FeedSpec(replay=ReplayFeed(window=prices.name, data_dir=str(prices.data_dir))),
        replay=ReplayPlan(start=prices.first_tick, end=prices.last_tick, step_seconds=3600,
                          speed=Decimal(1), anchor=clock.to_server(prices.first_tick)),
        rules=prices.rules(),
        state=MonitorState(last={a: LastPrice(price=CEILING, observation_id=0, observed_at=before)
                                 for a in prices.assets()}),
    )
    return await client.start_workflow(MONITOR_WORKFLOW, spec, id=MONITOR_ID, task_queue=queue)


async def _follow(db: Database, monitor: WorkflowHandle[Any, Any], total: int,
                  on_progress: Callable[[Progress], None]) -> None:
    """Wait for the replay to end (the server skips time while everything waits on a timer),
    reporting its progress from the ticks the monitor stored. Not by querying the monitor: a
    query that met the monitor's continue-as-new now and then left the time-skipping server
    holding a time lock, so that its clock crept at real time and the replay stalled."""
    result = asyncio.ensure_future(monitor.result())
    seen, since = -1, time.monotonic()
    while not result.done():
        await asyncio.wait([result], timeout=0.5)
        index, replay_at = await _replayed(db)
        on_progress(Progress("replay", index, total, replay_at))
        if index != seen:
            seen, since = index, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            result.cancel()
            raise StressError(f"the replay made no progress for {STALL_SECONDS // 60} minutes "
                              f"at {replay_at}: a loan's workflow task is stuck on the test "
                              f"server (run again with fewer loans)")
    result.result()


async def _replayed(db: Database) -> tuple[int, datetime | None]:
    """How many ticks the stress monitor has stored, and the window hour of the last."""
    async with db.transaction() as session:
        row = (await session.execute(
            select(func.max(MarketTick.seq), func.max(MarketTick.replay_at))
            .where(MarketTick.monitor_id == MONITOR_ID))).one()
    return int(row[0] or 0), row[1]


async def _settle(client: Client, loan_ids: Sequence[str],
                  on_progress: Callable[[Progress], None], limit: float = 600) -> None:
    """Until no loan has a workflow task or an activity (a notice, a read-model write) in
    flight: what the window decided is then all in the database."""
    deadline = time.monotonic() + limit
    pending = list(loan_ids)
    while pending:
        on_progress(Progress("settle", len(loan_ids) - len(pending), len(loan_ids)))
        gate = asyncio.Semaphore(32)  # a bounded number of describe calls in flight

        async def busy_one(loan_id: str) -> bool:
            async with gate:
                return await _busy(client, loan_id)

        busy = await asyncio.gather(*(busy_one(loan_id) for loan_id in pending))
        pending = [loan_id for loan_id, b in zip(pending, busy) if b]
        if pending and time.monotonic() > deadline:
            raise StressError(f"{len(pending)} loan(s) still busy {limit:.0f}s after the "
                              f"window ended, e.g. {pending[0]}")
        if pending:
            await asyncio.sleep(0.1)


async def _busy(client: Client, loan_id: str) -> bool:
    description = await client.get_workflow_handle(f"loan-{loan_id}").describe()
    raw = description.raw_description
    return bool(raw.pending_activities) or raw.HasField("pending_workflow_task")
