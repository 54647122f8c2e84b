"""A loan's read-model write records the notices it carries (`StoreActivities.record_notices`):
addressed from the application the same write records, once by key however often the write is
retried; on PostgreSQL in the write's own transaction, so its rows and its notices land
together or not at all. On SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.store import StoreActivities
from loanflow.db import Database, ValueTooLong
from loanflow.mail import outbox
from loanflow.mail.delivery import NoticeDelivery
from loanflow.notice_schema import PENDING, OutboxRow
from loanflow.schema import Loan

from .helpers import Sink, settings_for
from .test_notice_borrower_id import GRACE, by_id, opened


def store(db: Database, sink: Sink, tmp_path: Path) -> StoreActivities:
    return StoreActivities(db, NoticeDelivery(db, settings_for(sink, tmp_path)))


async def rows(db: Database, model: type) -> int:
    async with db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_first_write_records_its_notice_once_addressed_from_its_own_application(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    acts = store(db, sink, tmp_path)
    record = opened("L1", GRACE).model_copy(update={"notices": [by_id("L1", GRACE.id)]})
    await ActivityEnvironment().run(acts.record_loan, record)
    await ActivityEnvironment().run(acts.record_loan, record)  # a retried write

    assert await rows(db, OutboxRow) == 1
    row = await outbox.find(db, by_id("L1", GRACE.id).key)
    assert row is not None and row.status == PENDING
    assert (row.to_name, row.to_address) == (GRACE.name, GRACE.email)


async def test_a_write_whose_notice_cannot_be_recorded_is_retried_whole(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    """A notice the outbox refuses (here a key longer than its column) fails the write. On
    PostgreSQL nothing of it landed: the loan's rows wait with its notice for the retry. On
    SQLite the rows landed (each is a statement of its own there) and the retry writes them
    again, as it would after a worker died between them."""
    acts = store(db, sink, tmp_path)
    bad = by_id("L1", GRACE.id).model_copy(update={"key": "L1:" + "x" * 300})
    with pytest.raises(ValueTooLong, match="key"):
        await ActivityEnvironment().run(
            acts.record_loan, opened("L1", GRACE).model_copy(update={"notices": [bad]}))

    assert await rows(db, OutboxRow) == 0
    assert await rows(db, Loan) == (1 if db.is_sqlite else 0)
