"""A worker killed (SIGKILL) in the middle of a liquidation, after the exchange sold and before
loanflow booked anything, and a new worker started: exactly one sale, one set of ledger entries,
one notice, one e-mail. The same for a book import killed while its loans open (their opening
effects run as local activities in the workflow task that adopts them, which a new worker runs
again from the start)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from loanflow.book_import import import_book
from loanflow.db import Database
from loanflow.devserver import DevServer
from loanflow.models import LoanState, LoanStatus
from tests.support import Inbox, idle
from tests.workflows.book import application, assert_books_agree, notices, table
from tests.workflows.test_import import migrated

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`killable_worker.py` as a child process, configured through its environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[str] | None = None

    def start(self, slow_reply_seconds: float = 0, slow_custody_seconds: float = 0) -> None:
        env = {**self.env, "SLOW_REPLY_SECONDS": str(slow_reply_seconds),
               "SLOW_CUSTODY_SECONDS": str(slow_custody_seconds)}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("killable_worker.py"))],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "worker ready" in line, line

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def workers(
    dev_server: DevServer, db_url: str, task_queue: str, smtp_server: tuple[Inbox, int],
    tmp_path: Path,
) -> Iterator[WorkerProcess]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEMPORAL_ADDRESS": dev_server.address,
        "DATABASE_URL": db_url,
        "LOANFLOW_TASK_QUEUE": task_queue,
        "LOANFLOW_VAR_DIR": str(tmp_path),
        "SMTP_PORT": str(smtp_server[1]),
        "LOANFLOW_FAKE_LATENCY_MS": "0",
        "LOANFLOW_FAKE_FAILURE_RATE": "0",
    }
    process = WorkerProcess(env)
    yield process
    process.stop()


async def wait_for(check: Any, what: str, limit: float = 90) -> Any:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def rows(db: Database, name: str, **where: str) -> int:
    t = table(name)
    query = select(func.count()).select_from(t)
    for column, value in where.items():
        query = query.where(t.c[column] == value)
    async with db.sessions() as s:
        return (await s.execute(query)).scalar_one()


def price(value: str) -> dict[str, str]:
    return {"asset": "BTC", "price": value, "observed_at": datetime.now(timezone.utc).isoformat()}


async def test_sigkill_mid_liquidation_leaves_exactly_one_of_everything(
    dev_client: Client, db: Database, workers: WorkerProcess, task_queue: str,
    smtp_server: tuple[Inbox, int],
) -> None:
    workers.start(slow_reply_seconds=600)
    loan = f"KILL-{task_queue[-8:]}"  # the dev server is shared by the whole session
    handle = await dev_client.start_workflow(
        "LoanWorkflow", application(loan), id=f"loan-{loan}", task_queue=task_queue
    )

    async def state() -> LoanState:
        return (await handle.query("status", result_type=LoanStatus)).state

    await handle.signal("price_update", price("100000"))
    await wait_for(lambda: _is(state, LoanState.AWAITING_COLLATERAL), "awaiting collateral")
    await handle.execute_update("confirm_deposit", {"amount": "1", "tx_id": "kill-tx"})
    await wait_for(lambda: _is(state, LoanState.ACTIVE), "disbursement")

    # 93.75%: past the hard floor. A 68% move: the loan acts once a second, later observation
    # confirms it (a lone print that far from the last price is held).
    await handle.signal("price_update", price("32000"))
    await handle.signal("price_update", price("32000"))
    await wait_for(lambda: rows(db, "exchange_orders", loan_id=loan), "the venue's fill")
    workers.kill()  # the venue sold; loanflow has booked nothing yet
    assert await rows(db, "ledger_entries", key=f"{loan}:sale:1") == 0

    workers.start()
    await wait_for(lambda: _is(state, LoanState.ACTIVE), "the liquidation to finish")
    await wait_for(lambda: _settled(handle), "background notices")

    # 93.75% sells in two limit orders (the second from where the first's fill left the loan),
    # each filled and booked once
    assert await rows(db, "exchange_orders", loan_id=loan) == 2
    assert await rows(db, "ledger_entries", key=f"{loan}:sale:1") == 1
    assert await rows(db, "ledger_entries", key=f"{loan}:sale:2") == 1
    assert await notices(db, loan, "liquidation_executed") == ["liquidation_executed"]
    inbox = smtp_server[0]
    liquidation_mails = [m for m in inbox.messages if b"liquidation_executed" in m]
    assert len(liquidation_mails) == 1
    await assert_books_agree(db, await handle.query("status", result_type=LoanStatus))


async def test_sigkill_while_imported_loans_open_leaves_exactly_one_of_everything(
    dev_client: Client, db: Database, workers: WorkerProcess, task_queue: str,
    smtp_server: tuple[Inbox, int],
) -> None:
    workers.start(slow_custody_seconds=600)
    now = datetime.now(timezone.utc)
    loans = [migrated(f"KILLIMP{n}-{task_queue[-8:]}", now) for n in range(3)]
    ids = [loan.loan_id for loan in loans]
    await import_book(dev_client, db, loans, task_queue=task_queue)

    async def booked() -> bool:
        return all([await rows(db, "ledger_entries", key=f"{i}:import") for i in ids])

    # Each loan's opening balances are booked; the custodian has not answered for its address.
    await wait_for(booked, "the opening balances")
    workers.kill()
    assert all([await rows(db, "custody_accounts", loan_id=i) == 0 for i in ids])

    workers.start()
    handles = [dev_client.get_workflow_handle(f"loan-{i}") for i in ids]
    for handle in handles:
        await wait_for(lambda h=handle: _is(lambda: _state(h), LoanState.ACTIVE), "the import")
        await wait_for(lambda h=handle: _settled(h), "the import notice")
    inbox = smtp_server[0]
    for loan_id, handle in zip(ids, handles):
        assert await rows(db, "ledger_entries", key=f"{loan_id}:import") == 1
        assert await rows(db, "custody_accounts", loan_id=loan_id) == 1
        assert await notices(db, loan_id, "loan_migrated") == ["loan_migrated"]
        assert sum(loan_id.encode() in m for m in inbox.messages) == 1
        await assert_books_agree(db, await handle.query("status", result_type=LoanStatus))


async def _state(handle: Any) -> LoanState:
    return (await handle.query("status", result_type=LoanStatus)).state


async def _is(state: Any, wanted: LoanState) -> bool:
    return await state() == wanted


async def _settled(handle: Any) -> bool:
    return await idle(handle)  # notices go out one by one: a task between them counts too
