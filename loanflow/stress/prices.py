"""What a stress run prices the book with: a window of the shared data set (`--window`), or any
CSV files in its format (`--prices`), one or more venues per asset.

Files are handed to the market monitor the way the data set is: through a `manifest.csv`. For
`--prices` a private one is written next to the run's database, so the monitor's own replay
reads them (nothing here re-implements how a tick forms a price).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from loanflow.money import ASSETS
from loanflow.prices.aggregate import AggregationRules, NoPrice, Outcome, aggregate
from loanflow.prices.replay import CandleSeries, ReplaySource, default_data_dir, manifest, windows

HOUR = timedelta(hours=1)
FILES_WINDOW = "stress"  # the window name of a private manifest
# btc-usd_2022-11_bitstamp_1h.csv, binance-usdt/eth-usdt_2022-11_binance_1h.csv
FILE_NAME = re.compile(
    r"^(?P<asset>[a-z]+)-(?P<quote>[a-z]+)(?:-[a-z]+)?_[^_]+_(?P<venue>[^_]+)_[0-9a-z]+\.csv$",
    re.IGNORECASE,
)
MANIFEST_FIELDS = ("file", "asset", "quote", "venue", "resolution", "window")


class PriceError(ValueError):
    """Price input that cannot be used; the message names the file or option."""


@dataclass(frozen=True)
class PriceFile:
    path: Path
    asset: str
    venue: str
    currency: str = "USD"


def parse_price_arg(text: str) -> PriceFile:
    """`path` (asset, quote and venue from a data-set file name) or `ASSET:venue=path`."""
    stated = re.match(r"^(?P<asset>[A-Za-z]+):(?P<venue>[^=]+)=(?P<path>.+)$", text)
    path = Path(stated["path"] if stated else text)
    named = FILE_NAME.match(path.name)
    if stated:
        currency = named["quote"].upper() if named else "USD"
        return PriceFile(path, stated["asset"].upper(), stated["venue"].lower(), currency)
    if named is None:
        raise PriceError(
            f"--prices {text}: cannot tell asset and venue from the file name (expected like "
            f"btc-usd_2022-11_bitstamp_1h.csv); state them as BTC:venue={text}")
    return PriceFile(path, named["asset"].upper(), named["venue"].lower(), named["quote"].upper())


@dataclass
class PriceSet:
    """The venues' candles a run replays, and the rules its ticks aggregate them with."""

    name: str                # the manifest window the monitor replays
    data_dir: Path           # where that manifest lives
    series: list[CandleSeries]

    def __post_init__(self) -> None:
        self.source = ReplaySource(self.series)
        assets = self.assets()
        unknown = [a for a in assets if a not in ASSETS]
        if unknown:
            raise PriceError(f"prices: asset {unknown[0]} is not supported (BTC or ETH)")
        for s in self.series:
            if s.step != HOUR:
                raise PriceError(f"prices: {s.asset} at {s.venue}: bars must be hourly, "
                                 f"these are {s.step} apart")
        seen: set[tuple[str, str]] = set()
        for s in self.series:
            if (s.asset, s.venue) in seen:
                raise PriceError(f"prices: two files for {s.asset} at venue {s.venue}")
            seen.add((s.asset, s.venue))
        if self.first_tick > self.last_tick:
            raise PriceError("prices: the assets' files do not overlap in time")

    def assets(self) -> list[str]:
        return sorted({s.asset for s in self.series})

    def venues(self, asset: str) -> list[str]:
        return sorted(s.venue for s in self.series if s.asset == asset)

    @property
    def first_tick(self) -> datetime:
        """The first moment every asset has a closed bar: the window's first tick."""
        return max(self.source.span(a)[0] for a in self.assets())

    @property
    def last_tick(self) -> datetime:
        return min(self.source.span(a)[1] for a in self.assets())

    @property
    def start(self) -> datetime:
        """Where the window begins: the first bar opens (an hour before the first tick)."""
        return self.first_tick - HOUR

    def ticks(self) -> list[datetime]:
        count = int((self.last_tick - self.first_tick) / HOUR) + 1
        return [self.first_tick + i * HOUR for i in range(count)]

    def rules(self) -> AggregationRules:
        """The desk's aggregation rules with the quorum this input can meet."""
        return AggregationRules().model_copy(update={"quorum": quorum(self)})

    def price_at(self, asset: str, at: datetime) -> Outcome:
        """What a tick at `at` forms for `asset` (the monitor's own aggregation)."""
        return aggregate(asset, self.source.quotes_at(asset, at), at, self.rules())

    def first_price(self, asset: str) -> Decimal:
        """The price the book is sized at: the first tick's, or the first hour that has one."""
        first = None
        for at in self.ticks():
            outcome = self.price_at(asset, at)
            if not isinstance(outcome, NoPrice):
                return outcome.price
            first = first or outcome
        why = "; ".join(first.reasons) if first else "no ticks"
        raise PriceError(f"prices: no hour of the window has a {asset} price ({why})")


def quorum(prices: PriceSet) -> int:
    """The one place a stress run decides its quorum: the desk's own, unless fewer venues that
    can count were given for some asset; then what was given is the quorum (one venue: its
    price is the price). A venue counts if it quotes in USD: the aggregation converts a USDT
    quote only with a USDT/USD rate, which the price files do not carry, so a USDT venue beside
    a USD one adds a quote that is left out, not a second vote. Everything else about forming
    a price is the production aggregation's."""
    usd = [sum(1 for s in prices.series if s.asset == a and s.currency == "USD")
           for a in prices.assets()]
    return max(1, min(AggregationRules().quorum, *usd))


def from_window(window: str, data_dir: Path | None = None) -> PriceSet:
    root = data_dir or default_data_dir()
    try:
        known = windows(root)
    except FileNotFoundError as err:
        raise PriceError(str(err)) from None
    if window not in known:
        raise PriceError(f"--window: no window {window!r} in {root / 'manifest.csv'} "
                         f"(known: {', '.join(known)})")
    files = [f for f in manifest(root) if f.window == window and f.resolution == "1h"]
    series = [_load(PriceFile(f.path, f.asset, f.venue, f.currency)) for f in files]
    return PriceSet(window, root, series)


def from_files(files: Sequence[PriceFile], workdir: Path) -> PriceSet:
    """The files as a private data set (a manifest in `workdir`) the monitor can replay."""
    if not files:
        raise PriceError("--prices: no files given")
    series = [_load(f) for f in files]
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for f in files:
            writer.writerow({"file": str(f.path.resolve()), "asset": f.asset,
                             "quote": f.currency, "venue": f.venue, "resolution": "1h",
                             "window": FILES_WINDOW})
    return PriceSet(FILES_WINDOW, workdir, series)


def _load(f: PriceFile) -> CandleSeries:
    if not f.path.is_file():
        raise PriceError(f"prices: {f.path}: no such file")
    try:
        return CandleSeries.load(f.path, f.venue, f.asset, f.currency)
    except KeyError as err:
        raise PriceError(f"prices: {f.path}: missing column {err}") from None
    except (ValueError, ArithmeticError) as err:
        raise PriceError(f"prices: {f.path}: {err}") from None
