"""An operator drives a loan with the stock `temporal` CLI alone, by the contract's names."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.registry import build_activities
from loanflow.binaries import temporal_cli
from loanflow.codec import EncryptionCodec
from loanflow.codec_server import CodecServer
from loanflow.db import Database
from loanflow.devserver import DevServer
from loanflow.settings import get_settings
from loanflow.worker import build_worker
from tests.support import Inbox, quiet_settings
from tests.workflows.book import assert_books_agree
from loanflow.models import LoanStatus

APPLICATION = {
    "loan_id": "CLI1",
    "borrower": {"id": "B-7", "name": "Grace Hopper", "email": "grace@example.com", "country": "US"},
    "principal_usd": "20000.00",
    "collateral_asset": "ETH",
    "collateral_amount": "20",
    "term_days": 90,
    "annual_rate": "0.10",
}


@dataclass
class Operator:
    """The stock CLI as an operator on this machine runs it: against the dev server, with
    loanflow's codec server (`--codec-endpoint`) so it reads and writes encrypted payloads."""

    server: DevServer
    codec_endpoint: str


def temporal(op: Operator, *args: str, codec: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the stock CLI against the dev server (without the codec: plain JSON in and out)."""
    cmd = [temporal_cli(), *args, "--address", op.server.address, "--output", "json"]
    if codec:
        cmd += ["--codec-endpoint", op.codec_endpoint]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


async def run_cli(op: Operator, *args: str, codec: bool = True) -> Any:
    """Run the stock CLI off the event loop (the worker runs on it); its parsed JSON output."""
    for _ in range(3):
        done = await asyncio.to_thread(temporal, op, *args, codec=codec)
        # The server's transient "busy" answer (its lock on the loan timed out on a loaded
        # machine): the operator simply runs the command again.
        if "Workflow is busy" not in done.stderr:
            break
        await asyncio.sleep(0.5)
    assert done.returncode == 0, f"{' '.join(args[:3])}: {done.stderr or done.stdout}"
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def operator(dev_server: DevServer) -> Iterator[Operator]:
    codec = CodecServer(EncryptionCodec(get_settings().keyring()), "127.0.0.1", 0,
                        origins=[]).start()
    yield Operator(dev_server, f"{codec.url}")
    codec.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    dev_client: Client, db: Database, task_queue: str, smtp_server: tuple[Inbox, int]
) -> AsyncIterator[None]:
    settings = quiet_settings(smtp_port=smtp_server[1], task_queue=task_queue)
    async with build_worker(dev_client, db, settings, activities=build_activities(db, settings)):
        yield


async def status_of(server: Operator, workflow_id: str) -> dict[str, Any]:
    out = await run_cli(server, "workflow", "query", "--workflow-id", workflow_id, "--name", "status")
    return out["queryResult"][0]


async def until_state(server: Operator, workflow_id: str, state: str) -> dict[str, Any]:
    for _ in range(100):
        status = await status_of(server, workflow_id)
        if status["state"] == state:
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"{workflow_id} stuck in {status['state']}, expected {state}")


def price_now(asset: str, price: str) -> str:
    from datetime import datetime, timezone

    at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({"asset": asset, "price": price, "observed_at": at, "source": "desk"})


async def test_stock_cli_drives_a_loan_end_to_end(
    operator: Operator, worker: None, task_queue: str, db: Database
) -> None:
    wid, dev_server = "loan-CLI1", operator
    # Started with plain JSON, as without the codec: loanflow still reads it.
    await run_cli(dev_server, "workflow", "start", "--type", "LoanWorkflow", "--task-queue",
                  task_queue, "--workflow-id", wid, "--input", json.dumps(APPLICATION),
                  codec=False)
    await run_cli(dev_server, "workflow", "signal", "--workflow-id", wid, "--name",
                  "price_update", "--input", price_now("ETH", "2000"))
    await until_state(dev_server, wid, "AWAITING_COLLATERAL")

    update = ["workflow", "update", "execute", "--workflow-id", wid]
    await run_cli(dev_server, *update, "--name", "confirm_deposit",
                  "--input", json.dumps({"amount": "20", "tx_id": "0xabc"}))
    await until_state(dev_server, wid, "ACTIVE")

    # A reused tx id is refused by the validator with a message naming the field.
    refused = await asyncio.to_thread(
        temporal, operator, *update, "--name", "top_up",
        "--input", json.dumps({"amount": "1", "tx_id": "0xabc"}),
    )
    assert refused.returncode != 0 and "tx_id" in (refused.stderr + refused.stdout)

    # ETH falls to 1,400: 20,000 / 28,000 = 71.4%, a margin call with cure amounts.
    await run_cli(dev_server, "workflow", "signal", "--workflow-id", wid, "--name",
                  "price_update", "--input", price_now("ETH", "1400"))
    called = await until_state(dev_server, wid, "MARGIN_CALL")
    assert called["cure_deadline"] and called["cure_top_up"] and called["cure_repay_usd"]

    await run_cli(dev_server, *update, "--name", "repay", "--input",
                  json.dumps({"amount_usd": called["cure_repay_usd"], "reference": "wire-9"}))
    cured = await until_state(dev_server, wid, "ACTIVE")
    await run_cli(dev_server, *update, "--name", "repay", "--input",
                  json.dumps({"amount_usd": cured["debt_usd"], "reference": "wire-10"}))
    closed = await until_state(dev_server, wid, "CLOSED")
    assert closed["collateral_amount"] == "0"
    await assert_books_agree(db, LoanStatus.model_validate(closed))

    listed = await run_cli(dev_server, "workflow", "list", "--query",
                           "LoanState='CLOSED' AND BorrowerId='B-7'")
    assert any(row["execution"]["workflowId"] == wid for row in listed)

    # Without the codec endpoint the stock CLI sees only ciphertext; with it, the loan.
    bare = await run_cli(dev_server, "workflow", "query", "--workflow-id", wid, "--name",
                         "status", codec=False)
    assert "CLOSED" not in json.dumps(bare) and "Grace" not in json.dumps(bare)
    described = await run_cli(dev_server, "workflow", "describe", "--workflow-id", wid)
    assert "CLOSED" in json.dumps(described)
