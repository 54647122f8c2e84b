"""The loanflow worker: the loans and their activities on the `loans` task queue, and the
market monitor on a task queue of its own (`loans-market`), polled by the same process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from loanflow import event_loop, failures
from loanflow.db import Database
from loanflow.failures import StartupError
from loanflow.mail.delivery import NoticeDelivery
from loanflow.mail.relay import NoticeRelay
from loanflow.namespace_setup import ensure_search_attributes
from loanflow.settings import Settings, SettingsError, get_settings
from loanflow.temporal_client import connect, connect_config
from activities.support import TRANSIENT
from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

log = logging.getLogger("loanflow.worker")

# The loans queue keeps MarketMonitor too: a monitor started there before the market had its
# own queue continues as new on the queue it runs on, and must still find a worker.
WORKFLOWS: Sequence[type] = (LoanWorkflow, MarketMonitor)
MARKET_WORKFLOWS: Sequence[type] = (MarketMonitor,)


class Workers:
    """The loans worker and the market worker, started, run and shut down together, and the
    notice relay beside them (if this process runs it)."""

    def __init__(self, loans: Worker, market: Worker, relay: NoticeRelay | None = None) -> None:
        self.loans, self.market, self.relay = loans, market, relay
        self._stack = AsyncExitStack()
        self._relaying: asyncio.Task[None] | None = None

    @property
    def task_queue(self) -> str:
        return self.loans.task_queue

    @property
    def market_queue(self) -> str:
        return self.market.task_queue

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self.loans)
        await self._stack.enter_async_context(self.market)
        self._start_relay()
        self._stack.push_async_callback(self._stop_relay)
        return self

    def _start_relay(self) -> None:
        if self.relay is not None and self._relaying is None:
            self._relaying = asyncio.create_task(self.relay.run(), name="notice relay")

    async def _stop_relay(self) -> None:
        """Stop the relay once the row it is on is settled (`NoticeRelay.stop`)."""
        relaying, self._relaying = self._relaying, None
        if relaying is not None and self.relay is not None:
            self.relay.stop()
            await relaying

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.__aexit__(kind, err, tb)

    async def run(self) -> None:
        """Until shut down or either worker fails; the other is then shut down too."""
        runs = [asyncio.create_task(w.run()) for w in (self.loans, self.market)]
        self._start_relay()
        try:
            await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._stop_relay()
            await asyncio.gather(*(w.shutdown() for w in (self.loans, self.market)),
                                 return_exceptions=True)
        await asyncio.gather(*runs)


class OutageLines(logging.Filter):
    """The built-in fakes' simulated outages (`activities.support.FakeFaults`, raised as
    `VendorUnavailable`) are expected behaviour: Temporal retries them. The SDK logs every
    failed attempt as "Completing activity as failed" with its whole traceback, which filled
    the `make run` console; an outage is one line instead, naming the activity, its attempt and
    its loan. Every other failure keeps its traceback: that is what a developer needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if isinstance(err, ApplicationError) and err.type == TRANSIENT:
            info = getattr(record, "temporal_activity", None) or {}
            record.msg = "%s: activity %s attempt %s for %s; Temporal retries it"
            record.args = (err.message, info.get("activity_type", "?"),
                           info.get("attempt", "?"), info.get("workflow_id", "?"))
            record.exc_info, record.exc_text = None, None
        return True


def outage_lines() -> None:
    """Put `OutageLines` on the SDK's activity logger (once, however many workers start)."""
    logger = logging.getLogger("temporalio.activity")
    if not any(isinstance(f, OutageLines) for f in logger.filters):
        logger.addFilter(OutageLines())


