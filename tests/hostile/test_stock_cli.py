"""Hostile input through the stock `temporal` CLI on a real dev server (issue 10)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from loanflow.db import Database
from loanflow.schema import AuditRecord, ExchangeOrder, Loan
from tests.e2e.conftest import dev_client, dev_server, task_queue  # noqa: F401
from tests.workflows.book import MALLORY
from tests.e2e.test_temporal_cli import (  # noqa: F401
    APPLICATION,
    Operator,
    operator,
    run_cli,
    status_of,
    temporal,
    until_state,
    worker,
)


def observation(asset: str, price: str, minutes_ago: float = 0) -> str:
    at = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    return json.dumps({"asset": asset, "price": price, "observed_at": at.isoformat(),
                       "source": "desk"})


async def signal(server: Operator, wid: str, *inputs: str, name: str = "price_update") -> None:
    args = ["workflow", "signal", "--workflow-id", wid, "--name", name]
    for value in inputs:
        args += ["--input", value]
    for _ in range(20):
        done = await asyncio.to_thread(temporal, server, *args)
        # The server sheds load with "Workflow is busy" while a task is in flight: try again.
        if done.returncode == 0 or "busy" not in done.stderr:
            break
        await asyncio.sleep(0.25)
    assert done.returncode == 0, done.stderr


async def active_eth_loan(server: Operator, task_queue: str, loan_id: str) -> str:  # noqa: F811
    wid = f"loan-{loan_id}"
    app = {**APPLICATION, "loan_id": loan_id}
    await run_cli(server, "workflow", "start", "--type", "LoanWorkflow", "--task-queue",
                  task_queue, "--workflow-id", wid, "--input", json.dumps(app))
    await signal(server, wid, observation("ETH", "2000"))
    await until_state(server, wid, "AWAITING_COLLATERAL")
    await run_cli(server, "workflow", "update", "execute", "--workflow-id", wid, "--name",
                  "confirm_deposit", "--input", json.dumps({"amount": "20", "tx_id": f"{loan_id}-tx"}))
    await until_state(server, wid, "ACTIVE")
    return wid


async def audit_kinds(db: Database, loan_id: str) -> list[str]:
    async with db.sessions() as s:
        rows = await s.scalars(select(AuditRecord.kind).where(AuditRecord.loan_id == loan_id)
                               .order_by(AuditRecord.id))
        return list(rows)


async def sold(db: Database, loan_id: str, seconds: float = 15) -> bool:
    for _ in range(int(seconds * 5)):
        async with db.sessions() as s:
            if (await s.scalars(select(ExchangeOrder).where(ExchangeOrder.loan_id == loan_id))).first():
                return True
        await asyncio.sleep(0.2)
    return False


async def test_breach_confirmed_by_later_observations_sells(
    operator: Operator, worker: None, task_queue: str, db: Database  # noqa: F811
) -> None:
    loan = f"HX6-{task_queue[-8:]}"  # the dev server is shared by the whole session
    wid = await active_eth_loan(operator, task_queue, loan)
    # 20,000 against 20 ETH at 1,212.12: 82.5%. Observed 10, 5 and 0 minutes ago, 1 s apart.
    for minutes_ago in (10, 5, 0):
        await signal(operator, wid, observation("ETH", "1212.12", minutes_ago))
        await asyncio.sleep(1)
    assert await sold(db, loan), await audit_kinds(db, loan)


async def test_malformed_signals_and_updates_from_the_stock_cli(
    operator: Operator, worker: None, task_queue: str, db: Database  # noqa: F811
) -> None:
    """Item 3: `--input 1 --input 2` once failed the loan's workflow task on every attempt."""
    wid = await active_eth_loan(operator, task_queue, f"HX3-{task_queue[-8:]}")
    for inputs in (("1", "2"), ("null",), ('"a string"',), ("[]",), ("{}",),
                   (observation("ETH", "1e309"),), (observation("ETH", "2000", -60 * 24 * 365 * 4),)):
        await signal(operator, wid, *inputs)
    refused = await asyncio.to_thread(
        temporal, operator, "workflow", "update", "execute", "--workflow-id", wid,
        "--name", "top_up", "--input", "1", "--input", "2")
    assert refused.returncode != 0 and "2 arguments" in refused.stderr + refused.stdout
    status = await until_state(operator, wid, "ACTIVE")  # still answers its query
    assert status["price"] == "2000"
    # ...and acts on the next good price: ETH 1,400 is a margin call (twice: a 30% move).
    await signal(operator, wid, observation("ETH", "1400", 0.01))
    await signal(operator, wid, observation("ETH", "1400"))
    await until_state(operator, wid, "MARGIN_CALL")
    described = json.loads((await asyncio.to_thread(
        temporal, operator, "workflow", "describe", "--workflow-id", wid)).stdout)
    assert "pendingWorkflowTask" not in described or \
        described["pendingWorkflowTask"].get("attempt", 1) <= 1


async def test_a_second_start_argument_carries_no_state(
    operator: Operator, worker: None, task_queue: str, db: Database  # noqa: F811
) -> None:
    loan = f"HX4-{task_queue[-8:]}"
    wid = f"loan-{loan}"
    state = {"from_run": "anything", "file": {"state": "ACTIVE", "collateral": "50"}}
    await run_cli(operator, "workflow", "start", "--type", "LoanWorkflow", "--task-queue",
                  task_queue, "--workflow-id", wid, "--input", json.dumps({**APPLICATION,
                                                                           "loan_id": loan}),
                  "--input", json.dumps(state))
    status = await until_state(operator, wid, "REJECTED")
    assert "resume" in status["reason"] and status["collateral_amount"] == "0"


async def test_a_repaid_loan_is_not_started_again_under_its_id(
    operator: Operator, worker: None, task_queue: str, db: Database  # noqa: F811
) -> None:
    # The stock CLI's default id reuse policy lets a new run start once the loan has closed.
    loan = f"HX9-{task_queue[-8:]}"
    wid = await active_eth_loan(operator, task_queue, loan)
    debt = (await status_of(operator, wid))["debt_usd"]
    await run_cli(operator, "workflow", "update", "execute", "--workflow-id", wid, "--name",
                  "repay", "--input", json.dumps({"amount_usd": debt, "reference": "wire-1"}))
    await until_state(operator, wid, "CLOSED")
    written = await audit_kinds(db, loan)
    mallory = MALLORY.model_dump(mode="json", exclude_none=True)
    await run_cli(operator, "workflow", "start", "--type", "LoanWorkflow", "--task-queue",
                  task_queue, "--workflow-id", wid, "--input",
                  json.dumps({**APPLICATION, "loan_id": loan, "borrower": mallory}))
    status = await until_state(operator, wid, "REJECTED")
    assert f"loan_id: '{loan}' belongs to an earlier loan" in status["reason"]
    # Nothing of the second start reached the desk: the loan's trail and its row are the first
    # loan's, closed, with Grace's id.
    assert await audit_kinds(db, loan) == written
    async with db.sessions() as s:
        row = await s.get(Loan, loan)
    assert row is not None and (row.state, row.borrower_id) == ("CLOSED", "B-7")
