"""A borrower's e-mails arrive in the order of the loan's events: each notice is handed to the
mail server only once the one before it is settled (issue 11). Checked with the real loopback
SMTP sink, whose stored messages are in the order the server accepted them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.db import Database
from loanflow.models import LoanState
from loanflow.worker import build_worker
from tests.notify.helpers import Sink
from tests.support import quiet_settings
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state

# Every notice of a loan that is margin-called, given more time, topped up and repaid.
EVENTS = ["application_received", "kyc_approved", "deposit_instructions", "collateral_received",
          "loan_disbursed", "margin_call", "cure_extended", "collateral_received",
          "margin_call_cured", "repayment_received", "loan_closed"]


@pytest_asyncio.fixture(loop_scope="session")
async def mail_desk(ts_env: WorkflowEnvironment, db: Database,
                    tmp_path: Path) -> AsyncIterator[tuple[Desk, Sink]]:
    sink = await Sink(tmp_path / "mail", 0).start()
    settings = quiet_settings(smtp_port=sink.port)
    task_queue = f"loans-{uuid.uuid4().hex[:8]}"
    worker = build_worker(ts_env.client, db, settings, task_queue=task_queue,
                          activities=build_activities(db, settings))
    try:
        async with worker:
            desk = Desk(ts_env, db, task_queue)
            yield desk, sink
            await desk.close()
    finally:
        await sink.stop()


def kinds_received(sink: Sink, loan_id: str) -> list[str]:
    """The notice kinds of a loan's messages, in the order the sink accepted them (a notice
    key is `<loan>:notice:<kind>[:<seq>]`)."""
    keys = [m.notice_key or "" for m in sink.messages()]
    return [key.split(":")[2] for key in keys if key.startswith(f"{loan_id}:notice:")]


async def test_mails_arrive_in_the_order_of_the_events(mail_desk: tuple[Desk, Sink]) -> None:
    desk, sink = mail_desk
    handle = await active_loan(desk, "ORD1")
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await handle.execute_update("extend_cure", {"hours": 4, "reason": "wire on its way",
                                                "operator": "ops"})
    await handle.execute_update("top_up", {"amount": "0.5", "tx_id": "ORD1-tx2"})
    status = await wait_state(desk, handle, LoanState.ACTIVE)
    await handle.execute_update("repay", {"amount_usd": str(status.debt_usd), "reference": "w1"})
    await wait_state(desk, handle, LoanState.CLOSED)
    await handle.result()  # the run ends only once every notice is settled
    assert kinds_received(sink, "ORD1") == EVENTS
    # Exactly once: one message per notice key.
    keys = [m.notice_key for m in sink.messages()]
    assert len(keys) == len(set(keys))

