"""The database as the CLI uses it: the configured one, for one command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from typing import TYPE_CHECKING

from loanflow.settings import get_settings

if TYPE_CHECKING:
    from loanflow.db import Database


@asynccontextmanager
async def database() -> AsyncIterator[Database]:
    from loanflow.db import Database

    db = Database(get_settings().db_url)
    try:
        yield db
    finally:
        await db.dispose()
