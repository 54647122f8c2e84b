"""Fixtures for the notice tests: a real SMTP sink on loopback, running or not yet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from loanflow.ports import free_port

from .helpers import Sink


@pytest_asyncio.fixture
async def sink(tmp_path: Path) -> AsyncIterator[Sink]:
    """A running sink that refuses gone@example.com (550) and defers busy@example.com (451)."""
    server = await Sink(tmp_path / "mail", 0, reject={"gone@example.com"},
                        defer={"busy@example.com"}).start()
    yield server
    await server.stop()


@pytest.fixture
def stopped_sink(tmp_path: Path) -> Sink:
    """A sink that is not listening yet: its port refuses connections until `start()`."""
    return Sink(tmp_path / "mail", free_port())
