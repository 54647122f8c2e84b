"""Imported loans on the time-skipping server with the real activities and a real database
(SQLite and PostgreSQL): they start ACTIVE from their migration records, book their opening
balances once, follow the normal risk rules at any LTV, and an import is idempotent."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from loanflow import ledger
from loanflow.book_import import BookError, ImportReport, import_book
from loanflow.imported import ImportedLoan
from loanflow.models import LoanState
from loanflow.money import usd_up
from loanflow.risk import daily_interest
from loanflow.schema import ImportedLoanRow, Loan, utcnow
from loanflow.store.borrowers import find_borrower
from loanflow.store.ledger import account_balances
from loanflow.store.prices import store_observation
from tests.workflows.book import (
    BORROWER,
    assert_books_agree,
    audit_kinds,
    count,
    notice_data,
    notices,
)
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import wait_state


def migrated(loan_id: str, now: datetime, **changes: Any) -> ImportedLoan:
    """A loan opened 100 days ago elsewhere: $60,000 against 1.5 BTC, $1,972.60 accrued."""
    values: dict[str, Any] = {
        "loan_id": loan_id, "borrower_id": BORROWER.id, "borrower_name": BORROWER.name,
        "borrower_email": BORROWER.email, "borrower_country": BORROWER.country,
        "collateral_asset": "BTC", "collateral_amount": Decimal("1.5"),
        "principal_usd": Decimal("60000.00"), "accrued_interest_usd": Decimal("1972.60"),
        "annual_rate": Decimal("0.12"), "originated_at": now - timedelta(days=100),
        "maturity_at": now + timedelta(days=265),
    }
    values.update(changes)
    return ImportedLoan.model_validate(values)


class Ids:
    """Loan ids of one test. An id is never reused on a Temporal server, and the time-skipping
    server serves the whole session (each test runs on SQLite and PostgreSQL)."""

    def __init__(self, desk: Desk) -> None:
        self.suffix = desk.task_queue.rsplit("-", 1)[-1]

    def __call__(self, name: str) -> str:
        return f"{name}-{self.suffix}"


@pytest.fixture
def ids(desk: Desk) -> Ids:
    return Ids(desk)


async def run_import(desk: Desk, loans: list[ImportedLoan]) -> ImportReport:
    progress: list[int] = []
    report = await import_book(desk.client, desk.db, loans, task_queue=desk.task_queue,
                               memo={"search_attributes": False}, on_progress=progress.append)
    assert progress == list(range(1, len(loans) + 1))
    for loan_id in report.started:
        desk.handles.append(handle_of(desk, loan_id))
    return report


def handle_of(desk: Desk, loan_id: str) -> Any:
    return desk.client.get_workflow_handle(f"loan-{loan_id}")


async def stored_records(desk: Desk) -> int:
    async with desk.db.sessions() as s:
        return (await s.execute(select(func.count()).select_from(ImportedLoanRow))).scalar_one()


async def test_an_imported_loan_is_active_with_its_balances(desk: Desk, ids: Ids) -> None:
    now = await desk.now()
    loan = migrated(ids("IMP1"), now)
    report = await run_import(desk, [loan])
    assert report == ImportReport(started=[ids("IMP1")], already_present=[])
    handle = handle_of(desk, ids("IMP1"))
    status = await wait_state(desk, handle, LoanState.ACTIVE)
    status = await desk.settle(handle)
    assert (status.principal_usd, status.interest_usd) == (Decimal("60000.00"), Decimal("1972.60"))
    assert status.debt_usd == Decimal("61972.60")
    assert status.collateral_amount == status.required_collateral == Decimal("1.5")
    assert status.disbursed_at == loan.originated_at and status.maturity == loan.maturity_at
    assert status.kyc_status == "migrated" and status.deposit_address
    assert status.ltv is None  # no price yet: nothing is decided without one
    await assert_books_agree(desk.db, status)
    async with desk.db.sessions() as s:
        opening = await account_balances(s, accounts=[ledger.OPENING_BALANCES])
    assert opening == {(ledger.OPENING_BALANCES, "USD"): Decimal("-61972.60")}
    # Skipped: KYC, approval, funding and disbursement (no payout: the money was lent before).
    assert await count(desk.db, "payouts", ids("IMP1")) == 0
    assert await notices(desk.db, ids("IMP1")) == ["loan_migrated"]
    (sent,) = await notice_data(desk.db, ids("IMP1"), "loan_migrated")
    assert (sent["debt_usd"], sent["collateral_amount"], sent["address"]) == (
        "61972.60", "1.5", status.deposit_address)
    assert "imported" in await audit_kinds(desk.db, ids("IMP1"))
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("IMP1"))
    assert row is not None and row.state == "ACTIVE" and row.debt_usd == Decimal("61972.60")
    assert row.margin_call_price is not None  # the market monitor can find it

    # Interest accrues from the import on, on top of what was accrued before. (A query sees the
    # loan as of its last wake-up, its daily revaluation: half a day's margin either way.)
    await desk.env.sleep(timedelta(days=30, hours=12))
    later = await desk.status(handle)
    expected = Decimal("1972.60") + 30 * daily_interest(Decimal("60000.00"), Decimal("0.12"))
    assert later.interest_usd == usd_up(expected)


async def test_loans_above_the_margin_call_level_follow_the_rules_on_their_first_price(
    desk: Desk, ids: Ids,
) -> None:
    now = await desk.now()
    call = migrated(ids("IMP75"), now, principal_usd=Decimal("75000.00"),
                    accrued_interest_usd=Decimal("0"), collateral_amount=Decimal("1"))
    floor = migrated(ids("IMP95"), now, principal_usd=Decimal("95000.00"),
                     accrued_interest_usd=Decimal("0"), collateral_amount=Decimal("1"))
    await run_import(desk, [call, floor])
    for loan_id in (ids("IMP75"), ids("IMP95")):
        handle = handle_of(desk, loan_id)
        assert (await wait_state(desk, handle, LoanState.ACTIVE)).ltv is None
        # The first fresh price: 75% is a margin call, 95% is past the hard floor (90%).
        await desk.price(handle, "BTC", "100000")
    handle = handle_of(desk, ids("IMP75"))
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    assert status.ltv == Decimal("0.75") and status.cure_deadline is not None
    assert status.cure_deadline - await desk.now() <= timedelta(hours=48)
    await desk.settle(handle)
    assert await notices(desk.db, ids("IMP75"), "margin_call") == ["margin_call"]

    handle = handle_of(desk, ids("IMP95"))
    for _ in range(100):
        if await count(desk.db, "exchange_orders", ids("IMP95")):
            break
        await desk.env.sleep(timedelta(seconds=1))
    sold = await desk.settle(handle)
    assert sold.state == LoanState.ACTIVE and sold.collateral_amount < 1
    assert sold.ltv is not None and sold.ltv <= Decimal("0.50")
    await assert_books_agree(desk.db, sold)


async def test_a_stored_market_price_is_acted_on_at_once(desk: Desk, ids: Ids) -> None:
    """The market monitor stored a fresh price before the import: the loan's first look at
    the market (its first revaluation) finds it, no signal needed."""
    now = await desk.now()
    await store_observation(desk.db, "BTC", Decimal("100000"), now)
    await run_import(desk, [migrated(ids("IMPS"), now, principal_usd=Decimal("72000.00"),
                                     accrued_interest_usd=Decimal("0"),
                                     collateral_amount=Decimal("1"))])
    status = await wait_state(desk, handle_of(desk, ids("IMPS")), LoanState.MARGIN_CALL)
    assert status.ltv == Decimal("0.72")


async def test_importing_twice_starts_nothing_new(desk: Desk, ids: Ids) -> None:
    now = await desk.now()
    book = [migrated(ids("IMPA"), now), migrated(ids("IMPB"), now, collateral_asset="ETH",
                                            collateral_amount=Decimal("30"))]
    assert (await run_import(desk, book)).started == [ids("IMPA"), ids("IMPB")]
    again = await run_import(desk, [b.model_copy() for b in book])
    assert again == ImportReport(started=[], already_present=[ids("IMPA"), ids("IMPB")])
    for loan_id in (ids("IMPA"), ids("IMPB")):
        handle = handle_of(desk, loan_id)
        await wait_state(desk, handle, LoanState.ACTIVE)
        status = await desk.settle(handle)
        await assert_books_agree(desk.db, status)
        assert await count(desk.db, "ledger_entries", loan_id) == 1
        assert await notices(desk.db, loan_id) == ["loan_migrated"]
    assert await stored_records(desk) == 2

    # A file that changes an imported loan's figures is refused whole: its new loan neither.
    changed = [migrated(ids("IMPC"), now), migrated(ids("IMPB"), now, collateral_asset="ETH",
                                                collateral_amount=Decimal("31"))]
    with pytest.raises(BookError) as refused:
        await run_import(desk, changed)
    assert str(refused.value) == (
        f"line 2: collateral_amount: loan {ids('IMPB')} was imported before with "
        "collateral_amount 30; "
        "an imported loan's opening figures cannot change")
    assert await stored_records(desk) == 2
    assert await count(desk.db, "loans", ids("IMPC")) == 0


async def test_a_loan_id_the_desk_already_has_is_refused(desk: Desk, ids: Ids) -> None:
    async with desk.db.transaction() as s:
        s.add(Loan(loan_id=ids("OPEN1"), version=1, borrower_id="B", state="ACTIVE",
                   collateral_asset="BTC", collateral_amount=Decimal(1),
                   principal_usd=Decimal(100), debt_usd=Decimal(100), ltv=None,
                   updated_at=utcnow(), application={"loan_id": ids("OPEN1")}))
    now = await desk.now()
    with pytest.raises(BookError, match=f"line 2: loan_id: {ids('OPEN1')} is already a loan on"):
        await run_import(desk, [migrated(ids("NEW1"), now), migrated(ids("OPEN1"), now)])
    assert await stored_records(desk) == 0


async def test_a_start_by_hand_cannot_invent_or_hijack_an_imported_loan(desk: Desk, ids: Ids) -> None:
    now = await desk.now()
    # No migration record: the loan rejects itself, nothing is booked.
    invented = migrated(ids("HAND1"), now, borrower_email="eve@example.com").application()
    handle = await desk.open(invented)
    result = await handle.result()
    assert result.state == LoanState.REJECTED
    assert "has no migration record" in (result.reason or "")
    assert await count(desk.db, "ledger_entries", ids("HAND1")) == 0
    # It is no one's application: no one is mailed, and the contact details it carries are
    # not recorded as the borrower's.
    await desk.settle(handle)
    assert await notices(desk.db, ids("HAND1")) == []
    assert await contact_email(desk) != "eve@example.com"

    # A record exists, but the start names another borrower (whose address would get the
    # notices): rejected. The id is taken for good (loan ids are never reused): importing the
    # record afterwards reports the loan already present and starts nothing.
    await import_records(desk, [migrated(ids("HAND2"), now)])
    app = migrated(ids("HAND2"), now).application()
    hijack = app.model_copy(update={"borrower": app.borrower.model_copy(
        update={"email": "mallory@example.com"})})
    result = await (await desk.open(hijack)).result()
    assert result.state == LoanState.REJECTED
    assert "borrower: differs from the migration record" in (result.reason or "")
    assert await count(desk.db, "ledger_entries", ids("HAND2")) == 0
    # Mallory's address is not recorded as the borrower's (every later notice of theirs would
    # go there), and she is not mailed.
    assert await notices(desk.db, ids("HAND2")) == []
    assert await contact_email(desk) != "mallory@example.com"
    report = await run_import(desk, [migrated(ids("HAND2"), now)])
    assert report == ImportReport(started=[], already_present=[ids("HAND2")])


async def contact_email(desk: Desk) -> str | None:
    """The address the borrower's notices go to (None: none recorded in this database)."""
    contact = await find_borrower(desk.db, BORROWER.id)
    return None if contact is None else contact.email


async def import_records(desk: Desk, loans: list[ImportedLoan]) -> None:
    from loanflow.book_import import store_book

    await store_book(desk.db, loans)
