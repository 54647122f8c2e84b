"""Delivering notices over real SMTP (an aiosmtpd server on loopback), exactly once, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail import outbox
from loanflow.mail.delivery import DEFERRED
from loanflow.mail.message import NOTICE_KEY_HEADER, message_id_for
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.mail.sink import SinkProbe, show_message
from loanflow.money import fmt_units, fmt_usd
from loanflow.notice_schema import FAILED, PENDING, SENDING, SENT, UNCONFIRMED, NoticeRow

from .helpers import Sink, settings_for


def margin_call(email: str = "ada@example.com", seq: int = 1) -> Notice:
    borrower = SAMPLE_BORROWER.model_copy(update={"email": email})
    return Notice(key=f"L7:notice:margin_call:{seq}", loan_id="L7", kind="margin_call",
                  borrower=borrower, data=sample_data("margin_call"))


def activities(db: Database, sink: Sink, tmp_path: Path, **kw: object) -> NotifyActivities:
    return NotifyActivities(db, settings_for(sink, tmp_path), **kw)  # type: ignore[arg-type]


async def run(acts: NotifyActivities, notice: Notice):  # type: ignore[no-untyped-def]
    return await ActivityEnvironment().run(acts.record_notice, notice)


async def test_a_notice_arrives_as_a_mime_message(db: Database, sink: Sink,
                                                  tmp_path: Path) -> None:
    notice = margin_call()
    receipt = await run(activities(db, sink, tmp_path), notice)
    assert (receipt.key, receipt.created, receipt.status) == (notice.key, True, SENT)

    [msg] = sink.parsed()
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["From"].addresses[0].display_name == "Northwind Credit"
    assert msg["Message-ID"] == message_id_for(notice.key, "notices@northwind.example")
    assert msg[NOTICE_KEY_HEADER] == notice.key
    assert msg["Subject"].startswith("MARGIN CALL on loan L7")
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for figure in (fmt_units("BTC", Decimal(notice.data["cure_top_up"])),
                   fmt_usd(Decimal(notice.data["cure_repay_usd"]))):
        assert figure in text and figure in html
    assert "Northwind Credit Ltd., 1 Harbour St." in text

    row = await outbox.find(db, notice.key)
    assert row is not None and row.status == SENT and row.attempts == 1
    assert row.smtp_response is not None and row.smtp_response.startswith("250 2.0.0 OK")
    assert row.sent_at is not None and row.data_started_at is not None
    async with db.transaction() as session:
        recorded = await session.get(NoticeRow, notice.key)
    assert recorded is not None and recorded.data == notice.data
    assert "MARGIN CALL" in show_message(sink.directory, "1")


async def test_the_same_notice_twice_sends_one_message(db: Database, sink: Sink,
                                                       tmp_path: Path) -> None:
    acts = activities(db, sink, tmp_path)
    first = await run(acts, margin_call())
    again = await run(acts, margin_call())
    assert (first.created, first.status) == (True, SENT)
    assert (again.created, again.status) == (False, SENT)
    assert len(sink.messages()) == 1


async def test_smtp_outage_during_a_margin_call_then_exactly_one_message(
    db: Database, stopped_sink: Sink, tmp_path: Path
) -> None:
    acts = activities(db, stopped_sink, tmp_path)
    for _ in range(2):  # the server is down: each attempt asks Temporal to retry later
        with pytest.raises(ApplicationError) as failure:
            await run(acts, margin_call())
        assert failure.value.type == DEFERRED and not failure.value.non_retryable
        assert "SMTP server unavailable" in failure.value.message
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == PENDING and row.attempts == 2
    assert row.data_started_at is None and "unavailable" in (row.last_error or "")

    await stopped_sink.start()  # the server is back
    try:
        receipt = await run(acts, margin_call())
        assert (receipt.created, receipt.status) == (False, SENT)
        await run(acts, margin_call())  # and a late duplicate retry changes nothing
    finally:
        await stopped_sink.stop()
    [stored] = stopped_sink.messages()
    assert stored.notice_key == margin_call().key
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == SENT and row.attempts == 3 and row.last_error is None


async def test_a_retry_after_the_server_accepted_does_not_send_again(
    db: Database, sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies between the server's 250 and the `sent` mark: the row says `sending`
    past the point of no return. The retry asks the sink and sends nothing."""
    await _crash_after_acceptance(db, sink, tmp_path, monkeypatch)
    acts = activities(db, sink, tmp_path, probe=SinkProbe(sink.directory),
                      in_flight_grace=timedelta(0))
    receipt = await run(acts, margin_call())
    assert receipt.status == SENT
    assert len(sink.messages()) == 1
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == SENT and "server holds" in (row.smtp_response or "")


