"""Workflow test harness: the time-skipping test server (day-long timers in seconds) with a real
worker running the real activities against a real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.binaries import test_server
from loanflow.db import Database
from loanflow.models import LoanApplication, LoanStatus
from loanflow.temporal_client import data_converter
from loanflow.worker import Workers, build_worker
from tests.support import Inbox, idle, quiet_settings
from workflows.loan import LoanWorkflow


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(), test_server_existing_path=test_server()
    )
    yield env
    await env.shutdown()


class Desk:
    """A loan desk for one test: client, worker task queue and database."""

    def __init__(self, env: WorkflowEnvironment, db: Database, task_queue: str,
                 workers: Callable[[], Workers] | None = None) -> None:
        self.env, self.db, self.task_queue = env, db, task_queue
        self.handles: list[WorkflowHandle[Any, Any]] = []
        self._observed: dict[str, datetime] = {}  # the last observation time sent, per loan
        self._new_workers, self._workers = workers, None

    async def __aenter__(self) -> Desk:
        """Start the desk's workers (a desk made with `workers`)."""
        await self._start_workers()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        await self._stop_workers()

    @asynccontextmanager
    async def backlog(self) -> AsyncIterator[None]:
        """Inside, no worker polls the desk's queue: whatever is sent to a loan meanwhile
        reaches it together, in one workflow task, as behind a backlog in a crash. Only on a
        desk whose workers cache no workflows (`backlog_desk`): a cached loan's next task
        would wait on the stopped worker's own (sticky) queue for a timeout that the
        time-skipping server counts on a clock it does not move while a task waits."""
        await self._stop_workers()
        try:
            yield
        finally:
            await self._start_workers()

    async def _start_workers(self) -> None:
        if self._new_workers is None:
            raise RuntimeError("this desk was made without workers it can start")
        self._workers = await self._new_workers().__aenter__()

    async def _stop_workers(self) -> None:
        if self._workers is not None:
            workers, self._workers = self._workers, None
            await workers.__aexit__(None, None, None)

    @property
    def client(self) -> Client:
        return self.env.client

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def open(self, app: LoanApplication) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            LoanWorkflow.run,
            app,
            id=f"loan-{app.loan_id}",
            task_queue=self.task_queue,
            memo={"search_attributes": False},
        )
        self.handles.append(handle)
        return handle

    async def close(self) -> None:
        """End the test's loans: a loan left running would hold the shared time-skipping
        server's clock for the next test. Each is let settle first: terminating a run with an
        activity or workflow task in flight leaks that task's time-skipping lock in the test
        server, and every later sleep on the shared server then runs in real time until it
        fails "Timeout expired" (the second hang reported on temporalio/sdk-java#3088)."""
        for handle in self.handles:
            try:
                await self.quiet(handle)
            except RPCError:
                pass  # already gone: terminate regardless
            try:
                await handle.terminate("test finished")
            except RPCError:
                pass  # already completed

    async def price(self, handle: WorkflowHandle[Any, Any], asset: str, price: str, *,
                    confirmed: bool = True) -> None:
        """The market at `price` now: two observations a moment apart, as the monitor's ticks
        give them, so that a move the loan holds for confirmation (a jump beyond
        `max_price_jump`) or a liquidation-level breach is confirmed. `confirmed=False`
        sends one print only (a wick)."""
        now = await self.now()
        last = self._observed.get(handle.id)
        times = [now - timedelta(milliseconds=500), now] if confirmed else [now]
        for at in times:
            at = max(at, last + timedelta(microseconds=1)) if last else at
            await self.observe(handle, {"asset": asset, "price": price,
                                        "observed_at": at.isoformat(), "source": "test"})
            last = self._observed[handle.id] = at

    async def backlogged_prices(self, handle: WorkflowHandle[Any, Any], asset: str,
                                *prices: str) -> None:
        """Observations ten seconds apart, all newer than any the loan had, that reach it
        together, in one workflow task (`backlog`)."""
        await self.env.sleep(timedelta(seconds=10 * len(prices)))
        now = await self.now()
        async with self.backlog():
            for age, price in zip(range(len(prices) - 1, -1, -1), prices, strict=True):
                at = now - timedelta(seconds=10 * age)
                await self.observe(handle, {"asset": asset, "price": price,
                                            "observed_at": at.isoformat(), "source": "test"})
        self._observed[handle.id] = now

    async def observe(self, handle: WorkflowHandle[Any, Any], update: dict[str, Any]) -> None:
        for attempt in range(3):
            try:
                await handle.signal("price_update", update)
                return
            except RPCError as err:
                # The time-skipping server refuses a signal that lands just as a run continues
                # as new ("Completed workflow"); the market monitor's fan-out retries likewise.
                if "Completed workflow" not in str(err) or attempt == 2:
                    raise
                await asyncio.sleep(0.05)

    async def status(self, handle: WorkflowHandle[Any, Any]) -> LoanStatus:
        return await handle.query("status", result_type=LoanStatus)

    async def settle(self, handle: WorkflowHandle[Any, Any], limit: float = 20) -> LoanStatus:
        """Wait (real time) until the loan has no activity in flight: its notices and read-model
        writes run in the background after an update returns."""
        if not await self.quiet(handle, limit):
            raise AssertionError(f"{handle.id} still has activities in flight after {limit}s")
        return await self.status(handle)

    @staticmethod
    async def quiet(handle: WorkflowHandle[Any, Any], limit: float = 20) -> bool:
        """Wait (real time, at most `limit`) for no activity or workflow task in flight; False
        if the loan is still busy then. Asks the server only (no query), so it also serves a
        handle whose client cannot read the loan's payloads."""
        deadline = asyncio.get_running_loop().time() + limit
        while asyncio.get_running_loop().time() < deadline:
            if await idle(handle):
                return True
            await asyncio.sleep(0.05)
        return False


@pytest_asyncio.fixture(loop_scope="session")
async def desk(
    ts_env: WorkflowEnvironment, db: Database, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[Desk]:
    async with new_desk(ts_env, db, smtp_server[1]) as desk:
        yield desk


@pytest_asyncio.fixture(loop_scope="session")
async def backlog_desk(
    ts_env: WorkflowEnvironment, db: Database, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[Desk]:
    """A desk whose workers cache no workflows (every task replays the loan's history), so
    that `Desk.backlog` can stop and restart them."""
    async with new_desk(ts_env, db, smtp_server[1], max_cached_workflows=0) as desk:
        yield desk


def new_desk(env: WorkflowEnvironment, db: Database, smtp_port: int, **options: Any) -> Desk:
    """A desk on a queue of its own, its workers (with `options`) started when entered."""
    task_queue = f"loans-{uuid.uuid4().hex[:8]}"
    settings = quiet_settings(smtp_port=smtp_port)

    def workers() -> Workers:
        return build_worker(env.client, db, settings, task_queue=task_queue,
                            activities=build_activities(db, settings), **options)

    return Desk(env, db, task_queue, workers)
