"""The market monitor workflow on the time-skipping server: it signals exactly the loans whose
published trigger prices a tick crossed, with the observation id; a tick that crosses nothing
runs no fan-out and wakes nobody; a market without a price is stored and shown; a replay walks
history; the monitor continues as new without losing its place."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from loanflow.prices.aggregate import AggregationRules
from loanflow.prices.messages import (
    FeedSpec,
    ManualTick,
    MonitorInput,
    MonitorProgress,
    ReplayFeed,
    ReplayPlan,
    TickSummary,
)
from loanflow.prices.periods import no_price_periods
from loanflow.prices.sources import Quote
from loanflow.schema import MarketTick
from tests.market.conftest import Market
from workflows.market import MarketMonitor

D = Decimal
UTC = timezone.utc
# Binance quotes the data set's windows in USDT; these tests take it at par, said out loud.
PEGGED = AggregationRules(usdt_usd=D(1))


async def received(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    return await handle.query("prices")  # type: ignore[no-any-return]


async def fan_outs(monitor: WorkflowHandle[Any, Any]) -> int:
    """How many fan-out activities the monitor's current run scheduled."""
    count = 0
    async for event in monitor.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == "market_fan_out":
                count += 1
    return count


async def test_monitor_signals_exactly_the_crossed_loans(market: Market) -> None:
    # 1 BTC each. A: call at 20,000.00. B: warning at 20,000.00, call at 18,571.42. C: warning
    # at 16,923.07, below the move. D: A's levels, and the read model says it is already in a
    # call: signalled all the same (the read model can lag; the loan decides). E: an ETH loan.
    loans = {"A": ("BTC", "14000"), "B": ("BTC", "13000"), "C": ("BTC", "11000"),
             "D": ("BTC", "14000"), "E": ("ETH", "1400")}
    handles = {}
    for loan_id, (asset, debt) in loans.items():
        handles[loan_id] = await market.recorder(loan_id)
        await market.publish(loan_id, asset, debt,
                             state="MARGIN_CALL" if loan_id == "D" else "ACTIVE")
    monitor = await market.start_monitor()

    first = await market.tick(monitor, "BTC", "21000", "21000.50", "20999.50")
    assert first.signalled == 0 and first.ticks[0].previous_price is None  # nothing stored yet
    crash = await market.tick(monitor, "BTC", "18500", "18510", "18490")
    [btc] = crash.ticks
    assert btc.previous_price == D("21000") and btc.observation is not None
    assert crash.signalled == 3 and btc.targets == 3
    for loan_id in ("A", "B", "D"):
        [update] = await received(handles[loan_id])
        # the plain contract: an agreed price carries no dispute fields
        assert update == {"asset": "BTC", "price": "18500", "observed_at": update["observed_at"],
                          "source": "median(bitstamp,coinbase,kraken)",
                          "observation_id": btc.observation.observation_id}
    for loan_id in ("C", "E"):
        assert await received(handles[loan_id]) == []

    async with market.db.transaction() as s:
        row = await s.get(MarketTick, btc.tick_id)
        assert row is not None and row.targets == {"A": ["margin_call"],
                                                 "B": ["warning", "margin_call"],
                                                 "D": ["margin_call"]}
        assert (row.signalled, row.gone) == (3, 0)


async def test_a_tick_that_crosses_nothing_wakes_no_loan(market: Market) -> None:
    handle = await market.recorder("Q")
    await market.publish("Q", "BTC", "14000")  # call 20,000, warning 21,538.46, cure 23,333.33
    monitor = await market.start_monitor()
    await market.tick(monitor, "BTC", "22000", "22000")
    before = await fan_outs(monitor)
    for price in ("21900", "22500", "21600", "23000"):
        summary = await market.tick(monitor, "BTC", price, price)
        assert summary.signalled == 0 and summary.ticks[0].targets == 0
    assert await fan_outs(monitor) == before  # no fan-out activity at all
    assert await received(handle) == []
    # ...and the next tick that does cross reaches the loan, measured from the last price
    summary = await market.tick(monitor, "BTC", "21000", "21000")
    assert summary.ticks[0].previous_price == D("23000") and summary.signalled == 1
    assert [u["price"] for u in await received(handle)] == ["21000"]


