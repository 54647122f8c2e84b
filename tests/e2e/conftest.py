"""End-to-end harness: a real Temporal dev server (the same binary operators run), a real
worker, SQLite or PostgreSQL, and a real SMTP server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.client import Client

from loanflow.devserver import DevServer
from loanflow.ports import free_port
from loanflow.stack import connect_when_ready


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_server(tmp_path_factory: Any) -> AsyncIterator[DevServer]:
    root: Path = tmp_path_factory.mktemp("temporal")
    server = DevServer(
        db_file=root / "temporal.db", port=free_port(), headless=True, log_file=root / "server.log"
    )
    await server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_client(dev_server: DevServer) -> Client:
    # The server listens a moment before it answers (a plain connect lost that race in a full run).
    return await connect_when_ready(dev_server.address)


@pytest_asyncio.fixture
def task_queue() -> str:
    return f"loans-{uuid.uuid4().hex[:8]}"
