"""The notice relay (`loanflow.mail.relay`): notices recorded for it, as a loan's write records
them, go out over real SMTP (an aiosmtpd sink on loopback) once each, a loan's in order; an outage or one deferred recipient loses nothing and holds back only what it must.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail import outbox, relay
from loanflow.mail.delivery import NoticeDelivery
from loanflow.mail.message import NOTICE_KEY_HEADER
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.mail.relay import NoticeRelay
from loanflow.mail.relay_lease import RelayLease
from loanflow.mail.sink import SinkProbe
from loanflow.notice_schema import PENDING, SENDING, SENT

from .helpers import Sink, settings_for


def notice(loan: str, kind: str, email: str = "ada@example.com") -> Notice:
    borrower = SAMPLE_BORROWER.model_copy(update={"email": email})
    return Notice(key=f"{loan}:notice:{kind}", loan_id=loan, kind=kind, borrower=borrower,
                  data=sample_data(kind))


def delivery(db: Database, sink: Sink, tmp_path: Path, **kw: object) -> NoticeDelivery:
    return NoticeDelivery(db, settings_for(sink, tmp_path), **kw)  # type: ignore[arg-type]


async def record(d: NoticeDelivery, *notices: Notice) -> None:
    for n in notices:
        assert await d.record_for_relay(n)


def keys(sink: Sink) -> list[str]:
    return [m[NOTICE_KEY_HEADER] for m in sink.parsed()]


async def status(db: Database, key: str) -> str:
    row = await outbox.find(db, key)
    assert row is not None
    return row.status


async def test_recorded_notices_go_out_once_each_loans_in_order(db: Database, sink: Sink,
                                                                tmp_path: Path) -> None:
    d = delivery(db, sink, tmp_path)
    sent = [notice("A", "loan_disbursed"), notice("B", "loan_disbursed"), notice("A", "margin_call")]
    await record(d, *sent)
    assert not await d.record_for_relay(sent[0])  # a retried write records nothing twice
    assert [await status(db, n.key) for n in sent] == [PENDING] * 3

    assert await NoticeRelay(d).relay_due()
    assert sorted(keys(sink)) == sorted(n.key for n in sent)
    assert [k for k in keys(sink) if k.startswith("A:")] == [sent[0].key, sent[2].key]
    assert [await status(db, n.key) for n in sent] == [SENT] * 3
    assert await NoticeRelay(d).relay_due()  # nothing due: nothing sent again
    assert len(sink.messages()) == 3


async def test_a_deferred_recipient_holds_back_only_its_own_loan(db: Database, sink: Sink,
                                                                 tmp_path: Path) -> None:
    d = delivery(db, sink, tmp_path)
    busy = [notice("A", "loan_disbursed", "busy@example.com"), notice("A", "margin_call")]
    other = notice("B", "loan_disbursed")
    await record(d, *busy, other)

    assert await NoticeRelay(d).relay_due()  # one refusal is no outage
    assert keys(sink) == [other.key]
    # The loan's margin call waits behind its first notice: its notices stay in order.
    assert [await status(db, n.key) for n in busy] == [PENDING, PENDING]
    row = await outbox.find(db, busy[0].key)
    assert row is not None and row.last_error is not None and "451" in row.last_error
    # Claimed with its lane's rows, the margin call was given back untried: no attempt counted.
    later = await outbox.find(db, busy[1].key)
    assert later is not None and (later.attempts, later.claimed_at) == (0, None)


async def test_a_batch_of_held_loans_does_not_stop_the_rows_behind_it(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    """Two loans whose recipient defers fill a whole batch of the oldest rows: once they are
    held, the pass goes on to the rows after them (it used to fetch the same held batch again
    and again, never returning, until the holds ran out)."""
    d = delivery(db, sink, tmp_path)
    held = [notice(loan, "margin_call", "busy@example.com") for loan in "AB"]
    behind = notice("Z", "margin_call")
    await record(d, *held, behind)

    assert await asyncio.wait_for(NoticeRelay(d, batch=2).relay_due(), timeout=10)
    assert keys(sink) == [behind.key]
    assert [await status(db, n.key) for n in held] == [PENDING, PENDING]


async def test_an_outage_stops_the_pass_and_nothing_is_lost(db: Database, stopped_sink: Sink,
                                                            tmp_path: Path) -> None:
    d = delivery(db, stopped_sink, tmp_path)
    waiting = [notice(loan, "margin_call") for loan in "ABCDEFGHIJKLMNOP"]
    await record(d, *waiting)

    assert not await NoticeRelay(d).relay_due()  # the mail server is down: an outage
    tried = [n for n in waiting if (await outbox.find(db, n.key)).last_error]  # type: ignore[union-attr]
    # The pass stopped: each lane finished the row it was on, and tried no more.
    assert relay.OUTAGE_AFTER <= len(tried) < relay.OUTAGE_AFTER + relay.LANES
    assert {await status(db, n.key) for n in waiting} == {PENDING}

    await stopped_sink.start()
    try:
        assert await NoticeRelay(d).relay_due()
        assert sorted(keys(stopped_sink)) == sorted(n.key for n in waiting)
    finally:
        await stopped_sink.stop()


async def test_rows_a_killed_relay_held_are_sent_once(db: Database, sink: Sink,
                                                      tmp_path: Path) -> None:
    """A relay killed after its claim left two rows `sending`. The one it had not begun to send
    is taken again after one SMTP timeout (2 s here; had its holder lived, the claim's version
    would fence it out before the data). The one past the point of no return is left to its
    holder for the in-flight grace, then settled by the sink's probe: not in the sink, so
    sent, once. A fresh claim (a live attempt) is left alone."""
    now = datetime.now(timezone.utc)
    before_data, after_data = notice("A", "margin_call"), notice("B", "margin_call")

    def relay_at(seconds: float) -> NoticeRelay:
        return NoticeRelay(delivery(db, sink, tmp_path, in_flight_grace=timedelta(seconds=30),
                                    clock=lambda: now + timedelta(seconds=seconds),
                                    probe=SinkProbe(sink.directory)))

    d = relay_at(0).delivery
    await record(d, before_data, after_data)
    await outbox.change(db, before_data.key, 0, status=SENDING, attempts=1, claimed_at=now)
    await outbox.change(db, after_data.key, 0, status=SENDING, attempts=1, claimed_at=now,
                        data_started_at=now)

    assert await relay_at(1).relay_due()
    assert sink.messages() == []
    assert await relay_at(3).relay_due()
    assert keys(sink) == [before_data.key] and await status(db, before_data.key) == SENT
    assert await status(db, after_data.key) == SENDING  # its holder may still be sending
    assert await relay_at(31).relay_due()
    assert sorted(keys(sink)) == sorted([before_data.key, after_data.key])
    assert await status(db, after_data.key) == SENT


async def test_the_bell_sends_a_new_notice_at_once(db: Database, sink: Sink,
                                                   tmp_path: Path) -> None:
    d = delivery(db, sink, tmp_path)
    bell_only = NoticeRelay(d, poll=3600)
    running = asyncio.create_task(bell_only.run())
    try:
        await asyncio.sleep(0.2)  # the relay found nothing and waits for its bell
        await record(d, notice("A", "loan_disbursed"))
        relay.ring()
        for _ in range(100):
            if sink.messages():
                break
            await asyncio.sleep(0.05)
        assert keys(sink) == ["A:notice:loan_disbursed"]
    finally:
        bell_only.stop()
        await running


async def test_a_notice_without_contact_details_is_raised_not_recorded(
        db: Database, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No loan recorded its application: the write is not held up, operations are told."""
    unaddressed = Notice(key="Z:notice:loan_disbursed", loan_id="Z", kind="loan_disbursed",
                         borrower_id="B-1", data=sample_data("loan_disbursed"))
    with caplog.at_level(logging.ERROR, logger="loanflow.notify"):
        assert not await delivery(db, sink, tmp_path).record_for_relay(unaddressed)
    assert await outbox.find(db, unaddressed.key) is None
    assert "NOTICE NOT DELIVERED key=Z:notice:loan_disbursed" in caplog.text


