"""A venue's public ticker API as a price source.

Two common JSON shapes are built in:

- `bitstamp`: `GET {base}/api/v2/ticker/btcusd/` ->
  `{"timestamp": "1668038399", "last": "15877", "bid": ..., "ask": ..., ...}` (unix seconds)
- `coinbase`: `GET {base}/products/BTC-USD/ticker` ->
  `{"price": "15922.81", "time": "2022-11-09T23:59:59.512Z", "bid": ..., "ask": ..., ...}`

Prices are read as `Decimal` from the JSON text itself (never through a float), and a quote
carries the venue's own timestamp so a venue that stopped updating is seen as stale.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from loanflow.prices.replay import parse_time
from loanflow.prices.sources import Quote, SourceError

Parser = Callable[[dict[str, Any]], tuple[Decimal, datetime]]


def _decimal(value: Any, field: str) -> Decimal:
    # Venues send prices as strings; a bare JSON number is parsed as Decimal by `loads` below,
    # so it never passes through a float either.
    if isinstance(value, bool) or not isinstance(value, (str, Decimal, int)):
        raise SourceError(f"{field}: expected a decimal string, got {value!r}")
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise SourceError(f"{field}: not a number: {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise SourceError(f"{field}: not a positive price: {value!r}")
    return price


def _field(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise SourceError(f"reply has no {name!r} field")
    return body[name]


def parse_bitstamp(body: dict[str, Any]) -> tuple[Decimal, datetime]:
    price = _decimal(_field(body, "last"), "last")
    try:
        seconds = int(str(_field(body, "timestamp")))
    except ValueError:
        raise SourceError(f"timestamp: not unix seconds: {body['timestamp']!r}") from None
    return price, datetime.fromtimestamp(seconds, timezone.utc)


def parse_coinbase(body: dict[str, Any]) -> tuple[Decimal, datetime]:
    price = _decimal(_field(body, "price"), "price")
    try:
        at = parse_time(str(_field(body, "time")))
    except ValueError as err:
        raise SourceError(f"time: {err}") from None
    return price, at


SHAPES: dict[str, tuple[Callable[[str, str], str], Parser]] = {
    "bitstamp": (lambda asset, ccy: f"/api/v2/ticker/{asset.lower()}{ccy.lower()}/", parse_bitstamp),
    "coinbase": (lambda asset, ccy: f"/products/{asset.upper()}-{ccy.upper()}/ticker", parse_coinbase),
}


class HttpTickerSource:
    """One venue's ticker over HTTP(S). `base_url` is the API root (the tests point it at a
    local server replaying recorded replies)."""

    def __init__(self, name: str, shape: str, base_url: str, *, currency: str = "USD",
                 timeout: float = 5.0) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown ticker shape {shape!r}: expected one of {', '.join(SHAPES)}")
        self.name = name
        self.shape = shape
        self.base_url = base_url.rstrip("/")
        self.currency = currency
        self.timeout = timeout

    def url(self, asset: str) -> str:
        path, _ = SHAPES[self.shape]
        return self.base_url + path(asset, self.currency)

    async def quotes(self, asset: str, now: datetime) -> list[Quote]:
        body = await asyncio.to_thread(self._get_json, self.url(asset))
        if not isinstance(body, dict):
            raise SourceError("reply is not a JSON object")
        price, at = SHAPES[self.shape][1](body)
        return [Quote(venue=self.name, asset=asset, price=price, at=at, currency=self.currency)]

    def _get_json(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                       "User-Agent": "loanflow-market-monitor"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as err:
            raise SourceError(f"HTTP {err.code} from {url}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise SourceError(f"cannot reach {url}: {reason}") from None
        try:
            return json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        except (ValueError, UnicodeDecodeError) as err:
            raise SourceError(f"malformed JSON from {url}: {err}") from None
