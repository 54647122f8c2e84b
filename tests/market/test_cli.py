"""`loanflow market` end to end on the dev server: a manual tick, the no-price condition as an
operator sees it, a replay with its progress bar, and stopping a monitor.

The command runs as a subprocess, the way an operator runs it. In this process it would race the
worker's threads: typer sets and unsets an environment variable while it parses arguments, and
setenv beside a thread's getenv crashed the interpreter (segfault in CI, typer 0.29)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.client import Client

from loanflow.db import Database
from loanflow.worker import build_worker
from tests.cli.support import Cli
from tests.e2e.conftest import dev_client, dev_server  # noqa: F401  (session dev server)
from tests.support import quiet_settings


@pytest_asyncio.fixture(loop_scope="session")
async def cli(
    dev_server: Any, dev_client: Client, tmp_path: Path,  # noqa: F811
) -> AsyncIterator[Cli]:
    """A worker on its own task queue and SQLite file; the `loanflow` command pointed at both."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}"
    task_queue = f"market-cli-{uuid.uuid4().hex[:8]}"
    db = Database(url)
    await db.create_all()
    settings = quiet_settings(database_url=url, task_queue=task_queue)
    async with build_worker(dev_client, db, settings):
        yield Cli(cwd=tmp_path, env={
            "TEMPORAL_ADDRESS": dev_server.address, "DATABASE_URL": url,
            "LOANFLOW_TASK_QUEUE": task_queue, "LOANFLOW_VAR_DIR": str(tmp_path)})
    await db.dispose()


async def test_tick_status_replay_and_stop(cli: Cli) -> None:
    monitor = f"market-monitor-{uuid.uuid4().hex[:6]}"
    out = await cli.ok("market", "tick", "BTC", "--quote", "bitstamp=16000", "--quote", "coinbase=16010",
                    "--monitor", monitor)
    assert "BTC $16,005.00" in out and "bitstamp, coinbase" in out and "signalled 0" in out

    out = await cli.ok("market", "tick", "BTC", "--quote", "bitstamp=16574", "--monitor", monitor)
    assert "BTC: NO PRICE" in out and "only 1 fresh venue quote(s), quorum is 2" in out

    out = await cli.ok("market", "status")
    assert "NO PRICE" in out and "$16,005.00" in out and "quorum is 2" in out
    # the no-price period is listed, still open
    assert "no-price periods: 1 (1 tick(s)):" in out and "still no price" in out
    # ... and in the monitor's Web UI details
    shown = await details(cli, monitor)
    assert "**no-price periods** (1 tick(s) without a price in all)" in shown
    assert "only 1 fresh venue quote(s), quorum is 2" in shown

    out = await cli.ok("market", "replay", "--live", "--usdt-usd", "1", "--window", "2022-11",
                       "--from", "2022-11-09T21:00:00Z", "--to", "2022-11-10T00:00:00Z",
                       "--speed", "max")
    assert "done: 4 ticks, 8 prices, 0 without a price" in out
    assert "note: binance (BTC), binance (ETH) quote in USDT: converted at 1 USD" in out
    # The monitor's own task queue, which the production worker polls beside the loans queue.
    assert f"on task queue '{cli.env['LOANFLOW_TASK_QUEUE']}-market'" in out

    out = await cli.ok("market", "stop", "--monitor", monitor)
    assert f"asked {monitor} to stop" in out


async def refused(cli: Cli, *args: str) -> str:
    """The command's usage error, with the box drawing and line wrapping taken out."""
    done = await cli.run("market", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).replace("│", " ").split())


async def details(cli: Cli, monitor: str) -> str:
    """The monitor's current details as the Web UI shows them."""
    from temporalio.api.sdk.v1 import WorkflowMetadata
    from temporalio.client import Client

    from loanflow.temporal_client import data_converter

    client = await Client.connect(cli.env["TEMPORAL_ADDRESS"], data_converter=data_converter())
    # The query the Web UI itself asks for a workflow's current details.
    metadata = await client.get_workflow_handle(monitor).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def test_replay_refuses_without_live_and_says_why(cli: Cli) -> None:
    message = await cli.error("market", "replay", "--window", "2022-11", "--speed", "max")
    assert message.startswith("market replay feeds the window's historical prices to THIS desk")
    assert "use `loanflow stress`" in message and "pass --live" in message


