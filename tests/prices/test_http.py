"""The HTTP venue adapter against recorded ticker replies served by a local HTTP server: prices
come out as exact Decimals with the venue's own time; outages and bad replies are reported as
source problems, never as prices."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loanflow.prices.aggregate import NoPrice, Priced, aggregate
from loanflow.prices.http import HttpTickerSource
from loanflow.prices.sources import SourceError, gather_quotes

RECORDED = Path(__file__).parent / "recorded"
NOW = datetime(2022, 11, 10, 0, 0, 5, tzinfo=timezone.utc)

ROUTES: dict[str, tuple[int, str]] = {
    "/bitstamp/api/v2/ticker/btcusd/": (200, "bitstamp_btcusd.json"),
    "/bitstamp/api/v2/ticker/ethusd/": (200, "bitstamp_ethusd.json"),
    "/wick/api/v2/ticker/btcusd/": (200, "bitstamp_btcusd_wick.json"),
    "/coinbase/products/BTC-USD/ticker": (200, "coinbase_btcusd.json"),
    "/coinbase/products/ETH-USD/ticker": (200, "coinbase_ethusd.json"),
    "/numbers/products/BTC-USD/ticker": (200, "coinbase_btcusd_number.json"),
    "/down/products/BTC-USD/ticker": (503, ""),
    "/garbage/products/BTC-USD/ticker": (200, "README.md"),
}


class Recorded(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        status, name = ROUTES.get(self.path, (404, ""))
        body = (RECORDED / name).read_bytes() if name else b'{"message": "nope"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def venue_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_bitstamp_ticker(venue_url: str) -> None:
    source = HttpTickerSource("bitstamp", "bitstamp", f"{venue_url}/bitstamp")
    assert source.url("BTC").endswith("/bitstamp/api/v2/ticker/btcusd/")
    [quote] = await source.quotes("BTC", NOW)
    assert quote.price == Decimal("15877") and isinstance(quote.price, Decimal)
    assert quote.at == datetime(2022, 11, 9, 23, 59, 59, tzinfo=timezone.utc)
    assert (quote.venue, quote.asset, quote.currency) == ("bitstamp", "BTC", "USD")


async def test_coinbase_ticker(venue_url: str) -> None:
    source = HttpTickerSource("coinbase", "coinbase", f"{venue_url}/coinbase/")
    [quote] = await source.quotes("ETH", NOW)
    assert quote.price == Decimal("1102.73")
    assert quote.at == datetime(2022, 11, 9, 23, 59, 57, 102934, tzinfo=timezone.utc)


async def test_a_json_number_is_read_exactly_too(venue_url: str) -> None:
    source = HttpTickerSource("numbers", "coinbase", f"{venue_url}/numbers")
    [quote] = await source.quotes("BTC", NOW)
    assert quote.price == Decimal("15922.81")  # not 15922.809999999999...
    assert str(quote.price) == "15922.81"


async def test_two_venues_over_http_form_the_price(venue_url: str) -> None:
    sources = [HttpTickerSource("bitstamp", "bitstamp", f"{venue_url}/bitstamp"),
               HttpTickerSource("coinbase", "coinbase", f"{venue_url}/coinbase")]
    quotes, problems = await gather_quotes(sources, "BTC", NOW)
    assert problems == []
    result = aggregate("BTC", quotes, NOW)
    assert isinstance(result, Priced)
    assert result.price == Decimal("15899.90")  # the same as the replay of the same hour
    assert result.observed_at == datetime(2022, 11, 9, 23, 59, 58, 731245, tzinfo=timezone.utc)


async def test_the_recorded_wick_over_http_gives_a_disputed_price(venue_url: str) -> None:
    sources = [HttpTickerSource("bitstamp", "bitstamp", f"{venue_url}/wick"),
               HttpTickerSource("coinbase", "coinbase", f"{venue_url}/coinbase")]
    quotes, _ = await gather_quotes(sources, "BTC", NOW)
    result = aggregate("BTC", quotes, NOW)
    # Two venues 2% apart: flagged, at the lower quote; no sale acts on it.
    assert isinstance(result, Priced) and result.disputed
    assert result.price == result.low == Decimal("15922.81") and result.high == Decimal("16574")
    assert result.notes[0].startswith("venues disagree")


async def test_outages_and_bad_replies_are_problems_not_prices(venue_url: str) -> None:
    down = HttpTickerSource("down", "coinbase", f"{venue_url}/down")
    with pytest.raises(SourceError, match="HTTP 503"):
        await down.quotes("BTC", NOW)
    garbage = HttpTickerSource("garbage", "coinbase", f"{venue_url}/garbage")
    with pytest.raises(SourceError, match="malformed JSON"):
        await garbage.quotes("BTC", NOW)
    missing = HttpTickerSource("missing", "bitstamp", f"{venue_url}/nowhere")
    with pytest.raises(SourceError, match="HTTP 404"):
        await missing.quotes("BTC", NOW)
    closed = HttpTickerSource("closed", "bitstamp", "http://127.0.0.1:9", timeout=1)
    with pytest.raises(SourceError, match="cannot reach"):
        await closed.quotes("BTC", NOW)

    good = HttpTickerSource("bitstamp", "bitstamp", f"{venue_url}/bitstamp")
    quotes, problems = await gather_quotes([good, down, closed], "BTC", NOW)
    assert len(quotes) == 1 and len(problems) == 2
    result = aggregate("BTC", quotes, NOW, problems=problems)
    assert isinstance(result, NoPrice)
    assert result.reasons[1].startswith("down: HTTP 503")


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown ticker shape"):
        HttpTickerSource("x", "kraken", "http://example.invalid")


async def test_stale_venue_is_dropped(venue_url: str) -> None:
    source = HttpTickerSource("bitstamp", "bitstamp", f"{venue_url}/bitstamp")
    [quote] = await source.quotes("BTC", NOW)
    later = NOW + timedelta(minutes=20)
    result = aggregate("BTC", [quote], later)
    assert isinstance(result, NoPrice) and "stale: 20min" in result.dropped[0].reason
