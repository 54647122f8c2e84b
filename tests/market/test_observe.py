"""The observe activity against real SQLite and PostgreSQL: observations stored with their
sources, the no-price condition stored with its reasons, a retried tick stores nothing twice,
and the range query on published trigger prices picks exactly the crossed loans."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, select

from activities.market import MarketActivities, crossed_loans
from activities.store import upsert_snapshot
from loanflow.db import Database
from loanflow.prices.aggregate import AggregationRules
from loanflow.prices.messages import FeedSpec, ObserveRequest, ReplayFeed
from loanflow.prices.sources import Quote
from loanflow.prices.triggers import LoanTriggers, select_crossed
from loanflow.schema import MarketTick, PriceObservation
from loanflow.store.prices import store_observation
from tests.market.conftest import book_snapshot

D = Decimal
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def request(seq: int, *prices: str, asset: str = "BTC", **extra: object) -> ObserveRequest:
    venues = ("bitstamp", "coinbase", "kraken")
    quotes = [Quote(venue=v, asset=asset, price=D(p)) for v, p in zip(venues, prices)]
    values: dict[str, object] = {"monitor_id": "m", "chain": "c", "seq": seq, "at": NOW,
                                 "assets": [asset], "manual": quotes}
    values.update(extra)
    return ObserveRequest(**values)  # type: ignore[arg-type]


async def count(db: Database, table: type) -> int:
    async with db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(table)))


async def test_observation_is_stored_with_its_sources(db: Database) -> None:
    market = MarketActivities(db)
    [tick] = (await market.observe(request(1, "20000", "20010", "20030"))).ticks
    assert tick.status == "price" and tick.observation is not None
    assert tick.observation.price == D("20010")
    assert tick.observation.source == "median(bitstamp,coinbase,kraken)"
    async with db.transaction() as s:
        row = await s.get(PriceObservation, tick.observation.observation_id)
        assert row is not None and row.sources == {
            "bitstamp": "20000", "coinbase": "20010", "kraken": "20030"}
        stored = await s.get(MarketTick, tick.tick_id)
        assert stored is not None and stored.observation_id == row.id


async def test_a_retried_tick_stores_nothing_twice(db: Database) -> None:
    market = MarketActivities(db)
    first = await market.observe(request(1, "20000", "20010"))
    again = await market.observe(request(1, "25000", "25010"))  # quotes moved meanwhile
    assert again == first
    assert await count(db, PriceObservation) == 1 and await count(db, MarketTick) == 1


async def test_no_price_condition_is_stored_with_reasons(db: Database) -> None:
    market = MarketActivities(db)
    [tick] = (await market.observe(request(1, "16574"))).ticks
    assert tick.status == "no_price" and tick.observation is None
    assert tick.reasons == ["only 1 fresh venue quote(s), quorum is 2"]
    async with db.transaction() as s:
        row = await s.get(MarketTick, tick.tick_id)
        assert row is not None and row.status == "no_price" and row.observation_id is None
        assert [q["venue"] for q in row.quotes] == ["bitstamp"]
    assert await count(db, PriceObservation) == 0


async def test_venues_that_disagree_store_a_disputed_observation_at_the_lowest(db: Database) -> None:
    async with db.transaction() as s:  # call level 16,100.00
        await upsert_snapshot(s, book_snapshot("L1", "BTC", D("11270"), D(1)))
    market = MarketActivities(db)
    [tick] = (await market.observe(request(1, "16574", "16000",
                                           previous={"BTC": D("16500")}))).ticks
    assert tick.status == "price" and tick.observation is not None
    obs = tick.observation
    assert obs.disputed and (obs.price, obs.low, obs.high) == (D("16000"), D("16000"), D("16574"))
    assert obs.venues == {"bitstamp": D("16574"), "coinbase": D("16000")}
    assert tick.reasons[0].startswith("venues disagree: coinbase $16,000.00 to bitstamp $16,574.00")
    # the lowest quote acts for calls: the move 16,500 -> 16,000 crossed L1's call level
    assert tick.targets == 1
    async with db.transaction() as s:
        row = await s.get(PriceObservation, obs.observation_id)
        assert row is not None and row.disputed and not row.unconfirmed
        assert (row.low, row.high) == (D("16000"), D("16574"))


async def test_usdt_quotes_count_at_the_rate_and_are_left_out_without_one(db: Database) -> None:
    market = MarketActivities(db)
    quotes = [Quote(venue="bitstamp", asset="BTC", price=D("25401.05")),
              Quote(venue="binance", asset="BTC", price=D("26700"), currency="USDT")]
    base = {"monitor_id": "m", "chain": "c", "at": NOW, "assets": ["BTC"]}
    [alone] = (await market.observe(ObserveRequest(seq=1, manual=quotes, **base))).ticks
    assert alone.status == "no_price"
    assert any("quoted in USDT and no USDT/USD rate" in d for d in alone.dropped)
    rate = Quote(venue="kraken", asset="USDT", price=D("0.951"))
    [priced] = (await market.observe(ObserveRequest(seq=2, manual=[*quotes, rate], **base))).ticks
    assert priced.observation is not None and not priced.observation.disputed
    assert priced.observation.price == D("25396.37")  # (25401.05 + 26700 x 0.951) / 2
    async with db.transaction() as s:
        row = await s.get(MarketTick, priced.tick_id)
        assert row is not None
        binance = next(q for q in row.quotes if q["venue"] == "binance")
        assert binance["quoted"] == "26700 USDT at 0.951 USD" and binance["currency"] == "USD"


async def test_an_insane_quote_is_dropped_and_the_tick_still_prices(db: Database) -> None:
    market = MarketActivities(db)
    [tick] = (await market.observe(request(1, "20000", "20010", "1e309"))).ticks
    assert tick.observation is not None and tick.observation.price == D("20005")
    assert tick.dropped == ["kraken: not a sane price: 1E+309 is outside the sane range of BTC "
                            "(10 to 10,000,000 USD)"]


async def test_a_jump_is_stored_unconfirmed_and_signals_nobody_until_confirmed(db: Database) -> None:
    await store_observation(db, "BTC", D("20000"), NOW - timedelta(minutes=1))
    async with db.transaction() as s:  # every trigger between 14,000 and 20,000
        await upsert_snapshot(s, book_snapshot("L1", "BTC", D("11270"), D(1)))
    market = MarketActivities(db)
    [jump] = (await market.observe(request(1, "12000", "12010"))).ticks
    assert jump.status == "unconfirmed" and jump.unconfirmed and jump.targets == 0
    assert jump.reasons[-1].startswith("unconfirmed: 40.0% from the last accepted $20,000.00")
    # the next tick near it confirms the move, measured from the last accepted price
    later = request(2, "12100", "12110").model_copy(update={"at": NOW + timedelta(minutes=1)})
    [confirmed] = (await market.observe(later)).ticks
    assert confirmed.status == "price" and confirmed.previous_price == D("20000")
    assert confirmed.targets == 1
    async with db.transaction() as s:
        flags = [r.unconfirmed for r in await s.scalars(
            select(PriceObservation).order_by(PriceObservation.id))]
    assert flags == [False, True, False]


async def test_replay_feed_plays_history_as_now(db: Database) -> None:
    market = MarketActivities(db)
    history = datetime(2022, 11, 10, 0, 0, tzinfo=timezone.utc)
    feed = FeedSpec(replay=ReplayFeed(window="2022-11"))
    req = ObserveRequest(monitor_id="r", chain="c", seq=1, at=NOW, replay_at=history,
                         assets=["BTC", "ETH"], feed=feed,
                         rules=AggregationRules(usdt_usd=D(1)))  # Binance quotes in USDT
    btc, eth = (await market.observe(req)).ticks
    assert btc.observation is not None and eth.observation is not None
    assert btc.observation.price == D("15899.90") and eth.observation.price == D("1102.66")
    assert btc.observation.observed_at == NOW  # the bar closed exactly at the replayed moment
    async with db.transaction() as s:
        row = await s.get(MarketTick, btc.tick_id)
        assert row is not None and row.replay_at == history


async def test_first_tick_measures_the_move_from_the_stored_price(db: Database) -> None:
    await store_observation(db, "BTC", D("21000"), NOW - timedelta(minutes=1))
    async with db.transaction() as s:
        await upsert_snapshot(s, book_snapshot("L1", "BTC", D("14000"), D(1)))  # call 20,000
    market = MarketActivities(db)
    [tick] = (await market.observe(request(1, "19990", "20000", "20010"))).ticks
    assert tick.previous_price == D("21000") and tick.targets == 1
    async with db.transaction() as s:
        row = await s.get(MarketTick, tick.tick_id)
        assert row is not None and row.targets == {"L1": ["margin_call"]}
    # With the monitor's own previous price, a move that crosses nothing selects nothing.
    [quiet] = (await market.observe(request(2, "19900", "19910", previous={"BTC": D("20000")}))).ticks
    assert quiet.targets == 0


async def test_range_query_selects_exactly_the_crossed_loans(db: Database) -> None:
    rng = random.Random(5)
    book: list[LoanTriggers] = []
    async with db.transaction() as s:
        for i in range(150):
            asset = "BTC" if i % 3 else "ETH"
            amount = D(rng.randint(10_000_000, 500_000_000)) / 10**8
            debt = D(rng.randint(5_000_00, 90_000_00)) / 100
            state = rng.choice(["ACTIVE", "ACTIVE", "MARGIN_CALL", "CLOSED"])
            snap = book_snapshot(f"L{i}", asset, debt, amount, state)
            if state == "CLOSED":  # a closed loan publishes no triggers
                snap = snap.model_copy(update={"warning_price": None, "margin_call_price": None,
                                               "liquidation_price": None, "cure_price": None})
            await upsert_snapshot(s, snap)
            if asset == "BTC":
                book.append(LoanTriggers(snap.loan_id, state, {
                    "warning": snap.warning_price, "margin_call": snap.margin_call_price,
                    "liquidation": snap.liquidation_price, "cure": snap.cure_price}))
    some_trigger = next(b.triggers["margin_call"] for b in book if b.state == "ACTIVE")
    assert some_trigger is not None
    moves = [(D("60000"), D("15000")), (D("15000"), D("60000")), (D("30000"), D("29000")),
             (some_trigger + D("0.01"), some_trigger), (some_trigger, some_trigger - D("0.01")),
             (some_trigger - D("0.01"), some_trigger), (D("20000"), D("20000"))]
    async with db.transaction() as s:
        for old, new in moves:
            expected = select_crossed(book, old, new)
            assert await crossed_loans(s, "BTC", old, new) == expected, (old, new)
    assert select_crossed(book, *moves[0])  # the big moves do select loans


async def test_no_price_periods_are_runs_of_ticks_without_a_price(db: Database) -> None:
    from loanflow.prices.periods import no_price_periods

    market = MarketActivities(db)
    # BTC: price, none, none, price, none (still dark); ETH: none. One tick a minute.
    script = [("BTC", ("20000", "20010")), ("BTC", ("20000",)), ("BTC", ()),
              ("BTC", ("20100", "20110")), ("BTC", ("20200",)), ("ETH", ("1200",))]
    for seq, (asset, prices) in enumerate(script, start=1):
        req = request(seq, *prices, asset=asset).model_copy(
            update={"at": NOW + timedelta(minutes=seq)})
        await market.observe(req)
    at = [NOW + timedelta(minutes=i) for i in range(7)]
    btc = await no_price_periods(db, "BTC")
    assert [(p.start, p.end, p.until, p.ticks) for p in btc] == [
        (at[2], at[3], at[4], 2), (at[5], at[5], None, 1)]
    assert btc[0].reasons == ["only 1 fresh venue quote(s), quorum is 2",
                              "only 0 fresh venue quote(s), quorum is 2"]
    everything = await no_price_periods(db.engine)  # an engine will do too
    assert [(p.asset, p.start) for p in everything] == [
        ("BTC", at[2]), ("BTC", at[5]), ("ETH", at[6])]
    assert [p.start for p in await no_price_periods(db, since=at[4], until=at[5])] == [at[5]]
