"""Replay of historical candles (the format of `../shared/data/prices/`, see its README).

Each CSV is one venue's hourly (or minute) OHLCV bars for one asset; `timestamp` is the bar's
open time. A replay at historical time `t` quotes, for every venue, the close of the latest bar
that has *closed* by `t`: the price that venue was showing at `t`, with nothing from the future.
Several venues for the same window (the USD files and `binance-usdt/`) give the several quotes
the aggregation needs.
"""

from __future__ import annotations

import bisect
import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from loanflow.prices.sources import Quote, SourceError

FIELDS = ("open", "high", "low", "close")


def default_data_dir() -> Path:
    """`LOANFLOW_PRICE_DATA` if set, else the shared data set beside the project
    (DESIGN.md: `../shared/data/prices/`)."""
    configured = os.environ.get("LOANFLOW_PRICE_DATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "prices"


def parse_time(text: str) -> datetime:
    """ISO 8601 with a `Z` (or an offset) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r}: a time zone is required (e.g. 2022-11-09T23:00:00Z)")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Candle:
    open_at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal

    def price(self, field: str) -> Decimal:
        return getattr(self, field)  # type: ignore[no-any-return]


@dataclass
class CandleSeries:
    """One venue's bars for one asset, sorted by open time, all of the same length `step`."""

    venue: str
    asset: str
    currency: str
    candles: list[Candle]
    step: timedelta

    def __post_init__(self) -> None:
        self._closes_at = [c.open_at + self.step for c in self.candles]

    @classmethod
    def load(cls, path: Path, venue: str, asset: str, currency: str) -> CandleSeries:
        with open(path, newline="") as handle:
            candles = [_candle(row) for row in csv.DictReader(handle)]
        if len(candles) < 2:
            raise ValueError(f"{path}: need at least two bars to know the bar length")
        step = candles[1].open_at - candles[0].open_at
        return cls(venue, asset, currency, candles, step)

    @property
    def start(self) -> datetime:
        return self.candles[0].open_at

    @property
    def end(self) -> datetime:
        """When the last bar closes."""
        return self._closes_at[-1]

    def last_closed(self, at: datetime) -> Candle | None:
        """The latest bar that has closed by `at` (None before the first one closes)."""
        index = bisect.bisect_right(self._closes_at, at) - 1
        return self.candles[index] if index >= 0 else None


def _candle(row: dict[str, str]) -> Candle:
    return Candle(
        open_at=parse_time(row["timestamp"]),
        open=Decimal(row["open"]),
        high=Decimal(row["high"]),
        low=Decimal(row["low"]),
        close=Decimal(row["close"]),
    )


class ReplaySource:
    """Historical quotes from several venues at once. `quotes(asset, at)` takes a historical
    time and returns each venue's price then, stamped with the close time of its bar (a quote
    from a bar that closed long ago is stale, as it would have been live)."""

    def __init__(self, series: Iterable[CandleSeries], field: str = "close",
                 name: str = "replay") -> None:
        if field not in FIELDS:
            raise ValueError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
        self.name = name
        self.field = field
        self.series = list(series)

    @classmethod
    def for_window(
        cls, window: str, data_dir: Path | None = None, *, venues: Sequence[str] | None = None,
        field: str = "close",
    ) -> ReplaySource:
        return cls(load_window(window, data_dir, venues=venues), field=field,
                   name=f"replay:{window}")

    def assets(self) -> list[str]:
        return sorted({s.asset for s in self.series})

    def span(self, asset: str | None = None) -> tuple[datetime, datetime]:
        """From the first bar's close (the first moment with a price) to the last bar's close,
        over the venues of `asset` (all venues if None)."""
        chosen = [s for s in self.series if asset is None or s.asset == asset]
        if not chosen:
            raise SourceError(f"no replay data for {asset}")
        return min(s.start + s.step for s in chosen), max(s.end for s in chosen)

    def step(self) -> timedelta:
        return min(s.step for s in self.series)

    async def quotes(self, asset: str, now: datetime) -> list[Quote]:
        return self.quotes_at(asset, now)

    def quotes_at(self, asset: str, now: datetime) -> list[Quote]:
        """`quotes`, for callers without an event loop (the files are read up front)."""
        quotes = []
        for series in self.series:
            if series.asset != asset:
                continue
            candle = series.last_closed(now)
            if candle is None:
                continue
            quotes.append(
                Quote(
                    venue=series.venue,
                    asset=asset,
                    price=candle.price(self.field),
                    at=candle.open_at + series.step,
                    currency=series.currency,
                )
            )
        return quotes


@dataclass(frozen=True)
class DataFile:
    path: Path
    asset: str
    venue: str
    currency: str
    window: str
    resolution: str


def manifest(data_dir: Path | None = None) -> list[DataFile]:
    """Every data file listed in the data set's `manifest.csv`."""
    root = data_dir or default_data_dir()
    path = root / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.csv in {root}: is this the price data directory?")
    with open(path, newline="") as handle:
        return [
            DataFile(
                path=root / row["file"],
                asset=row["asset"],
                venue=row["venue"].lower().replace(" ", "-"),
                currency=row["quote"],
                window=row["window"],
                resolution=row["resolution"],
            )
            for row in csv.DictReader(handle)
        ]


def windows(data_dir: Path | None = None) -> list[str]:
    return sorted({f.window for f in manifest(data_dir) if f.resolution == "1h"})


def load_window(
    window: str, data_dir: Path | None = None, *, venues: Sequence[str] | None = None,
    resolution: str = "1h",
) -> list[CandleSeries]:
    """Every venue's series for a window (e.g. `2022-11`), optionally only some venues."""
    files = [f for f in manifest(data_dir) if f.window == window and f.resolution == resolution]
    if venues:
        wanted = {v.lower() for v in venues}
        files = [f for f in files if f.venue in wanted]
    if not files:
        known = ", ".join(windows(data_dir))
        raise FileNotFoundError(f"no {resolution} price data for window {window!r} (known: {known})")
    return [CandleSeries.load(f.path, f.venue, f.asset, f.currency) for f in files]
