"""Price sources: one interface for every place a quote can come from.

A `Quote` is one venue's price for one asset at one moment. A `PriceSource` answers "what do
your venues quote for this asset now?"; the market monitor asks each of its sources on every
tick and `aggregate` forms the price. Built in: `ManualSource` (quotes typed by an operator or a
script), `replay.ReplaySource` (historical candles) and `http.HttpTickerSource` (a venue's public
ticker API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator


class Quote(BaseModel):
    """One venue's price. `at` is when the venue quoted it (None: "as of the tick", filled in by
    the monitor). `currency` is what the price is quoted in: USD, or USDT on venues that
    only quote against the stablecoin. A USDT price is converted to USD with a USDT/USD rate
    before it counts, never taken as dollars (`aggregate`); `quoted` then keeps what the venue
    said. A quote for the asset `USDT` in USD is such a rate."""

    venue: str = Field(min_length=1, max_length=64)
    asset: str = Field(min_length=1, max_length=8)
    price: Decimal
    at: datetime | None = None
    currency: str = Field("USD", min_length=1, max_length=8)
    quoted: str | None = Field(None, max_length=128)

    @field_validator("price")
    @classmethod
    def _finite(cls, v: Decimal) -> Decimal:
        if not v.is_finite():
            raise ValueError("must be a finite number")
        return v

    @field_validator("at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None:
            raise ValueError("must carry a time zone (UTC)")
        return v.astimezone(timezone.utc)

    def stamped(self, at: datetime) -> Quote:
        """This quote with its time filled in (manual quotes without a time are 'now')."""
        return self if self.at is not None else self.model_copy(update={"at": at})


class SourceError(Exception):
    """A source could not answer (a venue down, a malformed reply). The tick goes on with the
    other sources; the message is kept with the tick so operators can see why."""


@runtime_checkable
class PriceSource(Protocol):
    name: str

    async def quotes(self, asset: str, now: datetime) -> list[Quote]:
        """The venue quotes for `asset` as of `now` (empty if the source has none). Raises
        SourceError if the source cannot answer."""
        ...


class ManualSource:
    """Quotes given by hand: an operator's `loanflow market tick`, a test, the benchmark."""

    def __init__(self, quotes: Iterable[Quote] = (), name: str = "manual") -> None:
        self.name = name
        self._quotes: list[Quote] = list(quotes)

    def add(self, quote: Quote) -> None:
        self._quotes.append(quote)

    async def quotes(self, asset: str, now: datetime) -> list[Quote]:
        return [q.stamped(now) for q in self._quotes if q.asset == asset]


async def gather_quotes(
    sources: Sequence[PriceSource], asset: str, now: datetime
) -> tuple[list[Quote], list[str]]:
    """Ask every source at once; returns (quotes, problems). A source that fails is a problem,
    not a crash: the price is formed from the others, if enough are left."""
    answers = await asyncio.gather(
        *(source.quotes(asset, now) for source in sources), return_exceptions=True
    )
    quotes: list[Quote] = []
    problems: list[str] = []
    for source, answer in zip(sources, answers):
        if isinstance(answer, SourceError):
            problems.append(f"{source.name}: {answer}")
        elif isinstance(answer, BaseException):
            raise answer  # a bug, not an outage: let the activity fail and show it
        else:
            quotes.extend(answer)
    return quotes, problems
