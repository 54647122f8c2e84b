"""Aggregation: the median of fresh quotes across venues; stale, insane and outlying quotes
dropped; too few fresh venues means no price; venues that disagree give a disputed price (the
lowest quote, flagged); USDT quotes count only converted at a USDT/USD rate. Includes the
recorded Bitstamp wick of FTX week and the USDT de-peg of the Terra crash."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from loanflow.prices.aggregate import AggregationRules, NoPrice, Priced, aggregate, median
from loanflow.prices.replay import ReplaySource
from loanflow.prices.sources import ManualSource, Quote, gather_quotes

NOW = datetime(2022, 11, 10, 0, 0, tzinfo=timezone.utc)
D = Decimal

def q(venue: str, price: str, age_s: int = 0, asset: str = "BTC") -> Quote:
    return Quote(venue=venue, asset=asset, price=Decimal(price), at=NOW - timedelta(seconds=age_s))

def test_median_odd_and_even_is_exact() -> None:
    assert median([Decimal(3), Decimal(1), Decimal(2)]) == 2
    assert median([Decimal("15877"), Decimal("15922.81")]) == Decimal("15899.905")
    with pytest.raises(ValueError):
        median([])

def test_price_is_the_median_of_fresh_quotes() -> None:
    result = aggregate("BTC", [q("a", "100"), q("b", "100.4"), q("c", "99.9")], NOW)
    assert isinstance(result, Priced)
    assert result.price == Decimal("100")
    assert result.sources == {"a": Decimal("100"), "b": Decimal("100.4"), "c": Decimal("99.9")}

def test_price_is_as_old_as_its_oldest_quote() -> None:
    result = aggregate("BTC", [q("a", "100", age_s=30), q("b", "100", age_s=400)], NOW)
    assert isinstance(result, Priced)
    assert result.observed_at == NOW - timedelta(seconds=400)

def test_stale_quotes_are_dropped_at_the_exact_limit() -> None:
    rules = AggregationRules(staleness_seconds=900)
    quotes = [q("a", "100", age_s=900), q("b", "101", age_s=901), q("c", "100.2")]
    result = aggregate("BTC", quotes, NOW, rules)
    assert isinstance(result, Priced)
    assert [x.venue for x in result.used] == ["a", "c"]  # 900 s old is still fresh
    assert [d.quote.venue for d in result.dropped] == ["b"]
    assert result.dropped[0].reason.startswith("stale")

def test_quotes_from_the_future_are_dropped() -> None:
    result = aggregate("BTC", [q("a", "100"), q("b", "100", age_s=-120)], NOW)
    assert isinstance(result, NoPrice)
    assert "from the future" in result.dropped[0].reason

def test_stale_market_is_no_price_with_the_reason() -> None:
    result = aggregate("BTC", [q("a", "100", age_s=3600), q("b", "100", age_s=3600)], NOW)
    assert isinstance(result, NoPrice)
    assert result.reasons[0] == "only 0 fresh venue quote(s), quorum is 2"

def test_single_venue_is_never_a_price() -> None:
    assert isinstance(aggregate("BTC", [q("a", "100")], NOW), NoPrice)
    # ... not even when that venue sends two quotes: one venue counts once
    result = aggregate("BTC", [q("a", "100", age_s=10), q("a", "100.1")], NOW)
    assert isinstance(result, NoPrice)
    assert "superseded" in result.dropped[0].reason

def test_outlier_is_dropped_and_the_rest_form_the_price() -> None:
    rules = AggregationRules(max_deviation=Decimal("0.01"))
    result = aggregate("BTC", [q("a", "100"), q("b", "100.51"), q("c", "103")], NOW, rules)
    assert isinstance(result, Priced)
    # the median of a and b, 100.255, rounded down; the outlier c dropped
    assert result.price == Decimal("100.25")
    assert [d.quote.venue for d in result.dropped] == ["c"]
    assert result.dropped[0].reason.startswith("outlier: 2.48% from the median $100.51")

def test_outlier_boundary_is_inclusive() -> None:
    rules = AggregationRules(max_deviation=Decimal("0.01"))
    # median 100; 101 is exactly 1% away: kept
    result = aggregate("BTC", [q("a", "99"), q("b", "100"), q("c", "101")], NOW, rules)
    assert isinstance(result, Priced) and len(result.used) == 3

def test_too_few_agreeing_venues_is_a_disputed_price_at_the_lowest_quote() -> None:
    rules = AggregationRules(quorum=3)
    result = aggregate("BTC", [q("a", "100.1"), q("b", "100"), q("c", "110", age_s=60)], NOW,
                       rules)
    assert isinstance(result, Priced) and result.disputed
    # the lowest quote acts (warnings, calls); the range and every venue are kept
    assert (result.price, result.low, result.high) == (D("100"), D("100"), D("110"))
    assert result.sources == {"a": D("100.1"), "b": D("100"), "c": D("110")}
    assert result.observed_at == NOW - timedelta(seconds=60)  # as old as its oldest quote
    assert result.notes[0].startswith("venues disagree: b $100.00 to c $110.00")
    agreed = aggregate("BTC", [q("a", "100")], NOW, AggregationRules(quorum=1))
    assert isinstance(agreed, Priced) and not agreed.disputed and agreed.low is None

def test_other_assets_and_source_problems() -> None:
    result = aggregate("ETH", [q("a", "100"), q("b", "1200", asset="ETH")], NOW,
                       problems=["kraken: HTTP 503"])
    assert isinstance(result, NoPrice)
    assert result.reasons == ("only 1 fresh venue quote(s), quorum is 2", "kraken: HTTP 503")

# --- the recorded wick --------------------------------------------------------------------------

WICK_BAR = datetime(2022, 11, 9, 23, 0, tzinfo=timezone.utc)
PEGGED = AggregationRules(usdt_usd=Decimal(1))

def ftx_highs() -> list[Quote]:
    """Each venue's high of the 2022-11-09 23:00 bar, from the data set, quoted at bar close."""
    source = ReplaySource.for_window("2022-11", field="high")
    return source.quotes_at("BTC", WICK_BAR + timedelta(hours=1))

