"""The `make run` demo on a real dev server with the real worker: its prices move through the
market monitor, so `loanflow market status` and `loanflow book` show them afterwards; and the
console narrates what the desk did, one line each (issue 11)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client

from loanflow.db import Database
from loanflow.demo import run_demo
from loanflow.narration import narrating
from loanflow.settings import Settings
from loanflow.worker import build_worker
from tests.cli.conftest import Desk
from tests.cli.support import Cli
from tests.support import Inbox, quiet_settings


@pytest_asyncio.fixture(loop_scope="session")
async def stack(cli: Cli, store: Database, ops_client: Client,
                smtp_server: tuple[Inbox, int]) -> AsyncIterator[tuple[Desk, Settings]]:
    """What `loanflow up` runs: the loans' worker and the market monitor's, with every real
    activity (the monitor's fan-out signals loans through the client)."""
    settings = quiet_settings(smtp_port=smtp_server[1], task_queue=cli.env["LOANFLOW_TASK_QUEUE"],
                              var_dir=Path(cli.env["LOANFLOW_VAR_DIR"]))
    async with build_worker(ops_client, store, settings):
        yield Desk(cli, store, settings.task_queue), settings


async def test_the_demo_moves_prices_the_way_operators_do(
        stack: tuple[Desk, Settings], ops_client: Client) -> None:
    desk, settings = stack
    said: list[str] = []
    # The shared dev server: a monitor of this test's own, not the desk's live one.
    async with narrating(desk.db, said.append) as narrator:
        await run_demo(ops_client, settings, said.append,
                       monitor_id=f"market-monitor-{desk.task_queue}")
        while await narrator.tell_new():  # what the loans recorded last
            pass
    console = "\n".join(said)

    market = await desk.cli.ok("market", "status")
    assert "no price stored yet" not in market, market
    assert re.search(r"BTC \$?44,?000", market) and re.search(r"ETH \$?1,?700", market), market
    book = await desk.cli.json("book")
    assert {c["asset"]: c["price"] is not None for c in book["collateral"]} == \
        {"BTC": True, "ETH": True}, book

    # The desk's decisions, one line each, in the order they happened.
    narrated = [line for line in said if line.startswith("  DEMO-")]
    kinds = [(line.split(":")[0].strip(), line.split(": ", 1)[1].split(" ")[0])
             for line in narrated]
    for event in [("DEMO-1", "disbursed"), ("DEMO-1", "CLOSED"), ("DEMO-2", "MARGIN"),
                  ("DEMO-2", "margin"), ("DEMO-3", "SOLD")]:
        assert event in kinds, console
    assert kinds.index(("DEMO-2", "MARGIN")) < kinds.index(("DEMO-2", "margin")), console
    call = next(line for line in narrated if "MARGIN CALL" in line)
    assert "LTV 70.59% at ETH $1,700.00" in call and "by " in call and "UTC" in call, call
    assert "DEMO-2: margin call cured by a top-up" in console, console
    # The demo's final listing: each loan in its own asset.
    assert re.search(r"DEMO-1: CLOSED .* collateral 0 BTC", console), console
    assert re.search(r"DEMO-2: ACTIVE .* collateral 2\d(\.\d+)? ETH", console), console
    assert "DEMO-3: SOLD" in console and "(past the hard floor)" in console, console
    assert re.search(r"DEMO-3: ACTIVE", console), console
