"""A new notice is recorded already claimed (issue 12): its first attempt inserts the outbox row
as `sending` and sends with that hold, without reading the row or claiming it apart. These
tests show that the short way still sends each notice once: after a crash between the insert
and the data, with a retry racing the first attempt, with a duplicate of a recorded notice.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from bench.notice import counting
from loanflow.db import Database
from loanflow.effects import Notice, NoticeReceipt
from loanflow.mail import delivery, outbox
from loanflow.mail.delivery import DEFERRED
from loanflow.notice_schema import SENDING, SENT

from .helpers import Sink, settings_for
from .test_notice_delivery import margin_call


async def attempt(acts: NotifyActivities, notice: Notice, number: int = 1) -> NoticeReceipt:
    """One attempt of the notice activity, as Temporal numbers it (1 = the first)."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number)
    return await env.run(acts.record_notice, notice)


async def test_a_new_notice_is_recorded_and_sent_in_four_statements(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    """Insert notice + outbox row (one commit), the commit before DATA, the sent mark. (A
    notice with only the borrower's id adds one read, of the contact.) It was 8 statements in
    6 commits: a read before the insert, a read and a claim before sending."""
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    await attempt(acts, margin_call(seq=1))  # warm: connections, the dialect's first queries
    with counting(db) as counts:
        receipt = await attempt(acts, margin_call(seq=2))
    assert (receipt.created, receipt.status) == (True, SENT)
    assert counts == {"statements": 4, "commits": 3}
    row = await outbox.find(db, margin_call(seq=2).key)
    assert row is not None and (row.status, row.attempts) == (SENT, 1)
    assert row.data_started_at is not None and row.claimed_at is None
    assert len(sink.messages()) == 2


async def test_a_retry_after_a_crash_between_the_claimed_insert_and_the_data_sends_once(
    db: Database, sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after recording the notice claimed, before the point of no return:
    nothing went out, so the retry claims the row from the version it reads and sends."""
    acts = NotifyActivities(db, settings_for(sink, tmp_path))

    async def crash(*args: object, **kwargs: object) -> str:
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(delivery, "send", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            await attempt(acts, margin_call())
    row = await outbox.find(db, margin_call().key)
    assert row is not None and (row.status, row.attempts, row.version) == (SENDING, 1, 1)
    assert row.data_started_at is None and sink.messages() == []

    receipt = await attempt(acts, margin_call(), number=2)
    assert (receipt.created, receipt.status) == (False, SENT)
    again = await attempt(acts, margin_call(), number=3)  # and a late retry sends nothing
    assert again.status == SENT
    [stored] = sink.messages()
    assert stored.notice_key == margin_call().key
    row = await outbox.find(db, margin_call().key)
    assert row is not None and (row.status, row.attempts) == (SENT, 2)


@pytest.mark.parametrize("second", [1, 2], ids=["duplicate-first-attempt", "retry"])
async def test_an_attempt_racing_a_fresh_claim_sends_once(
    db: Database, sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: int
) -> None:
    """The first attempt recorded the notice claimed and is slow to reach its data; a second
    attempt (a retry, or a duplicate first attempt that loses the insert) overtakes it and
    sends. The first then finds its hold gone at the point of no return and sends nothing."""
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    connected, go_on = asyncio.Event(), asyncio.Event()
    real_send = delivery.send

    async def slow_first(*args: Any, **kwargs: Any) -> str:
        if not connected.is_set():  # only the first attempt waits
            connected.set()
            await go_on.wait()
        return await real_send(*args, **kwargs)

    monkeypatch.setattr(delivery, "send", slow_first)
    first = asyncio.create_task(attempt(acts, margin_call()))
    await connected.wait()
    overtaking = await attempt(acts, margin_call(), number=second)
    assert (overtaking.created, overtaking.status) == (False, SENT)
    go_on.set()
    with pytest.raises(ApplicationError) as failure:
        await first
    assert failure.value.type == DEFERRED and "another attempt took over" in failure.value.message
    assert len(sink.messages()) == 1
    row = await outbox.find(db, margin_call().key)
    assert row is not None and (row.status, row.attempts) == (SENT, 2)
    # Temporal retries the overtaken attempt: it finds the notice sent.
    assert (await attempt(acts, margin_call(), number=2)).status == SENT
    assert len(sink.messages()) == 1


async def test_a_duplicate_first_attempt_of_a_sent_notice_sends_nothing(
    db: Database, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A first attempt whose key is recorded already (the same notice scheduled again) loses
    the insert and goes the long way: the row says sent, nothing goes out, nothing is
    recorded twice; a key reused by another kind of notice keeps the first."""
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    assert (await attempt(acts, margin_call())).created
    receipt = await attempt(acts, margin_call())
    assert (receipt.created, receipt.status) == (False, SENT)
    other = margin_call().model_copy(update={"kind": "margin_warning"})
    assert (await attempt(acts, other)).created is False
    assert "reused for L7/margin_warning" in caplog.text
    assert len(sink.messages()) == 1
    assert len(await outbox.notices_of(db, "L7")) == 1


async def test_a_notice_that_cannot_be_rendered_is_raised_once(
    db: Database, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    broken = margin_call().model_copy(update={"kind": "bonus_offer"})
    for number in (1, 1, 2):  # the first attempt, a duplicate, a retry
        assert (await attempt(acts, broken, number)).status == "failed"
    assert caplog.text.count("NOTICE NOT DELIVERED") == 1
    row = await outbox.find(db, broken.key)
    assert row is not None and (row.attempts, row.claimed_at) == (0, None)
    assert sink.messages() == []
