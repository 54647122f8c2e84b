"""A loan's daily look in one local activity (`refresh_loan`): the snapshot is published with
its LTV at the newest stored price, which is returned to the loan; the same read rules as
`latest_price`; the write rules of `record_loan` (newer versions win, audit entries once)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities.store import StoreActivities
from loanflow.effects import LoanRecord, RefreshRequest
from loanflow.schema import AuditRecord
from loanflow.store.prices import store_observation
from bench.notice import counting
from tests.activities.test_store import T0, audit, snapshot, stored

D = Decimal


def look(version: int, *, asset: str = "BTC", now=T0, entries=()) -> RefreshRequest:
    return RefreshRequest(asset=asset, now=now,
                          record=LoanRecord(snapshot=snapshot(version), audit=list(entries)))


async def test_the_snapshot_carries_the_ltv_at_the_price_read(db, env) -> None:
    await env.run(StoreActivities(db).record_loan, LoanRecord(snapshot=snapshot(1)))
    await store_observation(db, "BTC", D("40000"), T0 - timedelta(minutes=3))
    refreshed = await env.run(StoreActivities(db).refresh_loan, look(2))
    assert refreshed.observation is not None and refreshed.observation.price == D("40000")
    row = await stored(db)
    # Debt 50,012.35 against 2.5 BTC at 40,000 (worth 100,000), worked by hand.
    assert (row.version, row.ltv) == (2, D("0.5001235"))
    assert row.application is not None  # the first snapshot's application is kept


async def test_without_a_stored_price_the_snapshot_goes_as_sent(db, env) -> None:
    refreshed = await env.run(StoreActivities(db).refresh_loan, look(1))
    assert refreshed.observation is None
    row = await stored(db)
    assert (row.version, row.ltv) == (1, D("0.4975"))


async def test_an_observation_from_the_loans_future_is_not_read(db, env) -> None:
    await store_observation(db, "BTC", D("40000"), T0 - timedelta(hours=1))
    await store_observation(db, "BTC", D("10000"), T0 + timedelta(hours=1))
    refreshed = await env.run(StoreActivities(db).refresh_loan, look(1))
    assert refreshed.observation is not None and refreshed.observation.price == D("40000")


async def test_an_older_look_never_overwrites_a_newer_snapshot(db, env) -> None:
    await store_observation(db, "BTC", D("40000"), T0)
    await env.run(StoreActivities(db).record_loan,
                  LoanRecord(snapshot=snapshot(3, state="MARGIN_CALL")))
    await env.run(StoreActivities(db).refresh_loan, look(2))
    row = await stored(db)
    assert (row.version, row.state) == (3, "MARGIN_CALL")


async def test_audit_entries_are_written_once_with_the_look(db, env) -> None:
    request = look(1, entries=[audit("L1:audit:1"), audit("L1:audit:2", kind="ltv_warning")])
    await env.run(StoreActivities(db).refresh_loan, request)
    await env.run(StoreActivities(db).refresh_loan, request)  # a retried task
    async with db.transaction() as session:
        keys = (await session.execute(select(AuditRecord.key).order_by(AuditRecord.key))).all()
    assert [k for (k,) in keys] == ["L1:audit:1", "L1:audit:2"]


async def test_an_unknown_asset_is_refused_and_nothing_is_written(db, env) -> None:
    with pytest.raises(ApplicationError) as refused:
        await env.run(StoreActivities(db).refresh_loan, look(1, asset="DOGE"))
    assert refused.value.non_retryable and "DOGE" in str(refused.value)
    assert await stored(db) is None


async def test_on_postgresql_a_look_is_one_transaction(db, env) -> None:
    """The read and the write on one connection, one commit (two before: the read had a
    transaction of its own). SQLite keeps them apart (its read transaction cannot turn into a
    write while another writer commits) and writes each statement in autocommit."""
    acts = StoreActivities(db)
    await store_observation(db, "BTC", D("40000"), T0 - timedelta(minutes=3))
    await env.run(acts.refresh_loan, look(1))  # warm: the dialect's first queries
    with counting(db) as counts:
        await env.run(acts.refresh_loan, look(2, entries=[audit("L1:look:2")]))
    # The newest observation, the snapshot, the audit entry.
    assert counts == {"statements": 3, "commits": 3 if db.is_sqlite else 1}
    assert (await stored(db)).ltv == D("50012.35") / D("100000")
