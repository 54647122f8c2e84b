"""Every path of a loan's life, on the time-skipping server with the real activities and a real
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from temporalio.client import WorkflowFailureError

from loanflow.mail import outbox
from loanflow.models import Borrower, LoanState
from loanflow.money import fmt_ratio, fmt_usd
from loanflow.risk import cure_repay, cure_top_up
from tests.workflows.book import (
    BAD_POLICY,
    application,
    assert_books_agree,
    audit_kinds,
    count,
    notice_data,
    notices,
    sales,
)
from tests.workflows.conftest import Desk

HOUR = timedelta(hours=1)
# A partial liquidation lands LTV here, at the price it acted on, whatever the fills.
BAND = (Decimal("0.49"), Decimal("0.50"))


def in_band(ltv: Decimal | None) -> bool:
    return ltv is not None and BAND[0] <= ltv <= BAND[1]


async def active_loan(desk: Desk, loan_id: str, price: str = "100000", **overrides):  # type: ignore[no-untyped-def]
    """Open a loan, price it, fund it; returns the handle of an ACTIVE loan."""
    app = application(loan_id, **overrides)
    handle = await desk.open(app)
    await desk.price(handle, app.collateral_asset, price)
    await wait_state(desk, handle, LoanState.AWAITING_COLLATERAL)
    state = await handle.execute_update(
        "confirm_deposit", {"amount": str(app.collateral_amount), "tx_id": f"{loan_id}-tx1"}
    )
    assert state in ("AWAITING_COLLATERAL", "ACTIVE")  # disbursement follows the deposit
    await wait_state(desk, handle, LoanState.ACTIVE)
    return handle


async def wait_state(desk: Desk, handle, state: LoanState, limit: int = 200):  # type: ignore[no-untyped-def]
    """Let the loan run until it reaches `state` (time-skipping server: sleeps are instant)."""
    for _ in range(limit):
        status = await desk.status(handle)
        if status.state == state:
            return status
        await desk.env.sleep(timedelta(seconds=1))
    raise AssertionError(f"loan stuck in {status.state}, expected {state}")


async def test_repaid_loan_closes_and_releases_collateral(desk: Desk) -> None:
    handle = await active_loan(desk, "R1")
    # A query sees the clock of the loan's last task: its 30th daily revaluation falls a little
    # after 30 days from here (it counts from when the loan first looked at itself).
    await desk.env.sleep(timedelta(days=30, hours=1))
    status = await desk.status(handle)
    # 30 days of simple interest on $30,000 at 12%, actual/365, rounded up to the cent
    assert status.interest_usd == Decimal("295.90")
    assert status.debt_usd == Decimal("30295.90")

    assert await handle.execute_update(
        "repay", {"amount_usd": "10000.00", "reference": "wire-1"}
    ) == "ACTIVE"
    partial = await desk.status(handle)
    assert partial.interest_usd == 0 and partial.principal_usd == Decimal("20295.90")
    await assert_books_agree(desk.db, partial)

    final = await handle.execute_update(
        "repay", {"amount_usd": str(partial.debt_usd), "reference": "wire-2"}
    )
    assert final == "CLOSED"
    result = await handle.result()
    assert result.state == LoanState.CLOSED and result.collateral_amount == 0
    assert result.debt_usd == 0
    await assert_books_agree(desk.db, result)
    await desk.settle(handle)
    kinds = await notices(desk.db, "R1")
    for kind in ("application_received", "kyc_approved", "deposit_instructions",
                 "collateral_received", "loan_disbursed", "repayment_received", "loan_closed"):
        assert kind in kinds
    assert kinds.count("repayment_received") == 2
    await desk.settle(handle)
    assert await count(desk.db, "payouts", "R1") == 1


async def test_margin_call_cured_by_top_up_with_exact_amounts(desk: Desk) -> None:
    handle = await active_loan(desk, "M1")
    # $30,000 / (1 BTC x 42,000) = 71.4%: margin call
    await desk.price(handle, "BTC", "42000")
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    assert status.cure_deadline is not None
    assert status.cure_deadline - await desk.now() <= timedelta(hours=48)
    expected_top_up = cure_top_up("BTC", status.debt_usd, Decimal(1), Decimal(42000), Decimal("0.6"))
    assert status.cure_top_up == expected_top_up
    assert status.cure_repay_usd == cure_repay(status.debt_usd, Decimal(1), Decimal(42000), Decimal("0.6"))

    state = await handle.execute_update(
        "top_up", {"amount": str(status.cure_top_up), "tx_id": "M1-topup"}
    )
    assert state == "ACTIVE"
    after = await desk.status(handle)
    assert after.ltv is not None and after.ltv <= Decimal("0.6")
    assert after.cure_deadline is None
    await desk.settle(handle)
    kinds = await notices(desk.db, "M1")
    assert kinds.count("margin_call") == 1 and kinds.count("margin_call_cured") == 1
    await assert_books_agree(desk.db, after)


async def test_margin_call_cured_by_repayment_and_by_market(desk: Desk) -> None:
    handle = await active_loan(desk, "M2")
    await desk.price(handle, "BTC", "42000")
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    assert await handle.execute_update(
        "repay", {"amount_usd": str(status.cure_repay_usd), "reference": "cure-wire"}
    ) == "ACTIVE"

    await desk.price(handle, "BTC", "42000")
    await desk.env.sleep(timedelta(seconds=1))
    # still cured: the repayment lowered the debt, 42,000 no longer triggers a call
    assert (await desk.status(handle)).state == LoanState.ACTIVE
    await desk.price(handle, "BTC", "35000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await desk.price(handle, "BTC", "60000")
    await wait_state(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    kinds = await notices(desk.db, "M2")
    assert kinds.count("margin_call") == 2 and kinds.count("margin_call_cured") == 2
    assert "repayment_received" in kinds


async def test_warning_once_per_episode(desk: Desk) -> None:
    handle = await active_loan(desk, "W1")
    for price in ("45500", "45000", "45400"):  # 65.9% .. 66.7%: warning band
        await desk.price(handle, "BTC", price)
        await desk.env.sleep(timedelta(seconds=1))
    assert (await desk.status(handle)).state == LoanState.ACTIVE
    await desk.settle(handle)
    assert len(await notices(desk.db, "W1", "ltv_warning")) == 1
    await desk.price(handle, "BTC", "60000")  # back under the cure target: episode over
    await desk.env.sleep(timedelta(seconds=1))
    await desk.price(handle, "BTC", "45000")
    await desk.env.sleep(timedelta(seconds=1))
    await desk.settle(handle)
    assert len(await notices(desk.db, "W1", "ltv_warning")) == 2


async def test_deadline_liquidation_after_reminders(desk: Desk) -> None:
    handle = await active_loan(desk, "D1")
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    # Keep the price fresh through the cure period the way the market monitor would.
    for _ in range(48 * 4):
        await desk.env.sleep(timedelta(minutes=15))
        await desk.price(handle, "BTC", "42000")
        if (await desk.status(handle)).state != LoanState.MARGIN_CALL:
            break
    status = await desk.status(handle)
    assert status.state == LoanState.ACTIVE
    assert in_band(status.ltv), status.ltv
    await desk.settle(handle)
    kinds = await notices(desk.db, "D1")
    assert kinds.count("margin_call_reminder") == 2
    assert kinds.count("liquidation_executed") == 1
    [sold] = await notice_data(desk.db, "D1", "liquidation_executed")
    assert sold["cause"] == "cure_deadline" and sold["cure_deadline"] is not None
    await desk.settle(handle)
    assert len(await sales(desk.db, "D1")) >= 1
    await assert_books_agree(desk.db, status)


async def test_extend_cure_moves_deadline_and_is_recorded(desk: Desk) -> None:
    handle = await active_loan(desk, "E1")
    await desk.price(handle, "BTC", "42000")
    before = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await handle.execute_update(
        "extend_cure", {"hours": 24, "reason": "wire in flight", "operator": "ops-anna"}
    )
    after = await desk.status(handle)
    assert after.cure_deadline == before.cure_deadline + timedelta(hours=24)
    await desk.settle(handle)
    assert "cure_extended" in await audit_kinds(desk.db, "E1")
    await desk.settle(handle)
    assert await notices(desk.db, "E1", "cure_extended") == ["cure_extended"]


async def test_liquidation_waits_for_a_second_observation(desk: Desk) -> None:
    handle = await active_loan(desk, "L1")
    # 30,000 / 36,500 = 82.2%: liquidation level but below the 90% hard floor
    await desk.price(handle, "BTC", "36500", confirmed=False)
    await desk.env.sleep(timedelta(seconds=1))
    status = await desk.status(handle)
    assert status.state in (LoanState.MARGIN_CALL, LoanState.ACTIVE)
    await desk.settle(handle)
    assert await sales(desk.db, "L1") == []
    await desk.price(handle, "BTC", "36400")
    status = await wait_state(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    assert len(await sales(desk.db, "L1")) >= 1
    assert in_band(status.ltv), status.ltv
    await assert_books_agree(desk.db, status)
    # The borrower hears why, with the figures the desk acted on, and that no margin call
    # came first (the price jumped past 70% and 80% between two observations).
    assert await notices(desk.db, "L1", "margin_call") == []
    [sold] = await notice_data(desk.db, "L1", "liquidation_executed")
    assert sold["cause"] == "liquidation_level" and "cure_deadline" not in sold
    assert (sold["price"], sold["liquidation_ltv"]) == ("36400", "0.80")
    assert Decimal(sold["ltv_before"]) >= Decimal("0.80")
    mail = await outbox.find(desk.db, "L1:notice:liquidation_executed:1")
    assert mail is not None and "there was no margin call before this sale" in mail.text


async def backlogged_prices(desk: Desk, handle, *prices: str) -> None:  # type: ignore[no-untyped-def]
    """After a look at 50,000 (60% LTV: no move below needs confirmation as a jump),
    observations that reach the loan together, in one workflow task."""
    await desk.price(handle, "BTC", "50000")
    await desk.settle(handle)
    await desk.backlogged_prices(handle, "BTC", *prices)


async def test_a_backlog_does_not_skip_the_margin_call(backlog_desk: Desk) -> None:
    desk = backlog_desk
    handle = await active_loan(desk, "L1B")
    # 30,000 / 41,000 = 73.2% (a call), then 30,000 / 36,500 = 82.2% (liquidation level), both
    # unread when the loan next runs: it is owed the call the first one made.
    await backlogged_prices(desk, handle, "41000", "36500")
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await desk.settle(handle)
    [call] = await notice_data(desk.db, "L1B", "margin_call")
    # The call tells the price the desk now acts on, not the older one.
    assert call["price"] == "36500" and Decimal(call["ltv"]) == status.ltv >= Decimal("0.80")
    assert "margin_call_level_observed" in await audit_kinds(desk.db, "L1B")
    assert await sales(desk.db, "L1B") == []  # the breach still waits for its confirmation
    await desk.price(handle, "BTC", "36400")
    await wait_state(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    [sold] = await notice_data(desk.db, "L1B", "liquidation_executed")
    assert sold["cause"] == "liquidation_level" and sold["cure_deadline"] == call["cure_deadline"]
    mail = await outbox.find(desk.db, "L1B:notice:liquidation_executed:1")
    assert mail is not None and "there was no margin call" not in mail.text


async def test_a_backlog_that_recovers_opens_no_call(backlog_desk: Desk) -> None:
    """Unread observations count only on the way to a breach: a loan whose newest price is
    back below the call level acts on that price."""
    desk = backlog_desk
    handle = await active_loan(desk, "L1C")
    await backlogged_prices(desk, handle, "41000", "52000")
    await desk.settle(handle)
    assert (await desk.status(handle)).state == LoanState.ACTIVE
    assert await notices(desk.db, "L1C", "margin_call") == []


async def test_wick_that_recovers_sells_nothing(desk: Desk) -> None:
    handle = await active_loan(desk, "L2")
    await desk.price(handle, "BTC", "36500", confirmed=False)
    await desk.env.sleep(timedelta(seconds=1))
    await desk.price(handle, "BTC", "52000", confirmed=False)
    # Past the loan's confirmation re-read (five minutes after the wick): it has looked at the
    # store again by then and still sells nothing. Not exactly five minutes: a sleep that ends
    # a second after a timer the loan let go fires wedges the time-skipping test server
    # (temporalio/sdk-java#3088; see `LoanBase.release`).
    await desk.env.sleep(timedelta(minutes=12))
    await desk.settle(handle)
    assert await sales(desk.db, "L2") == []


async def test_hard_floor_liquidates_at_once(desk: Desk) -> None:
    handle = await active_loan(desk, "L3")
    await desk.price(handle, "BTC", "33000")  # 90.9%
    status = await wait_state(desk, handle, LoanState.ACTIVE, limit=5)
    for _ in range(20):
        if await sales(desk.db, "L3"):
            break
        await desk.env.sleep(timedelta(seconds=1))
    status = await desk.settle(handle)
    # 90.9% sells in two limit orders: the first sized so that no fill up to 0.5% above the
    # price can take LTV below 49%, the second from where the real fill left it
    assert len(await sales(desk.db, "L3")) == 2
    assert status.state == LoanState.ACTIVE and in_band(status.ltv), status.ltv
    [sold] = await notice_data(desk.db, "L3", "liquidation_executed")
    assert sold["cause"] == "hard_floor" and Decimal(sold["ltv_before"]) >= Decimal("0.90")
    # The reason a person reads says it in people's figures, not the 60-digit ratio.
    assert sold["reason"] == f"LTV {fmt_ratio(Decimal(sold['ltv_before']))} past the hard floor"


async def test_crash_below_debt_defaults_with_shortfall(desk: Desk) -> None:
    handle = await active_loan(desk, "S1")
    await desk.price(handle, "BTC", "20000")  # collateral worth less than the debt
    result = await handle.result()
    assert result.state == LoanState.DEFAULTED
    assert result.collateral_amount == 0
    assert result.shortfall_usd > 0
    assert result.reason == f"collateral exhausted with {fmt_usd(result.shortfall_usd)} unpaid"
    await desk.settle(handle)
    assert "loan_defaulted" in await notices(desk.db, "S1")
    await assert_books_agree(desk.db, result)


async def test_maturity_liquidates_in_full_and_releases_the_rest(desk: Desk) -> None:
    handle = await active_loan(desk, "T1", term_days=30)
    await desk.env.sleep(timedelta(days=30, hours=72) + HOUR)
    await desk.price(handle, "BTC", "100000")
    result = await handle.result()
    assert result.state == LoanState.CLOSED
    assert result.collateral_amount == 0
    await desk.settle(handle)
    kinds = await notices(desk.db, "T1")
    assert kinds.count("maturity_reminder") == 3  # 7 days, 1 day, at maturity
    assert "liquidation_executed" in kinds and "loan_closed" in kinds
    [sold] = await notice_data(desk.db, "T1", "liquidation_executed")
    assert sold["cause"] == "maturity"
    await assert_books_agree(desk.db, result)


async def test_over_max_initial_ltv_is_rejected_with_the_reason(desk: Desk) -> None:
    app = application("X1", principal_usd=Decimal("60000.00"))
    handle = await desk.open(app)
    await desk.price(handle, "BTC", "100000")
    result = await handle.result()
    assert result.state == LoanState.REJECTED
    assert result.reason == ("requested LTV 60.00% is above the maximum initial LTV 50.00% at "
                             "BTC $100,000.00")
    await desk.settle(handle)
    assert await notices(desk.db, "X1", "application_rejected") == ["application_rejected"]


async def test_a_policy_aiming_sales_at_a_negative_ltv_is_rejected(desk: Desk) -> None:
    # Started as the stock `temporal` CLI would, past `loanflow open`'s own check.
    app = application("X2", policy=BAD_POLICY)
    handle = await desk.open(app)
    result = await handle.result()
    assert result.state == LoanState.REJECTED
    assert result.reason == ("policy: post_liquidation_ltv (-0.5) must be above 0: a sale sized "
                             "to reach it would sell all the collateral")
    await desk.settle(handle)
    assert await notices(desk.db, "X2") == ["application_rejected"]


async def test_blocked_country_is_rejected_by_screening(desk: Desk) -> None:
    borrower = Borrower(id="B-9", name="Kim Test", email="kim@example.com", country="KP")
    handle = await desk.open(application("K1", borrower=borrower))
    result = await handle.result()
    assert result.state == LoanState.REJECTED
    await desk.settle(handle)
    assert "kyc_rejected" in await notices(desk.db, "K1")


async def test_manual_review_then_approval(desk: Desk) -> None:
    app = application("K2", principal_usd=Decimal("2000000.00"), collateral_amount=Decimal("50"))
    handle = await desk.open(app)
    for _ in range(100):
        if (await desk.status(handle)).kyc_status == "manual_review":
            break
        await asyncio.sleep(0.05)
    status = await handle.execute_update(
        "kyc_decision", {"approved": True, "reviewer": "ops-ben", "reason": "documents verified"}
    )
    await desk.price(handle, "BTC", "100000")
    await wait_state(desk, handle, LoanState.AWAITING_COLLATERAL)
    assert status in ("KYC_REVIEW", "AWAITING_COLLATERAL")


async def test_review_timeout_rejects(desk: Desk) -> None:
    app = application("K3", principal_usd=Decimal("2000000.00"), collateral_amount=Decimal("50"))
    handle = await desk.open(app)
    result = await handle.result()
    assert result.state == LoanState.REJECTED
    assert result.reason is not None and "timed out" in result.reason


async def test_unfunded_loan_is_cancelled_and_deposit_returned(desk: Desk) -> None:
    app = application("C1", collateral_amount=Decimal("2"))
    handle = await desk.open(app)
    await desk.price(handle, "BTC", "100000")
    await wait_state(desk, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "0.5", "tx_id": "C1-part"})
    result = await handle.result()
    assert result.state == LoanState.CANCELLED
    assert result.collateral_amount == 0
    await desk.settle(handle)
    assert await count(desk.db, "custody_transfers", "C1") == 2  # in, and back out
    await desk.settle(handle)
    assert "loan_cancelled" in await notices(desk.db, "C1")
    await assert_books_agree(desk.db, result)


async def test_no_fresh_price_means_no_action(desk: Desk) -> None:
    handle = await active_loan(desk, "P1")
    await desk.env.sleep(timedelta(hours=2))  # the last price is now stale
    stale_crash = {"asset": "BTC", "price": "20000",
                   "observed_at": ((await desk.now()) - timedelta(hours=1)).isoformat()}
    await handle.signal("price_update", stale_crash)
    await desk.env.sleep(timedelta(seconds=1))
    status = await desk.status(handle)
    assert status.state == LoanState.ACTIVE
    await desk.settle(handle)
    assert await sales(desk.db, "P1") == []


async def test_malformed_start_input_fails_the_run_naming_the_field(desk: Desk) -> None:
    handle = await desk.client.start_workflow(
        "LoanWorkflow",
        {"loan_id": "BAD", "borrower": {"id": "b", "name": "n", "email": "e@x.io", "country": "GB"},
         "principal_usd": "lots", "collateral_asset": "BTC", "collateral_amount": "1",
         "term_days": 30, "annual_rate": "0.1"},
        id="loan-BAD",
        task_queue=desk.task_queue,
        memo={"search_attributes": False},
    )
    try:
        await handle.result()
    except WorkflowFailureError as err:
        assert "principal_usd" in str(err.cause)
    else:
        raise AssertionError("a malformed application must fail the run")
