"""Fixtures for the activity tests: an activity context, the activities wired to the real test
database with fakes that answer at once and never fail, and helpers to read the outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.custody import CustodyActivities, FakeCustodian
from activities.support import FakeFaults
from loanflow.db import Database
from loanflow.effects import DepositAddressRequest, DepositRecord, TransferReceipt
from loanflow.store.ledger import account_balances, check_book


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


@pytest.fixture
def failing() -> FakeFaults:
    """Faults of a service that is down: every call fails (before doing anything)."""
    return FakeFaults(failure_rate=Decimal(1))


@pytest.fixture
def custody(db: Database) -> CustodyActivities:
    return CustodyActivities(db, FakeCustodian())


@pytest.fixture
def count(db: Database) -> Callable[..., Awaitable[int]]:
    """`await count(Model, Model.col == x, ...)`: how many rows match."""

    async def _count(model: Any, *where: Any) -> int:
        async with db.transaction() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*where))

    return _count


@pytest.fixture
def balances(db: Database) -> Callable[..., Awaitable[dict[tuple[str, str], Decimal]]]:
    """`await balances(prefix=None)`: ledger balances by (account, currency), zeros dropped."""

    async def _balances(prefix: str | None = None) -> dict[tuple[str, str], Decimal]:
        async with db.transaction() as session:
            found = await account_balances(session, prefix=prefix)
        return {k: v for k, v in found.items() if v != 0}

    return _balances


@pytest.fixture
def book_is_balanced(db: Database) -> Callable[[], Awaitable[bool]]:
    """`assert await book_is_balanced()`: every entry balances in every currency."""

    async def _check() -> bool:
        async with db.transaction() as session:
            problems = await check_book(session)
        assert problems == []
        return True

    return _check


@pytest.fixture
def fund(
    env: ActivityEnvironment, custody: CustodyActivities
) -> Callable[..., Awaitable[TransferReceipt]]:
    """`await fund("L1", "BTC", Decimal("2"))`: open the loan's deposit address and record a
    deposit of that much collateral."""

    async def _fund(
        loan_id: str, asset: str, amount: Decimal, tx_id: str = "tx-fund"
    ) -> TransferReceipt:
        await env.run(
            custody.open_deposit_address, DepositAddressRequest(loan_id=loan_id, asset=asset)
        )
        return await env.run(
            custody.record_deposit,
            DepositRecord(
                key=f"{loan_id}:deposit:{tx_id}",
                loan_id=loan_id,
                asset=asset,
                amount=amount,
                tx_id=tx_id,
                kind="deposit",
            ),
        )

    return _fund
