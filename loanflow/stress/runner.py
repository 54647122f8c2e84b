"""One stress run: private time-skipping Temporal servers (`shards`), a private SQLite database
and mail sink, the production workers (loans and market monitor), the book imported ACTIVE,
and the monitor replaying the window on the window's own clock (`clock`). Nothing here talks to
the live desk: every address and file is this run's own.
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

from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from loanflow.db import Database
from loanflow.mail.sink import MailSink
from loanflow.models import workflow_id as loan_workflow_id
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
from loanflow.stress.prices import PriceSet
from loanflow.stress.shards import Shards, servers_for
from loanflow.stress.workers import (
    MARKET_QUEUE,
    TASK_QUEUE,
    extra_workers,
    private_database,
    stress_settings,
    stress_workers,
)

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
# How often the runner looks whether the monitor has taken a tick (real time, while every
# server waits at the tick hour).
POLL_SECONDS = 0.01


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
    processes: int = 1, servers: int | None = None,
) -> RunOutcome:
    """Run the book through the window; returns where the private database is, for `results`.
    The caller disposes of `outcome.db`. `servers`: how many private servers share the book
    (default `shards.servers_for` the book's size)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = private_database(workdir)
    await db.create_all()
    loans = policy_book(book, policies)
    outcome = RunOutcome(clock=Clock(timedelta(0)), db=db, workdir=workdir, loans=loans)
    with MailSink(workdir / "mail", port=0) as sink:
        settings = stress_settings(seed, sink.port, workdir)
        servers = servers or servers_for(len(loans))
        shards = await Shards.start(servers, data_converter=pydantic_data_converter)
        try:
            # Room for every loan of the busiest server (see `stress_worker`).
            cache = max(map(len, shards.split([loan_workflow_id(x.loan_id) for x in loans])))
            cache += 100
            workers = stress_workers(shards.router, db, settings, seed, cache)
            more = extra_workers(processes - 1, shards.addresses, workdir, sink.port, seed,
                                 cache)
            await _drive(shards, db, prices, book, policies, workers, more, outcome,
                         on_progress)
        finally:
            await shards.shutdown()
    return outcome


async def _drive(
    shards: Shards, db: Database, prices: PriceSet, book: Sequence[BookLoan],
    policies: Sequence[NamedPolicy], workers: AbstractAsyncContextManager[Any],
    more: AbstractAsyncContextManager[None], outcome: RunOutcome,
    on_progress: Callable[[Progress], None],
) -> None:
    started = time.monotonic()
    clock = outcome.clock = Clock.lay(await shards.now(), prices.first_tick)
    # The workers start once the whole book is in: the loans' first looks at themselves (and
    # so their daily revaluations) then fall as close together as the workers can take them,
    # instead of spread over the import; each simulated day costs the work, not the spread.
    await _import(shards, db, book, policies, clock, on_progress)
    outcome.seconds["import"] = time.monotonic() - started
    async with workers, more:
        await _loans_settled(shards, prices, clock, outcome, on_progress)
        replay_started = time.monotonic()
        monitor = await _start_monitor(shards.first.client, prices, clock)
        await _replay(shards, db, prices, clock, on_progress)
        on_progress(Progress("last hour", len(prices.ticks()), len(prices.ticks()),
                             prices.last_tick))
        await shards.advance_to(clock.to_server(prices.last_tick) + LAST_HOUR_TAIL)
        await _settle(shards, [loan.loan_id for loan in outcome.loans], on_progress)
        await _monitor_finished(monitor)
        outcome.seconds["replay"] = time.monotonic() - replay_started
    outcome.simulated_hours = len(prices.ticks())


async def _loans_settled(shards: Shards, prices: PriceSet, clock: Clock,
                         outcome: RunOutcome, on_progress: Callable[[Progress], None]) -> None:
    """Every imported loan has taken its first look at itself, before the first tick."""
    await _settle(shards, [loan.loan_id for loan in outcome.loans], on_progress)
    ready_at = await shards.now()
    if ready_at >= clock.to_server(prices.first_tick):
        raise StressError("importing the book took longer than an hour of real time: "
                          "try fewer loans")
    if ready_at - clock.to_server(prices.start) > IMPORT_BUDGET:
        outcome.warning = (f"the book took {ready_at - clock.to_server(prices.start)} to import "
                           f"and start; past {IMPORT_BUDGET} some loans' daily revaluations "
                           f"fall more than 15 minutes after a tick and see no fresh price")


async def _import(
    shards: Shards, db: Database, book: Sequence[BookLoan], policies: Sequence[NamedPolicy],
    clock: Clock, on_progress: Callable[[Progress], None],
) -> None:
    total, done = len(book) * len(policies), 0

    def progress(*_: Any) -> None:  # whatever the importer reports: one call per loan
        nonlocal done
        done += 1
        on_progress(Progress("import", min(done, total), total))

    for policy in policies:
        overrides = policy.overrides
        if overrides is not None and not overrides.model_dump(exclude_none=True):
            overrides = None  # the desk's defaults: nothing to override
        loans = [loan.for_policy(policy.name) for loan in book]
        parts = shards.split([loan_workflow_id(loan.loan_id) for loan in loans])
        await asyncio.gather(*(
            importing.start(env.client, db, [loans[i] for i in part], clock,
                            task_queue=TASK_QUEUE, policy=overrides, on_progress=progress)
            for env, part in zip(shards.envs, parts) if part))
    on_progress(Progress("import", total, total))


async def _start_monitor(
    client: Client, prices: PriceSet, clock: Clock
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
    return await client.start_workflow(MONITOR_WORKFLOW, spec, id=MONITOR_ID,
                                       task_queue=MARKET_QUEUE)


async def _replay(shards: Shards, db: Database, prices: PriceSet, clock: Clock,
                  on_progress: Callable[[Progress], None]) -> None:
    """Hour by hour: every server to the tick hour, then the tick taken and its signals sent,
    before any server may go on into the hour (see `shards`)."""
    ticks = prices.ticks()
    for index, tick_at in enumerate(ticks, start=1):
        hour = _tick_hour(shards, db, clock.to_server(tick_at), index, len(prices.assets()))
        try:
            await asyncio.wait_for(hour, STALL_SECONDS)
        except TimeoutError:
            raise StressError(f"the replay made no progress for {STALL_SECONDS // 60} minutes "
                              f"at {tick_at}: a loan's workflow task is stuck on the test "
                              f"server (run again with fewer loans)") from None
        on_progress(Progress("replay", index, len(ticks), tick_at))


async def _tick_hour(shards: Shards, db: Database, at: datetime, index: int,
                     assets: int) -> None:
    await shards.advance_to(at, tick=True)
    # Every server now waits at the tick hour (its clock creeping at real time) until the
    # monitor has stored this tick and signalled every loan it selected.
    while not await _tick_taken(db, index, assets):
        await asyncio.sleep(POLL_SECONDS)


async def _tick_taken(db: Database, index: int, assets: int) -> bool:
    """The tick is stored for every asset, and each that selected loans has signalled them.
    (Read from the database: the test server's describe shows no workflow tasks, and a query
    that met the monitor's continue-as-new once left its clock locked.)"""
    async with db.transaction() as session:
        rows = (await session.execute(
            select(MarketTick.target_count, MarketTick.fanned_out_at)
            .where(MarketTick.monitor_id == MONITOR_ID, MarketTick.seq == index))).all()
    return len(rows) == assets and all(n == 0 or done is not None for n, done in rows)


async def _monitor_finished(monitor: WorkflowHandle[Any, Any]) -> None:
    description = await monitor.describe()
    if description.status != WorkflowExecutionStatus.COMPLETED:
        raise StressError(f"the market monitor ended {description.status}: see its history "
                          f"(--keep-workdir keeps the database)")


async def _settle(shards: Shards, loan_ids: Sequence[str],
                  on_progress: Callable[[Progress], None], limit: float = 600) -> None:
    """Until no loan has an activity (a notice, a sale) in flight: what the window decided is
    then all in the database. (The test server's describe shows activities but not workflow
    tasks; its clock does wait for those, so a server that has reached an hour has run them.)"""
    deadline = time.monotonic() + limit
    pending = list(loan_ids)
    while pending:
        on_progress(Progress("settle", len(loan_ids) - len(pending), len(loan_ids)))
        gate = asyncio.Semaphore(32)  # a bounded number of describe calls in flight

        async def busy_one(loan_id: str) -> bool:
            async with gate:
                return await _busy(shards.router.get_workflow_handle(loan_workflow_id(loan_id)))

        busy = await asyncio.gather(*(busy_one(loan_id) for loan_id in pending))
        pending = [loan_id for loan_id, b in zip(pending, busy) if b]
        if pending and time.monotonic() > deadline:
            raise StressError(f"{len(pending)} loan(s) still busy {limit:.0f}s after the "
                              f"window ended, e.g. {pending[0]}")
        if pending:
            await asyncio.sleep(0.1)


async def _busy(handle: WorkflowHandle[Any, Any]) -> bool:
    raw = (await handle.describe()).raw_description
    return bool(raw.pending_activities) or raw.HasField("pending_workflow_task")
