"""The loan worker: workflows and activities on the `loans` task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from loanflow.db import Database
from loanflow.namespace_setup import ensure_search_attributes
from loanflow.settings import Settings, SettingsError, get_settings
from loanflow.temporal_client import connect
from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

log = logging.getLogger("loanflow.worker")

WORKFLOWS: Sequence[type] = (LoanWorkflow, MarketMonitor)


def build_worker(
    client: Client, db: Database, settings: Settings, *, activities: Sequence[Any] | None = None,
    **options: Any,
) -> Worker:
    """A worker for every loanflow workflow and activity. Tests pass their own task queue and
    activity list; production uses the built-in adapters from `activities.registry`."""
    if activities is None:
        from activities.registry import build_activities

        activities = build_activities(db, settings, client=client)
    options.setdefault("task_queue", settings.task_queue)
    options.setdefault("max_concurrent_activities", 200)
    return Worker(client, workflows=list(WORKFLOWS), activities=list(activities), **options)


async def require_latest_schema(url: str) -> None:
    """Workers never migrate (several starting at once would race on the schema); they refuse
    to run on a database that is not at the latest revision."""
    from loanflow import migrations

    current = await asyncio.to_thread(migrations.current, url)
    if current != migrations.head():
        raise SettingsError(
            f"database {migrations.shown(migrations.sync_url(url))} is at schema revision "
            f"{current or 'none'}, not {migrations.head()}: run `loanflow db upgrade` first"
        )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = await connect()
    await ensure_search_attributes(client)
    await require_latest_schema(settings.db_url)
    db = Database(settings.db_url)
    worker = build_worker(client, db, settings)
    log.info("worker polling task queue %r, database %s", settings.task_queue, settings.db_url)
    try:
        await worker.run()
    finally:
        await db.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run_worker())
    except KeyboardInterrupt:
        pass