def build_worker(
    client: Client, db: Database, settings: Settings, *, activities: Sequence[Any] | None = None,
    **options: Any,
) -> Workers:
    """Workers for every loanflow workflow and activity. Tests pass their own task queue and
    activity list; production uses the built-in adapters from `activities.registry`.

    The market monitor's tick is an update and its fan-out an activity: on the loans queue in a
    crash both waited behind hundreds of loans' tasks (at 10,000 loans, ticks meant to be 1 s
    apart came 6 s apart). On a queue of its own a tick starts at once; the monitor's worker
    has its own slots. It registers every activity, but only the monitor's are sent there."""
    outage_lines()
    if "task_queue" in options:
        settings = settings.model_copy(update={"task_queue": options.pop("task_queue")})
    if activities is None:
        from activities.registry import build_activities

        activities = build_activities(db, settings, client=client)
    options.setdefault("max_concurrent_activities", 200)
    shared = workflow_options(settings)
    loans = Worker(client, task_queue=settings.task_queue, workflows=list(WORKFLOWS),
                   activities=list(activities), **shared, **options)
    market = Worker(client, task_queue=settings.market_queue, workflows=list(MARKET_WORKFLOWS),
                    activities=list(activities), max_cached_workflows=20,
                    max_concurrent_activities=20, **shared)
    relay = (NoticeRelay(NoticeDelivery.for_settings(db, settings),
                         max_backoff=settings.notice_relay_backoff_seconds)
             if settings.notice_relay else None)
    return Workers(loans, market, relay)


def workflow_options(settings: Settings) -> dict[str, Any]:
    """How the workers run workflow code; measured in bench/README.md ("The workflow sandbox").

    - The sandbox only when asked for (`LOANFLOW_WORKFLOW_SANDBOX`; the test suite runs under
      it). Besides building a copy of the workflow modules for every new loan, it re-enters
      itself for every payload of every activation and completion (the SDK asks the workflow
      for the payload's serialization context, once per pass of its payload visitor): in a
      crash a fifth of the workers' CPU, for checks the test suite already makes.
    - Payload visits one at a time: the SDK's default visits each payload in a task of its own,
      so that payloads kept in external storage load in parallel; loanflow keeps none, and the
      tasks were 8% of the workers' CPU in a crash.
    """
    runner: WorkflowRunner = (SandboxedWorkflowRunner() if settings.workflow_sandbox
                              else UnsandboxedWorkflowRunner())
    return {"workflow_runner": runner, "max_workflow_task_external_storage_concurrency": 1}


def shown_url(url: str) -> str:
    """A database URL fit for a log: the password masked (it was logged in clear)."""
    from loanflow import migrations

    return migrations.shown(url)


async def require_latest_schema(url: str) -> None:
    """Workers never migrate (several starting at once would race on the schema); they refuse
    to run on a database that is not at the latest revision, or cannot be opened."""
    from sqlalchemy.exc import DBAPIError

    from loanflow import migrations

    shown = migrations.shown(migrations.sync_url(url))
    try:
        current = await asyncio.to_thread(migrations.current, url)
    except DBAPIError as err:
        reason = str(err.orig or err).strip().splitlines()[0]
        raise StartupError(f"database {shown} cannot be opened ({reason}): check DATABASE_URL"
                           ) from None
    if current != migrations.head():
        raise SettingsError(
            f"database {shown} is at schema revision {current or 'none'}, not "
            f"{migrations.head()}: run `loanflow db upgrade` first")


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    # Configuration first (a payload key, the Temporal profile): said before anything is tried.
    settings.keyring()
    connect_config()
    # Before connecting: a database that is not ready needs no server to be told.
    await require_latest_schema(settings.db_url)
    client = await connect(settings=settings)
    await ensure_search_attributes(client)
    db = Database(settings.db_url)
    worker = build_worker(client, db, settings)
    log.info("worker polling task queues %r and %r, database %s", worker.task_queue,
             worker.market_queue, shown_url(settings.db_url))
    try:
        await worker.run()
    finally:
        await db.dispose()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic's INFO lines ("setup plugin ...") are noise on every start of a worker.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def main() -> None:
    """`python worker.py`: every failure an operator can act on is one `error:` line and exit
    code 1; Ctrl-C stops it quietly."""
    configure_logging()
    try:
        event_loop.run(run_worker())
    except KeyboardInterrupt:
        pass
    except Exception as err:
        message = failures.explain(err)
        if message is None:
            raise  # a bug: its traceback is what a developer needs
        stop(f"error: {message}", 1)
    stop(None, 0)


def stop(message: str | None, code: int) -> None:
    """Exit without the interpreter's teardown, which the Temporal client's native threads can
    crash (temporalio/sdk-python#300), as the `loanflow` command does."""
    if message:
        print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
