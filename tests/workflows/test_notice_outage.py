"""An SMTP outage during a margin call: the loan goes on, and once the mail server is back the
margin-call e-mail arrives exactly once."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from aiosmtpd.controller import Controller
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.db import Database
from loanflow.models import LoanState
from loanflow.ports import free_port
from loanflow.worker import build_worker
from tests.support import Inbox, quiet_settings
from tests.workflows.book import table
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state


@pytest_asyncio.fixture(loop_scope="session")
async def dark_desk(ts_env: WorkflowEnvironment, db: Database) -> AsyncIterator[tuple[Desk, int]]:
    """A desk whose mail server is down: nothing listens on its SMTP port yet."""
    port = free_port()
    settings = quiet_settings(smtp_port=port, smtp_timeout_seconds=2)
    task_queue = f"loans-{uuid.uuid4().hex[:8]}"
    worker = build_worker(ts_env.client, db, settings, task_queue=task_queue,
                          activities=build_activities(db, settings))
    async with worker:
        desk = Desk(ts_env, db, task_queue)
        yield desk, port
        await desk.close()


async def test_margin_call_mail_arrives_once_after_an_outage(dark_desk: tuple[Desk, int]) -> None:
    desk, port = dark_desk
    handle = await active_loan(desk, "OUT1")
    await desk.price(handle, "BTC", "42000")
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    assert status.cure_repay_usd is not None  # the loan is not held up by the mail outage

    # The notice is being retried: Temporal has run it more than once against the dark port.
    for _ in range(100):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(a.activity_type.name == "record_notice" and a.attempt >= 2 for a in pending):
            break
        await desk.env.sleep(timedelta(seconds=5))
    else:
        raise AssertionError("the margin-call notice was never retried")
    # The run that onboarded it serves on while its notices wait: it continues as new only
    # once they are out (patch issue12-fresh-run-once-serving).
    assert (await handle.describe()).run_id == handle.first_execution_run_id

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        for _ in range(300):
            calls = [m for m in inbox.messages if b"margin_call:1" in m]
            if calls and not (await handle.describe()).raw_description.pending_activities:
                break
            await desk.env.sleep(timedelta(seconds=30))  # lets the retry backoff run out
            await asyncio.sleep(0.05)
    finally:
        server.stop()
    calls = [email.message_from_bytes(m) for m in inbox.messages if b"margin_call:1" in m]
    assert len(calls) == 1
    await desk.settle(handle)  # the task that continues it, and the new run's first
    first = desk.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert status.cure_repay_usd is not None
    body = calls[0].get_payload()[0].get_payload(decode=True).decode()
    assert f"{status.cure_repay_usd:,}" in body
    outbox = table("outbox")
    async with desk.db.sessions() as s:
        query = select(outbox.c.status).where(outbox.c.notice_key == "OUT1:notice:margin_call:1")
        assert (await s.execute(query)).scalar_one() == "sent"
