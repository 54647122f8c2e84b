"""Issue 10, item 7: a value too long for its column is refused for good, not retried forever;
the notice activity heartbeats so a dead worker's attempt is retried within seconds; the worker
never logs the database password."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from activities.support import heartbeating
from bench.histories import every_run
from loanflow.db import Database, ValueTooLong
from loanflow.effects import Notice
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.notice_schema import NoticeRow, OutboxRow
from loanflow.worker import shown_url
from tests.notify.helpers import Sink, settings_for
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan
from workflows import base
from workflows.calls import EFFECT_RETRY, NOTICE_HEARTBEAT


async def test_a_name_too_long_for_its_column_is_refused_for_good(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    # Past the entry bounds (Borrower.name is at most 200): what an older client could send.
    borrower = SAMPLE_BORROWER.model_construct(**(SAMPLE_BORROWER.model_dump() | {"name": "n" * 300}))
    notice = Notice.model_construct(key="L9:notice:margin_call:1", loan_id="L9", kind="margin_call",
                                    borrower=borrower, data=sample_data("margin_call"))
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    with pytest.raises(ValueTooLong, match="to_name"):
        await ActivityEnvironment().run(acts.record_notice, notice)
    async with db.transaction() as s:
        for table in (NoticeRow, OutboxRow):
            assert await s.scalar(select(func.count()).select_from(table)) == 0
    # ...and Temporal does not retry it: the same value never fits.
    assert "ValueTooLong" in EFFECT_RETRY.non_retryable_error_types


async def test_heartbeating_beats_while_the_body_runs() -> None:
    beats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    async def slow() -> None:
        async with heartbeating(every=0.05):
            await asyncio.sleep(0.3)

    await env.run(slow)
    assert len(beats) >= 3


async def test_notices_are_scheduled_with_a_short_heartbeat_timeout(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loan started before NOTICES_WITH_WRITES still sends each notice as an activity (a
    loan started since records them with its writes and schedules none)."""
    monkeypatch.setattr(base, "LEVELS", base.LEVELS[base.LEVELS.index(base.CLAIM_BEFORE_REJECTING):])
    handle = await active_loan(desk, "HB1")
    await desk.settle(handle)
    notices = [e.activity_task_scheduled_event_attributes
               for e in await every_run(desk.client, handle.id)
               if e.HasField("activity_task_scheduled_event_attributes")
               and e.activity_task_scheduled_event_attributes.activity_type.name == "record_notice"]
    assert notices
    for attrs in notices:
        assert attrs.heartbeat_timeout.ToTimedelta() == NOTICE_HEARTBEAT <= timedelta(seconds=10)


def test_the_worker_log_masks_the_database_password() -> None:
    shown = shown_url("postgresql+psycopg://loanflow:s3cret-pw@db.internal:5432/loanflow")
    assert "s3cret-pw" not in shown and "***" in shown and "db.internal" in shown
