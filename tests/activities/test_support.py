"""`effect_once`, the shape custody, payouts and the exchange share: look the effect up by its
key, call the outside service only if it is not recorded, record the answer once. Exercised on
a real table (one deposit address per loan) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.support import effect_once, refuse
from loanflow.db import Database
from loanflow.schema import CustodyAccount


class Service:
    """An outside service idempotent by the loan id; counts its calls. With `gate`, each call
    waits until the gate opens (so that two calls overlap)."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.gate = gate

    async def open(self, loan_id: str) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return f"addr-{loan_id}"


async def open_address(db: Database, service: Service, loan_id: str,
                       check: bool = False) -> tuple[str, bool]:
    """(address, created) through effect_once."""

    async def lookup(session: AsyncSession) -> tuple[str, bool] | None:
        row = await session.get(CustodyAccount, loan_id)
        return None if row is None else (row.address, False)

    async def write(session: AsyncSession, address: str) -> tuple[str, bool]:
        session.add(CustodyAccount(loan_id=loan_id, asset="BTC", address=address))
        await session.flush()
        return address, True

    async def refusing(_: AsyncSession) -> None:
        raise refuse(f"loan {loan_id} may not have an address", "Refused")

    async def outside() -> str:
        return await service.open(loan_id)

    return await effect_once(db, lookup, outside, write, refusing if check else None)


async def test_the_service_is_called_once_and_the_record_answers_after(db: Database) -> None:
    service = Service()
    assert await open_address(db, service, "L1") == ("addr-L1", True)
    assert await open_address(db, service, "L1") == ("addr-L1", False)
    assert service.calls == 1


async def test_a_duplicate_racing_the_first_gets_the_winners_record(db: Database) -> None:
    gate = asyncio.Event()
    service = Service(gate)
    first = asyncio.create_task(open_address(db, service, "L2"))
    second = asyncio.create_task(open_address(db, service, "L2"))
    while service.calls < 2:  # both have looked, found nothing, and called the service
        await asyncio.sleep(0)
    gate.set()
    results = sorted(await asyncio.gather(first, second))
    assert results == [("addr-L2", False), ("addr-L2", True)]


async def test_a_refused_check_calls_nothing_unless_the_effect_is_recorded(db: Database) -> None:
    service = Service()
    with pytest.raises(ApplicationError, match="may not have an address"):
        await open_address(db, service, "L3", check=True)
    assert service.calls == 0
    await open_address(db, service, "L3")
    # Recorded already: the lookup answers even though the check would refuse now.
    assert await open_address(db, service, "L3", check=True) == ("addr-L3", False)
    assert service.calls == 1
