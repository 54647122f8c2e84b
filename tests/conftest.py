"""Shared fixtures: real databases (SQLite file and PostgreSQL) and real Temporal servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from loanflow.db import Database
from loanflow.ports import free_port
from tests.support import TEST_CODEC_KEYS, Inbox

# Before any settings are read: every client, worker and test environment encrypts.
os.environ["LOANFLOW_CODEC_KEYS"] = TEST_CODEC_KEYS
os.environ.pop("LOANFLOW_CODEC_KEYS_FILE", None)

# The SDK core warns at every worker start that the time-skipping server does not advertise a
# capability it cannot have; keep the core's own log to errors so real problems stand out.
Runtime.set_default(
    Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="WARN")
    ))),
    error_if_already_set=False,
)

PG_ADMIN_URL = os.environ.get(
    "LOANFLOW_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _fresh_pg_database() -> str:
    """A new, empty PostgreSQL database for one test; its async URL."""
    name = f"loanflow_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}"
        return
    url = _fresh_pg_database()
    yield url
    _drop_pg_database(url)


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A real database with the schema created, on SQLite and on PostgreSQL."""
    database = Database(db_url)
    await database.create_all()
    yield database
    await database.dispose()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: (inbox, port)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()
