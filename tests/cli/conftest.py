"""CLI tests: the real `loanflow` command (a subprocess) against a real Temporal dev server,
with a real worker in this process, a real database and a real SMTP server on loopback.

One dev server for the whole session; each test gets its own database, task queue and worker.
Tests run on SQLite; those parametrised with `backend` run on PostgreSQL too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.registry import build_activities
from loanflow.db import Database
from loanflow.devserver import DevServer
from loanflow.ports import free_port
from loanflow.stack import connect_when_ready
from loanflow.worker import build_worker
from tests.cli.support import Cli
from tests.conftest import _drop_pg_database, _fresh_pg_database
from tests.support import Inbox, quiet_settings


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ops_server(tmp_path_factory: Any) -> AsyncIterator[DevServer]:
    root: Path = tmp_path_factory.mktemp("ops-temporal")
    server = DevServer(db_file=root / "temporal.db", port=free_port(), headless=True,
                       log_file=root / "server.log")
    await server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ops_client(ops_server: DevServer) -> Client:
    # Waits until the server answers and has the loan search attributes.
    return await connect_when_ready(ops_server.address)


@pytest.fixture
def backend() -> str:
    """SQLite unless a test asks for both (`@pytest.mark.parametrize("backend", ...)`)."""
    return "sqlite"


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}"
        return
    url = _fresh_pg_database()
    yield url
    _drop_pg_database(url)


@pytest_asyncio.fixture(loop_scope="session")
async def store(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.create_all()
    yield database
    await database.dispose()


@dataclass
class Desk:
    """One test's desk: the CLI configured for it, its database and task queue."""

    cli: Cli
    db: Database
    task_queue: str

    def loan_id(self, name: str) -> str:
        """A loan id unique on the shared server: CLI-L1-3f9a0c (its task queue's suffix)."""
        return f"CLI-{name}-{self.task_queue.rsplit('-', 1)[-1]}"


@pytest.fixture
def cli(ops_server: DevServer, database_url: str, tmp_path: Path,
        smtp_server: tuple[Inbox, int]) -> Cli:
    """The CLI for this test (whether or not a worker runs)."""
    return Cli(tmp_path, {
        "TEMPORAL_ADDRESS": ops_server.address,
        "DATABASE_URL": database_url,
        "LOANFLOW_TASK_QUEUE": f"loans-{uuid.uuid4().hex[:8]}",
        "SMTP_PORT": str(smtp_server[1]),
        "LOANFLOW_VAR_DIR": str(tmp_path / "var"),
    })


@pytest_asyncio.fixture(loop_scope="session")
async def desk(cli: Cli, store: Database, ops_client: Client,
               smtp_server: tuple[Inbox, int]) -> AsyncIterator[Desk]:
    """The CLI with a worker polling its task queue, on its database."""
    queue = cli.env["LOANFLOW_TASK_QUEUE"]
    settings = quiet_settings(smtp_port=smtp_server[1], task_queue=queue,
                              var_dir=Path(cli.env["LOANFLOW_VAR_DIR"]))
    worker = build_worker(ops_client, store, settings, activities=build_activities(store, settings))
    async with worker:
        yield Desk(cli, store, queue)