async def test_without_a_probe_an_unknown_outcome_is_raised_not_resent(
    db: Database, sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _crash_after_acceptance(db, sink, tmp_path, monkeypatch)
    # While the crashed attempt might still be alive, a retry waits instead of deciding.
    with pytest.raises(ApplicationError) as failure:
        await run(activities(db, sink, tmp_path), margin_call())
    assert failure.value.type == DEFERRED and failure.value.next_retry_delay is not None
    # After the grace period: unconfirmed, raised to operations, the loan goes on.
    caplog.set_level(logging.ERROR, logger="loanflow.notify")
    receipt = await run(activities(db, sink, tmp_path, in_flight_grace=timedelta(0)),
                        margin_call())
    assert receipt.status == UNCONFIRMED
    assert len(sink.messages()) == 1
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == UNCONFIRMED and row.message_id in (row.last_error or "")
    assert "NOTICE NOT DELIVERED key=L7:notice:margin_call:1" in caplog.text


async def _crash_after_acceptance(db: Database, sink: Sink, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "mark_sent", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            await run(activities(db, sink, tmp_path), margin_call())
    assert len(sink.messages()) == 1
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == SENDING and row.data_started_at is not None


async def test_a_retry_after_a_crash_before_the_data_sends_once(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    """A worker died while connecting (claimed, point of no return not reached): nothing went
    out, so the retry sends at once, without waiting."""
    acts = activities(db, sink, tmp_path)
    assert await acts.record(margin_call())
    row = await outbox.find(db, margin_call().key)
    assert row is not None
    assert await outbox.change(db, row.notice_key, row.version, status=SENDING,
                               claimed_at=outbox.utcnow(), attempts=1) is not None
    receipt = await run(acts, margin_call())
    assert receipt.status == SENT and len(sink.messages()) == 1


async def test_an_overtaken_attempt_hangs_up_before_the_data(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    """Two attempts of one notice at once: the one whose claim was taken over sends nothing."""
    acts = activities(db, sink, tmp_path)
    await acts.record(margin_call())
    row = await outbox.find(db, margin_call().key)
    assert row is not None
    slow = await outbox.change(db, row.notice_key, row.version, status=SENDING,
                               claimed_at=outbox.utcnow())
    assert slow is not None
    assert (await run(acts, margin_call())).status == SENT  # the retry overtakes it

    from loanflow.mail.delivery import _Hold  # the slow attempt now reaches its point of no return
    row = await outbox.find(db, margin_call().key)
    assert row is not None
    with pytest.raises(ApplicationError, match="another attempt took over"):
        await acts._send(row, _Hold(row.notice_key, slow))
    assert len(sink.messages()) == 1


async def test_a_rejected_address_is_recorded_failed_and_the_loan_goes_on(
    db: Database, sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="loanflow.notify")
    acts = activities(db, sink, tmp_path)
    notice = margin_call(email="gone@example.com")
    receipt = await run(acts, notice)
    assert (receipt.created, receipt.status) == (True, FAILED)
    assert (await run(acts, notice)).status == FAILED  # a retry does not try again
    assert sink.messages() == []
    row = await outbox.find(db, notice.key)
    assert row is not None and row.status == FAILED and row.attempts == 1
    assert "550 5.1.1" in (row.last_error or "")
    assert "NOTICE NOT DELIVERED key=L7:notice:margin_call:1 loan=L7 to=gone@example.com" \
        in caplog.text
    # Another borrower's notices are not affected.
    assert (await run(acts, margin_call(seq=2))).status == SENT


async def test_a_4xx_reply_is_retried_later(db: Database, sink: Sink, tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as failure:
        await run(activities(db, sink, tmp_path), margin_call(email="busy@example.com"))
    assert failure.value.type == DEFERRED and "451" in failure.value.message
    row = await outbox.find(db, margin_call().key)
    assert row is not None and row.status == PENDING


async def test_an_invalid_address_or_template_fails_without_sending(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    acts = activities(db, sink, tmp_path)
    bad_address = await run(acts, margin_call(email="ada at example.com"))
    assert bad_address.status == FAILED
    no_template = margin_call().model_copy(update={"key": "L7:notice:x", "kind": "bonus_offer"})
    assert (await run(acts, no_template)).status == FAILED
    row = await outbox.find(db, "L7:notice:x")
    assert row is not None and "no template for notice kind 'bonus_offer'" in (row.last_error or "")
    assert sink.messages() == []
    failed = await outbox.list_outbox(db, status=FAILED, loan_id="L7")
    assert {r.notice_key for r in failed} == {"L7:notice:margin_call:1", "L7:notice:x"}
    assert len(await outbox.notices_of(db, "L7")) == 2


async def test_operations_can_resend_a_failed_notice_to_a_corrected_address(
    db: Database, sink: Sink, tmp_path: Path
) -> None:
    acts = activities(db, sink, tmp_path)
    notice = margin_call(email="gone@example.com")
    assert (await run(acts, notice)).status == FAILED
    assert await acts.resend(notice.key, to_address="ada.new@example.com") == SENT
    [stored] = sink.messages()
    assert stored.rcpt_to == ("ada.new@example.com",) and stored.notice_key == notice.key
    assert await acts.resend(notice.key) == SENT  # already sent: nothing more goes out
    assert len(sink.messages()) == 1
    recorded = await outbox.load_notice(db, notice.key)
    assert recorded is not None and recorded.borrower.timezone == "Asia/Tokyo"