def test_recorded_wick_bitstamp_16574_against_binance_16000() -> None:
    highs = {quote.venue: quote.price for quote in ftx_highs()}
    assert highs == {"bitstamp": Decimal("16574"), "binance": Decimal("16000")}
    at = WICK_BAR + timedelta(hours=1)
    # Binance quotes in USDT: without a USDT/USD rate it is left out, and one venue is no price.
    result = aggregate("BTC", ftx_highs(), at)
    assert isinstance(result, NoPrice)
    assert "quoted in USDT and no USDT/USD rate" in result.dropped[0].reason
    # At a USDT/USD rate of 1 the two venues are 3.5% apart: each is 1.8% from their midpoint.
    # Nobody can tell which is right: the observation is disputed at the lower quote (calls
    # act on it, no sale does) rather than no price at all.
    result = aggregate("BTC", ftx_highs(), at, PEGGED)
    assert isinstance(result, Priced) and result.disputed
    assert (result.price, result.low, result.high) == (D("16000"), D("16000"), D("16574"))
    # With a third venue agreeing with Binance, the wick alone is the outlier.
    third = Quote(venue="coinbase", asset="BTC", price=Decimal("16010.50"), at=at)
    result = aggregate("BTC", [*ftx_highs(), third], at, PEGGED)
    assert isinstance(result, Priced)
    assert result.price == Decimal("16005.25")
    assert [d.quote.venue for d in result.dropped] == ["bitstamp"]
    assert "outlier: 3.5" in result.dropped[0].reason

def test_the_closes_of_the_same_bar_agree() -> None:
    source = ReplaySource.for_window("2022-11")
    at = WICK_BAR + timedelta(hours=1)
    result = aggregate("BTC", source.quotes_at("BTC", at), at, PEGGED)
    assert isinstance(result, Priced) and not result.disputed
    # (15877 + 15922.81) / 2 = 15899.905, rounded down to the cent like any collateral value
    assert result.price == Decimal("15899.90")

async def test_manual_source_stamps_quotes_without_a_time() -> None:
    source = ManualSource([Quote(venue="desk", asset="BTC", price=Decimal("100")),
                           Quote(venue="desk2", asset="ETH", price=Decimal("10"), at=NOW)])
    quotes, problems = await gather_quotes([source], "BTC", NOW)
    assert problems == [] and quotes[0].at == NOW
    assert [x.asset for x in await source.quotes("ETH", NOW + timedelta(hours=1))] == ["ETH"]

