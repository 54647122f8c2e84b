"""A crafted price path (one venue, hourly bars) on which the default policy's outcomes can be
worked out by hand, and the small book that runs through it."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)  # the first bar opens; the first tick is at T0 + 1 h
HOUR = timedelta(hours=1)


def crafted_closes() -> list[Decimal]:
    """BTC 20,000 for 7 hours, 17,000 for 65 (a 60% loan goes to 70.6%: called, never cured,
    sold at its deadline), 13,500 for 10 and 10,000 for 10. Every move is under the desk's 30%
    jump limit, so each price is believed on its first tick. No sale falls within minutes of a
    whole day since the book's origination, so the days of interest charged are clear-cut."""
    return ([Decimal(20000)] * 7 + [Decimal(17000)] * 65 + [Decimal(13500)] * 10
            + [Decimal(10000)] * 10)


def tick_at(bar: int) -> datetime:
    """When bar `bar`'s close is observed: the tick at its close."""
    return T0 + (bar + 1) * HOUR


def write_bars(path: Path, closes: list[Decimal]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for i, close in enumerate(closes):
            at = (T0 + i * HOUR).isoformat().replace("+00:00", "Z")
            writer.writerow([at, close, close, close, close, "1"])
    return path


@pytest.fixture
def crafted_prices(tmp_path: Path) -> Path:
    """A file named the way the data set names its files: asset and venue come from it."""
    return write_bars(tmp_path / "btc-usd_2024-01_testvenue_1h.csv", crafted_closes())
