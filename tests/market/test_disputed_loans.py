"""What a loan does with a disputed observation (the venues disagreed past the deviation
limit): warnings and margin calls act on the lowest quote; a sale waits for an agreeing
observation (recorded once); only the hard floor sells, and only if it holds at the highest
quote. Real `LoanWorkflow`s on the time-skipping server with the real activities.

The standard loan: $30,000 against 1 BTC. Levels: warning 65% (46,153.84), margin call 70%
(42,857.14), liquidation 80% (37,500), hard floor 90% (33,333.33)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from temporalio.client import WorkflowHandle

from loanflow.models import LoanState
from loanflow.policy import PolicyOverrides
from loanflow.schema import AuditRecord, ExchangeOrder, PriceObservation
from loanflow.store.prices import as_update, store_observation
from tests.market.conftest import Market, open_active_loan, settle, wait_state
from tests.workflows.book import application

D = Decimal


async def disputed(market: Market, handle: WorkflowHandle[Any, Any], low: str, high: str) -> None:
    """What the monitor does for a disputed tick: store the observation (flagged, the lowest
    quote as the price), then signal it. Stored, a jump past the loan's jump limit is the desk's
    word and needs no confirmation (the loan finds it in the store)."""
    row = PriceObservation(
        asset="BTC", price=D(low), observed_at=await market.now(),
        sources={"bitstamp": low, "binance": high}, disputed=True, low=D(low), high=D(high),
        unconfirmed=False, created_at=await market.now())
    async with market.db.transaction() as session:
        session.add(row)
        await session.flush()
        update = as_update(row)
    await handle.signal("price_update", update.model_dump(mode="json"))
    await market.env.sleep(timedelta(seconds=1))


async def agreed(market: Market, handle: WorkflowHandle[Any, Any], price: str, *,
                 confirmed: bool = True) -> None:
    """An agreeing price; `confirmed=False` is one print only (the wick check wants two)."""
    await market.price(handle, "BTC", price, confirmed=confirmed)
    await market.env.sleep(timedelta(seconds=1))


async def audits(market: Market, loan_id: str, kind: str) -> list[AuditRecord]:
    async with market.db.transaction() as s:
        return list(await s.scalars(select(AuditRecord).where(
            AuditRecord.loan_id == loan_id, AuditRecord.kind == kind).order_by(AuditRecord.id)))


async def orders(market: Market, loan_id: str) -> list[ExchangeOrder]:
    async with market.db.transaction() as s:
        return list(await s.scalars(select(ExchangeOrder).where(ExchangeOrder.loan_id == loan_id)))


async def opened(market: Market, loan_id: str, **policy: Any) -> WorkflowHandle[Any, Any]:
    await store_observation(market.db, "BTC", D("100000"), await market.now(), {"seed": D("100000")})
    if not policy:
        return await open_active_loan(market, loan_id, "BTC", "30000", "1")
    app = application(loan_id, policy=PolicyOverrides(**policy))
    handle = market.track(await market.client.start_workflow(
        "LoanWorkflow", app, id=f"loan-{loan_id}", task_queue=market.task_queue,
        memo={"search_attributes": False}))
    await wait_state(market, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "1", "tx_id": f"{loan_id}-tx"})
    await wait_state(market, handle, LoanState.ACTIVE)
    return handle


async def test_the_lowest_quote_acts_for_a_margin_call(market: Market) -> None:
    handle = await opened(market, "DC1")
    # 42,000 is 71.4% (a call); 44,000 would be 68.2% (a warning only).
    await disputed(market, handle, "42000", "44000")
    status = await wait_state(market, handle, LoanState.MARGIN_CALL)
    assert status.price == D("42000")
    await settle(handle)
    [call] = await audits(market, "DC1", "margin_call")
    assert call.price == D("42000") and D(call.detail["ltv"]) >= D("0.70")


async def test_a_sale_waits_for_agreement_then_the_wick_check_runs_on_agreeing_prices(
    market: Market,
) -> None:
    handle = await opened(market, "DS1")
    # Past the liquidation level at the lowest quote, even past the hard floor there (93.75%),
    # but not at the highest (85.7%): nothing is sold, however often it comes.
    await disputed(market, handle, "32000", "35000")
    await disputed(market, handle, "32100", "35000")
    await disputed(market, handle, "36000", "38500")
    await settle(handle)
    assert await orders(market, "DS1") == []
    # the margin call the lowest quote calls for is opened: the borrower hears and may cure
    [call] = await audits(market, "DS1", "margin_call")
    assert call.price == D("32000")
    assert (await market.status(handle)).state == LoanState.MARGIN_CALL
    [waits] = await audits(market, "DS1", "sale_waits_for_agreement")  # recorded once
    assert waits.price == D("32000")
    assert (waits.detail["low"], waits.detail["high"]) == ("32000", "35000")
    assert (await market.status(handle)).collateral_amount == D(1)
    # Venues agree again, still past the liquidation level: the usual wick check (a second,
    # later agreeing observation) and then the sale.
    await agreed(market, handle, "36400", confirmed=False)
    await settle(handle)
    assert await orders(market, "DS1") == []
    assert await audits(market, "DS1", "liquidation_pending_confirmation")
    await agreed(market, handle, "36300", confirmed=False)
    status = await wait_state(market, handle, LoanState.ACTIVE)
    await settle(handle)
    sold = await orders(market, "DS1")  # one limit order, or a second if the fill was rich
    assert sold and {order.reference_price for order in sold} == {D("36300")}
    assert status.collateral_amount == D(1) - sum(order.quantity for order in sold)


async def test_the_hard_floor_sells_on_a_disputed_price_if_it_holds_at_the_highest(
    market: Market,
) -> None:
    handle = await opened(market, "DH1")
    # 33,000 is 90.9% even at the highest quote: the hard floor holds whoever is right.
    await disputed(market, handle, "30000", "33000")
    for _ in range(20):
        if await orders(market, "DH1"):
            break
        await market.env.sleep(timedelta(seconds=1))
    await settle(handle)
    sold = await orders(market, "DH1")
    # sized at the highest quote: the least sold
    assert sold and {order.reference_price for order in sold} == {D("33000")}
    [sold] = await audits(market, "DH1", "liquidation")
    assert sold.detail["reason"] == ("LTV 90.91% past the hard floor even at the highest quote "
                                     "$33,000.00 (venues disagree: $30,000.00 to $33,000.00)")
    assert await audits(market, "DH1", "sale_waits_for_agreement") == []


async def test_a_deadline_sale_waits_for_agreement_and_finds_it_in_the_store(
    market: Market,
) -> None:
    handle = await opened(market, "DD1", cure_period_hours=1, reminder_hours=())
    await agreed(market, handle, "42000")  # 71.4%: a call, deadline in an hour
    await wait_state(market, handle, LoanState.MARGIN_CALL)
    # Past the deadline the venues disagree (still a call at either quote): no sale.
    for _ in range(6):
        await market.env.sleep(timedelta(minutes=14))
        await disputed(market, handle, "41000", "43000")
    await settle(handle)
    status = await market.status(handle)
    assert status.state == LoanState.MARGIN_CALL and await orders(market, "DD1") == []
    [waits] = await audits(market, "DD1", "sale_waits_for_agreement")
    assert waits.detail["episode"] == "deadline:1"
    # An agreeing observation is stored (no trigger crossed, so no signal): the loan's re-check
    # reads it and sells at the deadline.
    await market.env.sleep(timedelta(minutes=1))
    await store_observation(market.db, "BTC", D("41500"), await market.now())
    for _ in range(20):
        if await orders(market, "DD1"):
            break
        await market.env.sleep(timedelta(minutes=1))
    await settle(handle)
    [order] = await orders(market, "DD1")
    assert order.reference_price == D("41500")
    [sold] = await audits(market, "DD1", "liquidation")
    assert sold.detail["reason"] == "cure deadline passed"
