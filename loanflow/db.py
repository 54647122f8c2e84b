"""Database plumbing: the declarative base, engines and sessions. Tables live in
`loanflow.schema`; this module only knows how to connect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Numeric, String, Table, event
from sqlalchemy.types import TypeDecorator
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from loanflow.money import WIDE


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(38, 18) on PostgreSQL, text on SQLite (whose NUMERIC is a
    binary float and would lose cents and wei). Wide enough for 18-place ETH amounts."""

    impl = Numeric(38, 18, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        value = Decimal(value)
        return format(value.normalize(WIDE), "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return Decimal(value).normalize(WIDE) if dialect.name == "sqlite" else Decimal(value)


# Prices that are compared in range queries (trigger prices): numeric on both databases. On
# SQLite that is a binary float, exact enough for cents below 10^13 and only ever used to pick
# candidates; every decision is re-made in Decimal by the loan itself.
PRICE = Numeric(20, 2, asdecimal=True)


class Base(DeclarativeBase):
    type_annotation_map = {Decimal: Money}


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # A second engine for single statements in autocommit (`statement`), SQLite only.
        self.autocommit: AsyncEngine | None = None
        if url.startswith("sqlite"):
            _ensure_sqlite_dir(url)
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, connect_args={"timeout": 30}
            )
            self.autocommit = create_async_engine(
                url, echo=echo, connect_args={"timeout": 30}, isolation_level="AUTOCOMMIT"
            )
            self.on_connect(_sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, echo=echo, pool_size=20, max_overflow=20)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        return (self.engine,) if self.autocommit is None else (self.engine, self.autocommit)

    def on_connect(self, listener: Any) -> None:
        """Run `listener(dbapi_connection, record)` on every new connection of every engine."""
        for engine in self.engines:
            event.listen(engine.sync_engine, "connect", listener)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits together or not at all."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one write statement that is atomic by itself (an upsert). On
        SQLite it runs in autocommit, so the database's single write lock is held only while
        the statement runs. In a transaction it is held from the statement until the commit
        comes back through a busy event loop, and every other writer, in this process or
        another, sleeps in SQLite's busy handler (1, 2, 5, 10 ms...): in a `loanflow stress`
        daily wave the read-model writes of 1,000 loans queued that way (a third of the
        wave). On PostgreSQL, which locks rows, a plain transaction."""
        if self.autocommit is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self.autocommit.connect() as conn:
            yield conn

    async def create_all(self) -> None:
        import loanflow.notice_schema  # noqa: F401  (registers the tables)
        import loanflow.schema  # noqa: F401

        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.autocommit is not None:
            await self.autocommit.dispose()


def dialect_name(target: AsyncSession | AsyncConnection) -> str:
    """'sqlite' or 'postgresql': the database behind a session or a connection."""
    if isinstance(target, AsyncConnection):
        return target.dialect.name
    return target.get_bind().dialect.name


def inserts_of_new_rows(table: Any, *keys: Any) -> dict[str, Any]:
    """INSERT ... ON CONFLICT (keys) DO NOTHING for each dialect, built once: a row whose key is
    taken is left as it is, and no error aborts the transaction it runs in (add RETURNING to
    learn whether it was new)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return {name: dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


class ValueTooLong(ValueError):
    """A string longer than its column. Raised before the database sees it (SQLite would
    store it anyway; PostgreSQL refuses with "value too long", which an activity would retry
    forever). Activities treat it as non-retryable: the same value never fits."""


def check_lengths(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse any new or changed row with a string longer than its column, naming both."""
    for row in [*session.new, *session.dirty]:
        table = getattr(row, "__table__", None)
        if table is not None:
            check_values(table, {column.key: getattr(row, column.key, None)
                                 for column in table.columns})


def check_values(table: Table, values: Mapping[str, Any]) -> None:
    """The same refusal for the values of a Core INSERT or UPDATE, which no flush sees."""
    for name, value in values.items():
        limit = getattr(table.c[name].type, "length", None) if name in table.c else None
        if limit and isinstance(value, str) and len(value) > limit:
            raise ValueTooLong(f"{table.name}.{name}: {len(value)} characters, at most {limit}")


event.listen(Session, "before_flush", check_lengths)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the CLI read while the worker writes; busy_timeout rides out short write locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
