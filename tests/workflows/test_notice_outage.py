"""An SMTP outage during a margin call: the loan goes on, its notice waits in the outbox, and
once the mail server is back the notice relay mails it exactly once."""

from __future__ import annotations

import asyncio
import email
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from aiosmtpd.controller import Controller
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.db import Database
from loanflow.mail import outbox
from loanflow.models import LoanState
from loanflow.ports import free_port
from loanflow.worker import build_worker
from tests.support import Inbox, quiet_settings
from tests.workflows.book import notices
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state


@pytest_asyncio.fixture(loop_scope="session")
async def dark_desk(ts_env: WorkflowEnvironment, db: Database) -> AsyncIterator[tuple[Desk, int]]:
    """A desk whose mail server is down: nothing listens on its SMTP port yet."""
    port = free_port()
    settings = quiet_settings(smtp_port=port, smtp_timeout_seconds=2,
                              notice_relay_backoff_seconds=1)
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

    # The notices wait in the outbox, the loan's oldest tried by the relay against the dark
    # port, the margin call behind it; the loan holds no activity for them, and its
    # onboarding run has continued as new.
    first_key, key = "OUT1:notice:application_received", "OUT1:notice:margin_call:1"
    for _ in range(200):
        first, call = await outbox.find(desk.db, first_key), await outbox.find(desk.db, key)
        if first is not None and first.last_error and call is not None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the relay never tried {first_key}, or {key} was not recorded")
    assert "SMTP server unavailable" in first.last_error and first.status == "pending"
    assert call.status == "pending"
    assert not (await handle.describe()).raw_description.pending_activities
    await desk.settle(handle)
    run = desk.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert (await run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        for _ in range(400):  # the relay's wait after an outage is at most 1 s here
            row = await outbox.find(desk.db, key)
            if row.status == "sent":
                break
            await asyncio.sleep(0.05)
    finally:
        server.stop()
    calls = [email.message_from_bytes(m) for m in inbox.messages if b"margin_call:1" in m]
    assert len(calls) == 1 and row.status == "sent"
    # Every notice of the loan once, in the order the loan sent them.
    kinds = [email.message_from_bytes(m)["Message-ID"] for m in inbox.messages]
    assert len(kinds) == len(set(kinds)) == len(await notices(desk.db, "OUT1"))
    assert b"application_received" in inbox.messages[0]
    assert status.cure_repay_usd is not None
    body = calls[0].get_payload()[0].get_payload(decode=True).decode()
    assert f"{status.cure_repay_usd:,}" in body

