"""Record the event histories the replay test checks every change against.

    .venv/bin/python -m tests.replay.record_histories [SCENARIO ...]   # default: all

Runs a few representative loans on the time-skipping test server with the real activities
(SQLite in a temp dir, a real SMTP sink) and saves each finished loan's history as JSON in
tests/replay/histories/. Re-record only for a deliberate, patched change of workflow code:
the point of these files is that running loans were started by the *old* code.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.binaries import test_server
from loanflow.db import Database
from loanflow.models import LoanState
from loanflow.ports import free_port
from loanflow.worker import build_worker
from tests.support import Inbox, quiet_settings
from tests.workflows.book import application
from tests.workflows.conftest import Desk

HISTORIES = Path(__file__).with_name("histories")


async def until(desk: Desk, handle: WorkflowHandle[Any, Any], state: LoanState) -> None:
    for _ in range(300):
        if (await desk.status(handle)).state == state:
            return
        await desk.env.sleep(timedelta(seconds=1))
    raise AssertionError(f"{handle.id} never reached {state}")


async def funded(desk: Desk, loan_id: str, **overrides: Any) -> WorkflowHandle[Any, Any]:
    handle = await desk.open(application(loan_id, **overrides))
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "1", "tx_id": f"{loan_id}-tx"})
    await until(desk, handle, LoanState.ACTIVE)
    return handle


async def repaid(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-REPAID")
    await desk.env.sleep(timedelta(days=10))
    await handle.execute_update("repay", {"amount_usd": "5000.00", "reference": "w1"})
    debt = (await desk.status(handle)).debt_usd
    await handle.execute_update("repay", {"amount_usd": str(debt), "reference": "w2"})
    return handle


async def called_and_liquidated(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-CALL")
    await desk.price(handle, "BTC", "45500")  # warning
    await desk.price(handle, "BTC", "42000")  # margin call
    await until(desk, handle, LoanState.MARGIN_CALL)
    await handle.execute_update("extend_cure", {"hours": 2, "reason": "wire", "operator": "ops"})
    for _ in range(60 * 4):
        await desk.env.sleep(timedelta(minutes=15))
        await desk.price(handle, "BTC", "42000")
        if (await desk.status(handle)).state == LoanState.ACTIVE:
            break
    await desk.price(handle, "BTC", "20000")  # a crash through the debt: default
    return handle


async def sold_in_limit_orders(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A hard-floor sale in two limit orders (patch "sale-sizing-limit"), then repaid."""
    handle = await funded(desk, "HIST-LIMIT")
    await desk.price(handle, "BTC", "33000")  # 90.9%: past the hard floor
    for _ in range(60):
        await desk.env.sleep(timedelta(seconds=1))
        status = await desk.status(handle)
        if status.state == LoanState.ACTIVE and status.collateral_amount < 1:
            break
    await desk.settle(handle)
    debt = (await desk.status(handle)).debt_usd
    await handle.execute_update("repay", {"amount_usd": str(debt), "reference": "w1"})
    return handle


async def continued(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-CAN", history_limit=200)
    for tick in range(200):
        await desk.price(handle, "BTC", str(100000 + tick % 3))
        if tick % 20 == 19:
            await desk.env.sleep(timedelta(seconds=1))
    return handle


async def imported(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A migrated loan at 75% LTV: margin call on its first price, cured, repaid."""
    from loanflow.book_import import store_book
    from loanflow.imported import ImportedLoan

    now = await desk.now()
    loan = ImportedLoan(
        loan_id="HIST-IMPORT", borrower_id="B-100", borrower_name="Ada Lovelace",
        borrower_email="ada@example.com", borrower_country="GB", collateral_asset="BTC",
        collateral_amount=Decimal("1"), principal_usd=Decimal("74000.00"),
        accrued_interest_usd=Decimal("1000.00"), annual_rate=Decimal("0.12"),
        originated_at=now - timedelta(days=30), maturity_at=now + timedelta(days=335),
    )
    await store_book(desk.db, [loan])
    handle = await desk.open(loan.application())
    await until(desk, handle, LoanState.ACTIVE)
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.MARGIN_CALL)
    cure = (await desk.status(handle)).cure_repay_usd
    await handle.execute_update("repay", {"amount_usd": str(cure), "reference": "cure"})
    debt = (await desk.status(handle)).debt_usd
    await handle.execute_update("repay", {"amount_usd": str(debt), "reference": "rest"})
    return handle


SCENARIOS: dict[str, Callable[[Desk], Awaitable[WorkflowHandle[Any, Any]]]] = {
    "repaid": repaid,
    "margin_call_liquidation_default": called_and_liquidated,
    "continue_as_new_first_run": continued,
    "imported": imported,
    "hard_floor_limit_sales": sold_in_limit_orders,
}


async def record(names: list[str]) -> None:
    HISTORIES.mkdir(exist_ok=True)
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=test_server()
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/replay.db")
        await db.create_all()
        settings = quiet_settings(smtp_port=port, var_dir=Path(tmp))
        worker = build_worker(env.client, db, settings, task_queue="replay",
                              activities=build_activities(db, settings))
        async with worker:
            desk = Desk(env, db, "replay")
            for name in names:
                handle = await SCENARIOS[name](desk)
                await desk.settle(handle)
                history = await env.client.get_workflow_handle(
                    handle.id, run_id=handle.first_execution_run_id
                ).fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}: {len(history.events)} events")
            await desk.close()
        await db.dispose()
    await env.shutdown()
    smtp.stop()


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    asyncio.run(record(chosen))