async def test_no_price_is_stored_and_visible_and_the_next_move_spans_it(market: Market) -> None:
    handle = await market.recorder("N")
    await market.publish("N", "BTC", "14000")
    monitor = await market.start_monitor()
    await market.tick(monitor, "BTC", "22000", "22010")
    dark = await market.tick(monitor, "BTC", "19000")  # one venue only
    [tick] = dark.ticks
    assert tick.status == "no_price" and tick.reasons[0].startswith("only 1 fresh venue")
    progress = await monitor.query("progress", result_type=MonitorProgress)
    assert progress.state.no_price == 1 and progress.last is not None
    description = await monitor.describe()
    details = description.raw_description.execution_config.user_metadata.details
    assert details is not None  # the Web UI's current details name the condition
    async with market.db.transaction() as s:
        rows = (await s.scalars(select(MarketTick).order_by(MarketTick.id))).all()
        assert [r.status for r in rows] == ["price", "no_price"]
    assert await received(handle) == []  # nothing acts without a price
    back = await market.tick(monitor, "BTC", "19000", "19005")
    assert back.ticks[0].previous_price == D("22005") and back.signalled == 1


async def test_signal_to_an_ended_loan_counts_as_gone(market: Market) -> None:
    handle = await market.recorder("G")
    await market.publish("G", "BTC", "14000")
    await handle.signal("finish")
    await handle.result()
    monitor = await market.start_monitor()
    await market.tick(monitor, "BTC", "22000", "22000")
    crash = await market.tick(monitor, "BTC", "19000", "19000")
    assert crash.signalled == 0
    async with market.db.transaction() as s:
        row = await s.get(MarketTick, crash.ticks[0].tick_id)
        assert row is not None and (row.signalled, row.gone) == (0, 1)


async def test_replay_walks_history_and_continues_as_new(market: Market) -> None:
    handle = await market.recorder("R")
    # 1 BTC for $13,000: warning at 20,000.00, margin call at 18,571.42. At 18:00 the bar of
    # 17:00 has closed at 19,341.33 (median): warning crossed; at 20:00 the 19:00 bar's
    # 18,268.32 crosses the call level; the other ticks cross nothing.
    await market.publish("R", "BTC", "13000")
    plan = ReplayPlan(start=datetime(2022, 11, 8, 17, tzinfo=UTC),
                      end=datetime(2022, 11, 8, 22, tzinfo=UTC), speed=D(3600))
    spec = MonitorInput(assets=["BTC"], feed=FeedSpec(replay=ReplayFeed(window="2022-11")),
                        replay=plan, ticks_per_run=2, rules=PEGGED)
    monitor = await market.start_monitor(spec, monitor_id="market-replay-2022-11")
    progress: MonitorProgress = await monitor.result()
    assert progress.done and progress.state.seq == 6 and progress.state.replay_index == 6
    assert progress.state.runs == 3  # 2 ticks per run
    assert progress.state.signalled == 2
    assert progress.replay_at == datetime(2022, 11, 8, 22, tzinfo=UTC)
    updates = await received(handle)
    assert [u["price"] for u in updates] == ["19341.33", "18268.32"]
    async with market.db.transaction() as s:
        rows = (await s.scalars(select(MarketTick).order_by(MarketTick.seq))).all()
    assert [r.replay_at.hour for r in rows] == [17, 18, 19, 20, 21, 22]  # type: ignore[union-attr]
    assert len({r.key for r in rows}) == 6
    # one simulated hour per real second: ticks one second apart on the workflow clock
    assert timedelta(seconds=1) <= rows[1].at - rows[0].at < timedelta(seconds=2)


async def test_stop_ends_a_manual_monitor_after_its_last_tick(market: Market) -> None:
    monitor = await market.start_monitor()
    await market.tick(monitor, "ETH", "1200", "1201")
    await monitor.signal("stop")
    progress: MonitorProgress = await monitor.result()
    assert progress.done and progress.state.seq == 1 and progress.state.priced == 1
    assert progress.mode == "manual" and progress.last is not None