# The lease tests' own advisory lock on PostgreSQL, which every test shares: a relay of another
# test's desk must not hold theirs.
TEST_KEY = 0x6C6F616E_74657374


async def test_one_relay_holds_the_lease_and_another_takes_it_over(db: Database) -> None:
    """Two workers' relays on one database: one lease; given back (its worker gone), the
    other relay takes it."""
    first, second = RelayLease(db, key=TEST_KEY), RelayLease(Database(db.url), key=TEST_KEY)
    try:
        assert await first.acquire() and await first.acquire()  # held: asked again, still held
        assert not await second.acquire() and not second.held
        await first.release()
        assert await second.acquire()
        assert not await first.acquire()
    finally:
        await first.release()
        await second.release()
        await second.db.dispose()


async def test_of_two_relays_only_the_lease_holder_sends(db: Database, sink: Sink,
                                                         tmp_path: Path) -> None:
    d = delivery(db, sink, tmp_path)
    holder = RelayLease(Database(db.url), key=TEST_KEY)
    assert await holder.acquire()  # another worker's relay holds the lease
    standing_by = NoticeRelay(d, poll=0.05, lease=RelayLease(db, key=TEST_KEY))
    running = asyncio.create_task(standing_by.run())
    try:
        await record(d, notice("A", "loan_disbursed"))
        relay.ring()
        await asyncio.sleep(0.5)
        assert sink.messages() == [] and not standing_by.lease.held
    finally:
        standing_by.stop()
        await running
        await holder.release()
        await holder.db.dispose()
