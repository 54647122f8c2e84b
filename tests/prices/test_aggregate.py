"""Aggregation: the median of fresh quotes across venues; stale and outlying quotes dropped;
too few venues left means no price. Includes the recorded Bitstamp wick of FTX week."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from loanflow.prices.aggregate import AggregationRules, NoPrice, Priced, aggregate, median
from loanflow.prices.replay import ReplaySource
from loanflow.prices.sources import ManualSource, Quote, gather_quotes

NOW = datetime(2022, 11, 10, 0, 0, tzinfo=timezone.utc)

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
    assert result.dropped[0].reason.startswith("outlier: 2.48% from the median 100.51")

def test_outlier_boundary_is_inclusive() -> None:
    rules = AggregationRules(max_deviation=Decimal("0.01"))
    # median 100; 101 is exactly 1% away: kept
    result = aggregate("BTC", [q("a", "99"), q("b", "100"), q("c", "101")], NOW, rules)
    assert isinstance(result, Priced) and len(result.used) == 3

def test_quorum_after_outliers() -> None:
    rules = AggregationRules(quorum=3)
    result = aggregate("BTC", [q("a", "100"), q("b", "100.1"), q("c", "110")], NOW, rules)
    assert isinstance(result, NoPrice)
    assert result.reasons[0].startswith("venues disagree: 2 of 3 quotes")
    assert isinstance(aggregate("BTC", [q("a", "100")], NOW, AggregationRules(quorum=1)), Priced)

def test_other_assets_and_source_problems() -> None:
    result = aggregate("ETH", [q("a", "100"), q("b", "1200", asset="ETH")], NOW,
                       problems=["kraken: HTTP 503"])
    assert isinstance(result, NoPrice)
    assert result.reasons == ("only 1 fresh venue quote(s), quorum is 2", "kraken: HTTP 503")

# --- the recorded wick --------------------------------------------------------------------------

WICK_BAR = datetime(2022, 11, 9, 23, 0, tzinfo=timezone.utc)

def ftx_highs() -> list[Quote]:
    """Each venue's high of the 2022-11-09 23:00 bar, from the data set, quoted at bar close."""
    source = ReplaySource.for_window("2022-11", field="high")
    return source.quotes_at("BTC", WICK_BAR + timedelta(hours=1))

def test_recorded_wick_bitstamp_16574_against_binance_16000() -> None:
    highs = {quote.venue: quote.price for quote in ftx_highs()}
    assert highs == {"bitstamp": Decimal("16574"), "binance": Decimal("16000")}
    at = WICK_BAR + timedelta(hours=1)
    # Two venues 3.5% apart: each is 1.8% from their midpoint. Nobody can tell which is right,
    # so there is no price and nothing acts on the wick.
    result = aggregate("BTC", ftx_highs(), at)
    assert isinstance(result, NoPrice)
    assert result.reasons[0].startswith("venues disagree")
    # With a third venue agreeing with Binance, the wick alone is the outlier.
    third = Quote(venue="coinbase", asset="BTC", price=Decimal("16010.50"), at=at)
    result = aggregate("BTC", [*ftx_highs(), third], at)
    assert isinstance(result, Priced)
    assert result.price == Decimal("16005.25")
    assert [d.quote.venue for d in result.dropped] == ["bitstamp"]
    assert "outlier: 3.5" in result.dropped[0].reason

def test_the_closes_of_the_same_bar_agree() -> None:
    source = ReplaySource.for_window("2022-11")
    at = WICK_BAR + timedelta(hours=1)
    result = aggregate("BTC", source.quotes_at("BTC", at), at)
    assert isinstance(result, Priced)
    # (15877 + 15922.81) / 2 = 15899.905, rounded down to the cent like any collateral value
    assert result.price == Decimal("15899.90")

async def test_manual_source_stamps_quotes_without_a_time() -> None:
    source = ManualSource([Quote(venue="desk", asset="BTC", price=Decimal("100")),
                           Quote(venue="desk2", asset="ETH", price=Decimal("10"), at=NOW)])
    quotes, problems = await gather_quotes([source], "BTC", NOW)
    assert problems == [] and quotes[0].at == NOW
    assert [x.asset for x in await source.quotes("ETH", NOW + timedelta(hours=1))] == ["ETH"]