# --- currencies and sane prices ----------------------------------------------------------------


def usdt(venue: str, price: str, age_s: int = 0, asset: str = "BTC") -> Quote:
    return Quote(venue=venue, asset=asset, price=D(price), currency="USDT",
                 at=NOW - timedelta(seconds=age_s))


def test_usdt_quotes_are_converted_at_the_quoted_rate_never_taken_as_dollars() -> None:
    quotes = [q("bitstamp", "25401.05"), usdt("binance", "26700")]
    # No rate: the USDT quote is left out (one venue: no price), whatever a rate is configured
    # to be absent; never counted as 26,700 dollars.
    alone = aggregate("BTC", quotes, NOW)
    assert isinstance(alone, NoPrice) and "USDT" in alone.dropped[0].reason
    # A USDT/USD quote from a source is the rate (the median of the fresh ones, one per venue),
    # and it wins over a configured rate.
    rates = [q("kraken", "0.95", asset="USDT"), q("bitstamp", "0.952", asset="USDT"),
             q("old", "1", age_s=3600, asset="USDT")]
    result = aggregate("BTC", quotes + rates, NOW, AggregationRules(usdt_usd=D("0.9")))
    assert isinstance(result, Priced) and not result.disputed
    binance = {x.venue: x for x in result.used}["binance"]
    assert binance.price == D("26700") * D("0.951") and binance.currency == "USD"
    assert binance.quoted == "26700 USDT at 0.951 USD"
    assert result.notes == ("USDT/USD 0.951 (median of bitstamp,kraken)",)
    # (25401.05 + 25391.7) / 2, down to the cent
    assert result.price == D("25396.37")
    # The configured rate when no source quotes one.
    configured = aggregate("BTC", quotes, NOW, AggregationRules(usdt_usd=D("0.951")))
    assert isinstance(configured, Priced) and configured.price == D("25396.37")
    assert configured.notes == ("USDT/USD 0.951 (configured)",)
    # Another currency is never understood.
    eur = Quote(venue="kraken", asset="BTC", price=D("24000"), currency="EUR", at=NOW)
    other = aggregate("BTC", [q("a", "25400"), eur], NOW)
    assert isinstance(other, NoPrice) and "quoted in EUR" in other.dropped[0].reason


def test_terra_usdt_depeg_is_disputed_at_the_usd_venue_when_usdt_is_taken_at_par() -> None:
    """2022-05-12: Bitstamp's USD low against Binance's USDT one. Taken at a configured 1:1 the
    venues are 5% apart: a disputed observation at the lower (the USD venue's) quote."""
    source = ReplaySource.for_window("2022-05-06", field="low")
    bar = datetime(2022, 5, 12, 7, 0, tzinfo=timezone.utc)
    at = bar + timedelta(hours=1)
    quotes = source.quotes_at("BTC", at)
    prices = {x.venue: (x.price, x.currency) for x in quotes}
    assert prices["bitstamp"][1] == "USD" and prices["binance"][1] == "USDT"
    result = aggregate("BTC", quotes, at, PEGGED)
    assert isinstance(result, Priced) and result.disputed
    assert result.price == min(p for p, _ in prices.values())
    assert result.high == max(p for p, _ in prices.values())


@pytest.mark.parametrize("price", ["1e309", "0", "-5", "1e-9", "99999999999", "5"])
def test_insane_prices_are_dropped_and_the_rest_still_price(price: str) -> None:
    result = aggregate("BTC", [q("a", "16000"), q("b", "16010"), q("bad", price)], NOW)
    assert isinstance(result, Priced) and result.price == D("16005")
    [dropped] = result.dropped
    assert dropped.quote.venue == "bad" and dropped.reason.startswith("not a sane price")


def test_price_bounds_live_in_one_place() -> None:
    from loanflow.money import PRICE_BOUNDS, price_problem

    assert set(PRICE_BOUNDS) >= {"BTC", "ETH", "USDT"}
    assert price_problem("BTC", D("60000")) is None
    assert "outside the sane range of BTC" in (price_problem("BTC", D("1e309")) or "")
    assert "positive, finite" in (price_problem("ETH", D("NaN")) or "")
    assert "no price range" in (price_problem("DOGE", D("1")) or "")
