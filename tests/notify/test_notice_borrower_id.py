"""Notices carry the borrower's id only; the notice activity addresses them from the contact
details of the loan's own application, recorded when the loan opened. Notices of loans in flight from before, with the
borrower inline, are still delivered."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from activities.store import StoreActivities
from loanflow.db import Database
from loanflow.effects import LoanRecord, LoanSnapshot, Notice
from loanflow.mail import outbox
from loanflow.mail.delivery import DEFERRED
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.models import Borrower
from loanflow.notice_schema import SENT
from loanflow.store.borrowers import find_borrower

from .helpers import Sink, settings_for

AT = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
GRACE = Borrower(id="B-7", name="Grace Hopper", email="grace@example.com", country="US",
                 timezone="America/New_York")


def opened(loan_id: str, borrower: Borrower, version: int = 1) -> LoanRecord:
    """The first read-model write of a loan: it carries the application."""
    application = {"loan_id": loan_id, "borrower": borrower.model_dump(mode="json")}
    return LoanRecord(snapshot=LoanSnapshot(
        loan_id=loan_id, version=version, borrower_id=borrower.id, state="KYC_REVIEW",
        collateral_asset="ETH", collateral_amount=20, principal_usd=20000, debt_usd=0, ltv=None,
        cure_deadline=None, warning_price=None, margin_call_price=None, liquidation_price=None,
        cure_price=None, updated_at=AT, application=application))


def by_id(loan_id: str, borrower_id: str, seq: int = 1) -> Notice:
    return Notice(key=f"{loan_id}:notice:margin_call:{seq}", loan_id=loan_id,
                  kind="margin_call", borrower_id=borrower_id, data=sample_data("margin_call"))


async def send(db: Database, sink: Sink, tmp_path: Path, notice: Notice):  # type: ignore[no-untyped-def]
    acts = NotifyActivities(db, settings_for(sink, tmp_path))
    return await ActivityEnvironment().run(acts.record_notice, notice)


async def test_a_notice_by_borrower_id_goes_to_the_recorded_address(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    store = StoreActivities(db)
    await ActivityEnvironment().run(store.record_loan, opened("L1", GRACE))
    # Written again (a retried read-model write): the same one row.
    await ActivityEnvironment().run(store.record_loan, opened("L1", GRACE))
    assert await find_borrower(db, "B-7") == GRACE

    notice = by_id("L1", "B-7")
    assert notice.borrower is None and "grace" not in notice.model_dump_json().lower()
    receipt = await send(db, sink, tmp_path, notice)
    assert receipt.status == SENT
    [msg] = sink.parsed()
    assert msg["To"].addresses[0].addr_spec == "grace@example.com"
    assert msg["To"].addresses[0].display_name == "Grace Hopper"
    # Operations can still render it again (resend): the recorded notice names the borrower.
    recorded = await outbox.load_notice(db, notice.key)
    assert recorded is not None and recorded.borrower == GRACE


async def test_another_application_under_the_borrower_id_does_not_redirect_the_loan(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    # A second application names Grace's borrower id with someone else's address (a typo, or
    # anyone with the stock CLI); it may even be rejected later. Grace's loan still writes to
    # Grace, and the other loan's notices go to whoever applied for it.
    store = StoreActivities(db)
    await ActivityEnvironment().run(store.record_loan, opened("L1", GRACE))
    other = GRACE.model_copy(update={"name": "Mallory", "email": "mallory@example.net"})
    await ActivityEnvironment().run(store.record_loan, opened("L2", other))
    await send(db, sink, tmp_path, by_id("L1", "B-7"))
    await send(db, sink, tmp_path, by_id("L2", "B-7"))
    to = {msg["Message-ID"]: msg["To"].addresses[0].addr_spec for msg in sink.parsed()}
    row1 = await outbox.find(db, "L1:notice:margin_call:1")
    row2 = await outbox.find(db, "L2:notice:margin_call:1")
    assert row1 is not None and row2 is not None
    assert to[row1.message_id] == "grace@example.com"
    assert to[row2.message_id] == "mallory@example.net"


async def test_a_loan_recorded_without_its_application_is_addressed_by_borrower_id(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    store = StoreActivities(db)
    await ActivityEnvironment().run(store.record_loan, opened("L1", GRACE))
    bare = opened("L5", GRACE, version=1)
    bare.snapshot.application = None
    await ActivityEnvironment().run(store.record_loan, bare)
    assert (await send(db, sink, tmp_path, by_id("L5", "B-7"))).status == SENT
    [msg] = sink.parsed()
    assert msg["To"].addresses[0].addr_spec == "grace@example.com"


async def test_a_notice_for_another_borrower_than_the_loan_is_held(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    # A loan id used again for another borrower (the stock CLI, after the first loan closed):
    # the record is the first loan's, so its address is not the new borrower's.
    await ActivityEnvironment().run(StoreActivities(db).record_loan, opened("L6", GRACE))
    with pytest.raises(ApplicationError) as raised:
        await send(db, sink, tmp_path, by_id("L6", "B-8"))
    assert raised.value.type == DEFERRED and not raised.value.non_retryable
    assert "B-7" in raised.value.message and "B-8" in raised.value.message
    assert "grace" not in raised.value.message.lower()
    assert await outbox.find(db, "L6:notice:margin_call:1") is None and sink.parsed() == []


async def test_an_old_notice_with_the_borrower_inline_is_still_delivered(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    # The JSON a loan in flight scheduled before borrower ids (no borrowers row exists).
    old = {"key": "L9:notice:margin_call:1", "loan_id": "L9", "kind": "margin_call",
           "borrower": SAMPLE_BORROWER.model_dump(mode="json"),
           "data": sample_data("margin_call")}
    notice = Notice.model_validate(old)
    assert notice.borrower_id == SAMPLE_BORROWER.id
    receipt = await send(db, sink, tmp_path, notice)
    assert receipt.status == SENT
    [msg] = sink.parsed()
    assert msg["To"].addresses[0].addr_spec == SAMPLE_BORROWER.email


async def test_a_notice_before_the_contact_is_recorded_waits_for_it(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as raised:
        await send(db, sink, tmp_path, by_id("L3", "B-404"))
    assert raised.value.type == DEFERRED and not raised.value.non_retryable
    assert "B-404" in raised.value.message
    assert await outbox.find(db, "L3:notice:margin_call:1") is None  # nothing half-done
    await ActivityEnvironment().run(StoreActivities(db).record_loan,
                                    opened("L3", GRACE.model_copy(update={"id": "B-404"})))
    assert (await send(db, sink, tmp_path, by_id("L3", "B-404"))).status == SENT


def test_a_notice_needs_a_borrower() -> None:
    with pytest.raises(ValueError, match="borrower_id"):
        Notice(key="k", loan_id="L", kind="margin_call")


async def test_a_deferral_shown_by_temporal_does_not_quote_the_address(
        db: Database, sink: Sink, tmp_path: Path) -> None:
    busy = GRACE.model_copy(update={"email": "busy@example.com"})
    await ActivityEnvironment().run(StoreActivities(db).record_loan, opened("L4", busy))
    with pytest.raises(ApplicationError) as raised:
        await send(db, sink, tmp_path, by_id("L4", "B-7"))
    assert raised.value.type == DEFERRED and "451" in raised.value.message
    assert raised.value.__cause__ is None
    assert "busy@example.com" not in raised.value.message and "<borrower>" in raised.value.message
    row = await outbox.find(db, "L4:notice:margin_call:1")
    assert row is not None and "busy@example.com" in (row.last_error or "")  # kept for ops
