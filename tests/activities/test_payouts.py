"""Payouts: the loan and liquidation surpluses, each sent once and booked in dollars."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerActivities
from activities.payouts import FakePayoutRail, PayoutActivities
from loanflow import ledger
from loanflow.effects import LedgerPosting, PayoutRequest
from loanflow.schema import LedgerEntry, Payout

D = Decimal


def payout(
    amount: str = "50000.00", purpose: str = "disbursement", key: str = "L1:disburse"
) -> PayoutRequest:
    return PayoutRequest(
        key=key,
        loan_id="L1",
        borrower_id="B1",
        amount_usd=D(amount),
        purpose=purpose,  # type: ignore[arg-type]
    )


@pytest.fixture
def payouts(db) -> PayoutActivities:
    return PayoutActivities(db, FakePayoutRail())


async def test_disbursement_is_paid_once(env, payouts, count, balances, book_is_balanced) -> None:
    first = await env.run(payouts.disburse, payout())
    again = await env.run(payouts.disburse, payout())
    assert (first.created, again.created) == (True, False)
    assert first.payout_id == again.payout_id and first.payout_id.startswith("pay_")
    assert again.amount_usd == D("50000.00")
    assert await count(Payout) == 1
    assert await count(LedgerEntry) == 1
    assert await balances() == {
        ("loan:L1:receivable", "USD"): D("50000"),
        ("cash", "USD"): D("-50000"),
    }
    assert await book_is_balanced()


async def test_concurrent_duplicate_disbursements_pay_once(env, payouts, count, balances) -> None:
    receipts = await asyncio.gather(*(env.run(payouts.disburse, payout()) for _ in range(3)))
    assert sorted(r.created for r in receipts) == [False, False, True]
    assert await count(Payout) == 1
    assert (await balances())[("cash", "USD")] == D("-50000")


async def test_rail_outage_fails_before_paying(db, env, failing, count) -> None:
    down = PayoutActivities(db, FakePayoutRail(failing))
    with pytest.raises(ApplicationError) as err:
        await env.run(down.disburse, payout())
    assert not err.value.non_retryable and err.value.type == "VendorUnavailable"
    assert await count(Payout) == 0
    assert await count(LedgerEntry) == 0


async def test_surplus_is_paid_from_what_the_desk_owes(
    db, env, payouts, balances, book_is_balanced
) -> None:
    # A liquidation left 1,234.56 owed to the borrower (booked as the exchange activity does).
    owed = LedgerPosting(
        key="L1:sale:1",
        loan_id="L1",
        memo="sale surplus",
        lines=[
            ledger.debit("cash", "USD", D("1234.56")),
            ledger.credit(ledger.payable("L1"), "USD", D("1234.56")),
        ],
    )
    await env.run(LedgerActivities(db).post_ledger, owed)
    with pytest.raises(ApplicationError) as err:
        await env.run(payouts.disburse, payout("1234.57", "surplus", "L1:surplus:1"))
    assert err.value.non_retryable and err.value.type == "InsufficientPayable"
    assert "$1,234.56" in str(err.value)
    receipt = await env.run(payouts.disburse, payout("1234.56", "surplus", "L1:surplus:1"))
    assert receipt.created
    assert await balances() == {}  # the cash came in and went out; nothing is owed any more
    assert await book_is_balanced()


async def test_surplus_with_nothing_owed_is_refused(env, payouts, count) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(payouts.disburse, payout("10.00", "surplus", "L1:surplus:1"))
    assert err.value.type == "InsufficientPayable"
    assert await count(Payout) == 0


async def test_bad_amounts_are_refused(env, payouts, count) -> None:
    for amount in ("0", "-5.00", "10.001"):
        with pytest.raises(ApplicationError) as err:
            await env.run(payouts.disburse, payout(amount))
        assert err.value.non_retryable and err.value.type == "InvalidAmount", amount
    assert await count(Payout) == 0


async def test_key_reused_for_another_amount_is_refused(env, payouts, count) -> None:
    await env.run(payouts.disburse, payout("100.00"))
    with pytest.raises(ApplicationError) as err:
        await env.run(payouts.disburse, payout("200.00"))
    assert err.value.non_retryable and err.value.type == "IdempotencyConflict"
    assert await count(Payout) == 1