async def test_a_bad_tick_is_refused_and_the_monitor_goes_on(cli: Cli) -> None:
    monitor = f"market-monitor-{uuid.uuid4().hex[:6]}"
    message = (await refused(cli, "tick", "ETH", "--quote", "a=1e309", "--quote", "b=2000",
                             "--monitor", monitor))
    assert "--quote 'a=1e309': price 1E+309 is outside the sane range of ETH" in message
    # The same quote sent straight to the update (as `temporal workflow update` would) is
    # refused by its validator, naming the field; the next tick completes.
    from temporalio.client import Client, WorkflowUpdateFailedError
    from temporalio.contrib.pydantic import pydantic_data_converter

    from loanflow.prices.messages import ManualTick
    from loanflow.prices.sources import Quote

    out = await cli.ok("market", "tick", "ETH", "--quote", "a=2000", "--quote", "b=2001",
                       "--monitor", monitor)
    assert "ETH $2,000.50" in out
    client = await Client.connect(cli.env["TEMPORAL_ADDRESS"],
                                  data_converter=pydantic_data_converter)
    handle = client.get_workflow_handle(monitor)
    bad = ManualTick(quotes=[Quote(venue="a", asset="ETH", price=Decimal("1e309"))])
    try:
        await handle.execute_update("tick", bad)
    except WorkflowUpdateFailedError as err:
        assert err.cause is not None and "quotes[0] (a ETH).price: 1E+309" in err.cause.message
    else:
        raise AssertionError("the monitor took a tick of 1e309")
    out = await cli.ok("market", "tick", "ETH", "--quote", "a=2010", "--quote", "b=2011",
                       "--monitor", monitor)
    assert "ETH $2,010.50" in out
    await cli.ok("market", "stop", "--monitor", monitor)


async def test_bad_input_is_refused_with_the_reason(cli: Cli) -> None:
    assert "expected venue=price" in await refused(cli, "tick", "BTC", "--quote", "bitstamp")
    assert "known: 2022-05-06, 2022-11, 2023-07" in await refused(cli, "replay", "--live", "--window",
                                                                   "1999")
    assert "at least two --venue" in await refused(cli, "start", "--venue",
                                                   "a=bitstamp:http://x")


EXPONENT = re.compile(r"\d[eE][+-]?\d")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_status_and_tick_in_json_and_for_people(cli: Cli) -> None:
    """Issue 11: prices for people as dollars (`ETH 1.4E+3` was shown), and `--json` on
    `market status` and `market tick`, prices to the cent, times in UTC with `Z`."""
    monitor = f"market-monitor-{uuid.uuid4().hex[:6]}"
    await cli.ok("price", "ETH", "1400")
    shown = await cli.ok("market", "status")
    assert "ETH $1,400.00" in shown and not EXPONENT.search(shown), shown

    summary = await cli.json("market", "tick", "ETH", "--quote", "bitstamp=1400",
                             "--quote", "coinbase=1401", "--monitor", monitor)
    [tick] = summary["ticks"]
    assert tick["observation"]["price"] == "1400.50" and ISO_Z.match(summary["at"])
    said = await cli.ok("market", "tick", "ETH", "--quote", "bitstamp=1400",
                        "--quote", "coinbase=1401", "--monitor", monitor)
    assert "ETH $1,400.50" in said and "previous $1,400.50" in said, said

    report = {a["asset"]: a for a in (await cli.json("market", "status"))["assets"]}
    eth = report["ETH"]
    assert eth["latest"]["price"] == "1400.50" and ISO_Z.match(eth["latest"]["observed_at"])
    assert eth["stale"] is False and eth["last_tick"]["price"] == "1400.50"
    assert report["BTC"]["latest"] is None and report["BTC"]["no_price_periods"] == []
    await cli.ok("market", "stop", "--monitor", monitor)


async def test_replay_start_and_stop_in_json(cli: Cli) -> None:
    """Issue 11: `--json` on every command: a replay's totals (no progress bar), the live
    monitor started and stopped, each one JSON object on stdout, prices to the cent, times Z."""
    import json

    done = await cli.run("market", "replay", "--live", "--usdt-usd", "1", "--window", "2022-11",
                         "--from", "2022-11-09T21:00:00Z", "--to", "2022-11-10T00:00:00Z",
                         "--speed", "max", "--json")
    assert done.returncode == 0, done.stderr
    replay = json.loads(done.stdout)  # nothing but the JSON: no bar, no notes for people
    assert (replay["done"], replay["ticks"], replay["prices"], replay["no_price"]) == (
        True, 4, 8, 0)
    assert replay["from"] == "2022-11-09T21:00:00Z" and ISO_Z.match(replay["to"])
    assert replay["task_queue"] == f"{cli.env['LOANFLOW_TASK_QUEUE']}-market"
    assert re.fullmatch(r"\d+\.\d\d", replay["last"]["BTC"]["price"]), replay["last"]
    assert ISO_Z.match(replay["last"]["BTC"]["observed_at"])
    assert replay["notes"] == [
        "note: binance (BTC), binance (ETH) quote in USDT: converted at 1 USD"]
    assert all(re.fullmatch(r"\d+\.\d\d", last["price"]) for last in replay["last"].values())

    # A live monitor on venues that do not answer: started and stopped, in JSON.
    nowhere = "http://127.0.0.1:9"
    started = await cli.json("market", "start", "--interval", "3600",
                             "--venue", f"a=bitstamp:{nowhere}", "--venue", f"b=coinbase:{nowhere}")
    assert started["monitor"] == "market-monitor" and started["interval_seconds"] == 3600
    assert started["venue_names"] == ["a", "b"] and started["run_id"]
    assert await cli.json("market", "stop") == {"monitor": "market-monitor",
                                                "stop_requested": True}
