"""Which worker's notice relay runs: one per database, whatever the number of workers.

Every `loanflow worker` starts a relay; only the one holding the database's relay lease sends,
the others stand by and take over when it goes (its process ends, or its connection does). On
PostgreSQL the lease is a session advisory lock held on a connection of its own; on SQLite
(workers on one machine, sharing the file) an exclusive `flock` on a file beside the database.
Both are released by the operating system or the server the moment their holder dies, so a
killed worker never leaves the desk without a relay.

The lease keeps a loan's notices in order across workers (two relays could each take one of
a loan's notices at once); it is not what keeps a message from going out twice: the outbox
row's claims do that, lease or not (`loanflow.mail.delivery`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from loanflow.db import Database

# The advisory lock's key: any constant the desk's database uses for nothing else.
ADVISORY_KEY = 0x6C6F616E_72656C  # "loanrel"


class RelayLease:
    """Try to take the relay lease (`acquire`), hold it, and give it back (`release`)."""

    def __init__(self, db: Database, *, key: int = ADVISORY_KEY) -> None:
        self.db, self.key = db, key  # `key`: the advisory lock's (PostgreSQL)
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    async def acquire(self) -> bool:
        """True if this relay holds the lease now (it may have held it already)."""
        if self.held:
            return True
        if self.db.is_sqlite:
            return self._lock_file()
        conn = await self.db.engine.connect()
        try:
            taken = (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                        {"key": self.key})).scalar_one()
            # The lock is the session's, not the transaction's: end the transaction, so that
            # the held connection keeps no snapshot open (it would hold back vacuum).
            await conn.commit()
        except BaseException:
            await conn.invalidate()
            raise
        if not taken:
            await conn.close()  # it holds nothing: back to the pool
            return False
        self._conn = conn
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _unlock(conn, self.key)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # and with its descriptor, the flock

    def _lock_file(self) -> bool:
        path = _lock_path(self.db.url)
        if path is None:  # an in-memory database: one process by definition
            self._fd = os.open(os.devnull, os.O_RDONLY)
            return True
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True


async def _unlock(conn: AsyncConnection, key: int) -> None:
    """Give the advisory lock back at once (the next relay may ask the moment this returns),
    then the connection to the pool; if that fails, end the session, which ends its lock."""
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        await conn.commit()
        await conn.close()
    except Exception:  # noqa: BLE001  (the connection may be gone: so is its lock)
        await conn.invalidate()


def _lock_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.relay-lock")
