"""Migrations on SQLite and PostgreSQL: a fresh database, one at the previous revision with data
in it, and one made by `create_all` before migrations existed all end at the latest schema,
which is exactly what the models describe."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select

import loanflow.notice_schema  # noqa: F401  (registers the tables)
import loanflow.schema  # noqa: F401
from loanflow.db import Base, Database
from loanflow.ledger import credit, debit
from loanflow.migrations import (
    BASELINE,
    MigrationError,
    alembic_config,
    current,
    head,
    sync_url,
    upgrade,
)
from loanflow.schema import LedgerEntry, Loan
from loanflow.store.ledger import post_entry
from loanflow.store.prices import latest_observation, store_observation
from tests.cli.support import Cli

AT = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def differences(url: str) -> list[Any]:
    """What Alembic's autogenerate would still change: nothing, if the schema is the models'."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


async def migrate(url: str, revision: str = "head") -> Any:
    return await asyncio.to_thread(upgrade, url, revision)


async def test_a_fresh_database_ends_at_the_latest_schema(db_url: str) -> None:
    result = await migrate(db_url)
    assert (result.before, result.after, result.adopted) == (None, head(), False)
    assert differences(db_url) == []
    again = await migrate(db_url)
    assert again.before == again.after == head()


def earlier_revisions() -> list[str]:
    """Every revision before the latest, oldest first."""
    from alembic.script import ScriptDirectory

    from loanflow.migrations import HERE

    revisions = [r.revision for r in ScriptDirectory(str(HERE)).walk_revisions()]
    return list(reversed(revisions))[:-1]


@pytest.mark.parametrize("previous", earlier_revisions())
async def test_from_an_earlier_revision_with_data(db_url: str, previous: str) -> None:
    await migrate(db_url, previous)
    assert current(db_url) == previous
    db = Database(db_url)
    try:
        await seed(db)
        await migrate(db_url)
        assert current(db_url) == head() and differences(db_url) == []
        await assert_seeded(db)
    finally:
        await db.dispose()


async def test_a_database_made_by_create_all_is_adopted(db_url: str) -> None:
    db = Database(db_url)
    try:
        await db.create_all()
        await seed(db)
        result = await migrate(db_url)
        assert (result.before, result.after, result.adopted) == (None, head(), True)
        assert differences(db_url) == []
        await assert_seeded(db)
    finally:
        await db.dispose()


async def seed(db: Database) -> None:
    """A loan, its ledger entry and a price, written by the application's own code."""
    async with db.transaction() as session:
        session.add(Loan(loan_id="M1", version=1, borrower_id="B-1", state="ACTIVE",
                         collateral_asset="ETH", collateral_amount=Decimal("1.123456789012345678"),
                         principal_usd=Decimal("1000.00"), debt_usd=Decimal("1000.01"),
                         ltv=Decimal("0.5"), cure_deadline=AT, updated_at=AT, application=None))
        await post_entry(session, key="M1:disburse", loan_id="M1", memo="disbursed", lines=[
            debit("loan:M1:receivable", "USD", Decimal("1000.00")),
            credit("cash", "USD", Decimal("1000.00")),
        ])
    await store_observation(db, "ETH", Decimal("2000.5"), AT)


async def assert_seeded(db: Database) -> None:
    async with db.sessions() as session:
        loan = await session.get(Loan, "M1")
        entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
    assert loan is not None
    assert loan.collateral_amount == Decimal("1.123456789012345678")  # exact, 18 places
    assert loan.cure_deadline == AT and entries == 1
    price = await latest_observation(db, "ETH")
    assert price is not None and price.price == Decimal("2000.5")


async def test_a_database_with_only_some_tables_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    engine = create_engine(url)
    Base.metadata.tables["loans"].create(engine)
    engine.dispose()
    with pytest.raises(MigrationError, match="has some loanflow tables but not audit_log"):
        await migrate(url)


async def test_downgrade_to_nothing_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'round.db'}"
    await migrate(url)
    await asyncio.to_thread(command.downgrade, alembic_config(url), "base")
    assert table_names(url) == {"alembic_version"}
    await migrate(url)
    assert differences(url) == []


async def test_the_db_commands(tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    cli = Cli(tmp_path, {"DATABASE_URL": fresh})
    assert (await cli.json("db", "current")) == {
        "database": fresh, "current": None, "head": head()}
    assert f"migrated from empty to {head()}" in await cli.ok("db", "upgrade")
    assert "nothing to do" in await cli.ok("db", "upgrade")
    assert (await cli.json("db", "current"))["current"] == head()

    made = tmp_path / "made.db"
    db = Database(f"sqlite+aiosqlite:///{made}")
    await db.create_all()
    await db.dispose()
    adopted = await cli.json("db", "upgrade", DATABASE_URL=f"sqlite:///{made}")
    assert adopted["adopted"] and adopted["after"] == head() and BASELINE == "0001"
