"""`loanflow market` end to end on the dev server: a manual tick, the no-price condition as an
operator sees it, a replay with its progress bar, and stopping a monitor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from typer.testing import CliRunner

from loanflow.cli.market import market_app
from loanflow.db import Database
from loanflow.settings import get_settings
from loanflow.worker import build_worker
from tests.e2e.conftest import dev_client, dev_server  # noqa: F401  (session dev server)
from tests.support import quiet_settings


@pytest_asyncio.fixture(loop_scope="session")
async def cli_env(
    dev_server: Any, dev_client: Client, tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Database]:
    """A worker on its own task queue and SQLite file; the CLI pointed at both."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}"
    task_queue = f"market-cli-{uuid.uuid4().hex[:8]}"
    for name, value in {"TEMPORAL_ADDRESS": dev_server.address, "DATABASE_URL": url,
                        "LOANFLOW_TASK_QUEUE": task_queue,
                        "LOANFLOW_VAR_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    db = Database(url)
    await db.create_all()
    settings = quiet_settings(database_url=url, task_queue=task_queue)
    async with build_worker(dev_client, db, settings):
        yield db
    await db.dispose()
    get_settings.cache_clear()


async def cli(*args: str) -> str:
    """Run the command in a thread (it runs its own event loop) and return its output."""
    result = await asyncio.to_thread(CliRunner().invoke, market_app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


async def test_tick_status_replay_and_stop(cli_env: Database) -> None:
    monitor = f"market-monitor-{uuid.uuid4().hex[:6]}"
    out = await cli("tick", "BTC", "--quote", "bitstamp=16000", "--quote", "coinbase=16010",
                    "--monitor", monitor)
    assert "BTC 16005" in out and "bitstamp, coinbase" in out and "signalled 0" in out

    out = await cli("tick", "BTC", "--quote", "bitstamp=16574", "--monitor", monitor)
    assert "BTC: NO PRICE" in out and "only 1 fresh venue quote(s), quorum is 2" in out

    out = await cli("status")
    assert "NO PRICE" in out and "16005" in out and "quorum is 2" in out

    out = await cli("replay", "--window", "2022-11", "--from", "2022-11-09T21:00:00Z",
                    "--to", "2022-11-10T00:00:00Z", "--speed", "max")
    assert "done: 4 ticks, 8 prices, 0 without a price" in out

    out = await cli("stop", "--monitor", monitor)
    assert f"asked {monitor} to stop" in out


async def refused(*args: str) -> str:
    """The command's usage error, with the box drawing and line wrapping taken out."""
    result = await asyncio.to_thread(CliRunner().invoke, market_app, list(args))
    assert result.exit_code == 2, result.output
    return " ".join(result.output.replace("│", " ").split())


async def test_bad_input_is_refused_with_the_reason(cli_env: Database) -> None:
    assert "expected venue=price" in await refused("tick", "BTC", "--quote", "bitstamp")
    assert "known: 2022-05-06, 2022-11, 2023-07" in await refused("replay", "--window", "1999")
    assert "at least two --venue" in await refused("start", "--venue", "a=bitstamp:http://x")