async def details(monitor: WorkflowHandle[Any, Any]) -> str:
    """The monitor's current details, through the query the Web UI itself asks."""
    from temporalio.api.sdk.v1 import WorkflowMetadata

    metadata = await monitor.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def test_a_bad_tick_is_refused_and_the_monitor_keeps_ticking(market: Market) -> None:
    monitor = await market.start_monitor()
    await market.tick(monitor, "ETH", "1200", "1201")
    future = await market.now() + timedelta(days=3650)  # by the monitor's own clock
    bad = [
        ([Quote(venue="a", asset="ETH", price=D("1e309"))], "quotes[0] (a ETH).price: 1E+309 is "
                                                              "outside the sane range of ETH"),
        ([Quote(venue="a", asset="BTC", price=D("0.5"))], "quotes[0] (a BTC).price"),
        ([Quote(venue="a", asset="BTC", price=D("60000"), at=future)], "quotes[0] (a BTC).at: "),
        ([Quote(venue="a", asset="BTC", price=D("60000"), currency="EUR")], ".currency"),
    ]
    for quotes, message in bad:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await monitor.execute_update("tick", ManualTick(quotes=quotes), result_type=TickSummary)
        assert err.value.cause is not None and message in err.value.cause.message
    # Nothing of them was stored, and the next tick completes as usual.
    good = await market.tick(monitor, "ETH", "1190", "1191")
    assert good.seq == 2 and good.ticks[0].observation is not None
    progress = await monitor.query("progress", result_type=MonitorProgress)
    assert progress.state.seq == 2 and progress.state.priced == 2


async def test_disputed_no_price_and_unconfirmed_ticks_are_shown(market: Market) -> None:
    handle = await market.recorder("V")
    await market.publish("V", "BTC", "14000")  # call at 20,000.00
    monitor = await market.start_monitor()
    await market.tick(monitor, "BTC", "21000", "21010")
    # Venues 5% apart: a disputed price at the lowest quote, and the loan is told (call level).
    disputed = await market.tick(monitor, "BTC", "19500", "20500")
    [tick] = disputed.ticks
    assert tick.observation is not None and tick.observation.disputed
    assert disputed.signalled == 1
    [update] = await received(handle)
    assert (update["price"], update["disputed"], update["low"], update["high"]) == (
        "19500", True, "19500", "20500")
    assert "BTC $19,500.00 DISPUTED** (low $19,500.00, high $20,500.00" in await details(monitor)
    # One venue: no price; the Web UI lists the period until a price is back.
    await market.tick(monitor, "BTC", "19400")
    await market.tick(monitor, "BTC", "19300")
    shown = await details(monitor)
    assert "**no-price periods** (2 tick(s) without a price in all)" in shown
    assert "2 tick(s): only 1 fresh venue quote(s), quorum is 2" in shown
    assert "still no price" in shown
    # A 40% jump: stored unconfirmed, nobody signalled, not the monitor's last price.
    jump = await market.tick(monitor, "BTC", "11700", "11710")
    assert jump.ticks[0].unconfirmed and jump.signalled == 0
    progress = await monitor.query("progress", result_type=MonitorProgress)
    assert progress.state.last["BTC"].price == D("19500") and progress.state.unconfirmed == 1
    assert "UNCONFIRMED" in await details(monitor) and "still no price" not in await details(monitor)
    periods = await no_price_periods(market.db, "BTC")
    [period] = [p for p in periods if p.monitor_id == monitor.id]
    assert period.ticks == 2 and period.until is not None and period.until > period.end


def test_a_replay_is_not_done_while_its_last_tick_is_still_observing() -> None:
    """`market replay` prints its totals once the query says done: the last tick has counted
    its index before it observes, so "done" must wait for that tick to remember its prices
    (it once printed "6 prices" of 8)."""
    plan = ReplayPlan(start=datetime(2022, 11, 8, 17, tzinfo=UTC),
                      end=datetime(2022, 11, 8, 18, tzinfo=UTC), speed=D(3600))
    monitor = MarketMonitor(MonitorInput(assets=["BTC"], replay=plan,
                                         feed=FeedSpec(replay=ReplayFeed(window="2022-11"))))
    monitor.state.replay_index = plan.total_ticks
    monitor._ticking = True  # between the last tick's observe and what it remembers
    assert not monitor.progress().done
    monitor._ticking = False
    assert monitor.progress().done
