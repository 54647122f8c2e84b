"""Replay of historical candles: several venues at once, each quoting the close of the last bar
that has closed (nothing from the future), stamped with that bar's close time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from loanflow.prices.replay import ReplaySource, load_window, manifest, parse_time, windows

UTC = timezone.utc


def test_windows_of_the_data_set() -> None:
    assert windows() == ["2022-05-06", "2022-11", "2023-07"]
    assert {f.venue for f in manifest() if f.window == "2022-11"} >= {"bitstamp", "binance"}


def test_a_window_has_two_venues_per_asset() -> None:
    series = load_window("2022-11")
    by_asset = {(s.asset, s.venue, s.currency) for s in series}
    assert by_asset == {("BTC", "bitstamp", "USD"), ("BTC", "binance", "USDT"),
                        ("ETH", "bitfinex", "USD"), ("ETH", "binance", "USDT")}
    assert all(s.step == timedelta(hours=1) and len(s.candles) == 720 for s in series)


async def test_quotes_are_the_last_closed_bar_of_every_venue() -> None:
    source = ReplaySource.for_window("2022-11")
    bar = datetime(2022, 11, 9, 23, tzinfo=UTC)
    # at 23:59:59 the 23:00 bar is still open: the quotes are the 22:00 bar's closes
    early = await source.quotes("BTC", bar + timedelta(minutes=59, seconds=59))
    assert all(q.at == bar for q in early)
    closed = await source.quotes("BTC", bar + timedelta(hours=1))
    assert {q.venue: q.price for q in closed} == {"bitstamp": Decimal("15877"),
                                                  "binance": Decimal("15922.81")}
    assert {q.currency for q in closed} == {"USD", "USDT"}
    assert all(q.at == bar + timedelta(hours=1) for q in closed)


async def test_before_the_first_bar_closes_there_is_no_quote() -> None:
    source = ReplaySource.for_window("2022-11")
    assert await source.quotes("ETH", datetime(2022, 11, 1, 0, 59, tzinfo=UTC)) == []
    start, end = source.span("ETH")
    assert start == datetime(2022, 11, 1, 1, tzinfo=UTC)
    assert end == datetime(2022, 12, 1, tzinfo=UTC)


async def test_venue_filter_and_field() -> None:
    source = ReplaySource.for_window("2022-11", venues=["Binance"], field="low")
    quotes = await source.quotes("BTC", datetime(2022, 11, 21, 22, tzinfo=UTC))
    assert [(q.venue, q.price) for q in quotes] == [("binance", Decimal("15476"))]
    with pytest.raises(ValueError):
        ReplaySource([], field="median")


def test_unknown_window_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="known: 2022-05-06, 2022-11, 2023-07"):
        load_window("2021-01")
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        load_window("2022-11", tmp_path)


def test_times_need_a_zone() -> None:
    assert parse_time("2022-11-09T23:00:00Z") == datetime(2022, 11, 9, 23, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("2022-11-09T23:00:00")
