"""What the market monitor workflow and its activities exchange (pure pydantic models, safe to
import from workflow code), and the names operators see: the workflow type `MarketMonitor`,
the live monitor's workflow id `market-monitor`, the activities `market_observe` and
`market_fan_out`, the update `tick`, the signal `stop` and the query `progress`."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from loanflow.models import PriceUpdate
from loanflow.money import ASSETS, MAX_CLOCK_SKEW, price_problem
from loanflow.prices.aggregate import USDT, AggregationRules
from loanflow.prices.sources import Quote

MONITOR_WORKFLOW = "MarketMonitor"
LIVE_MONITOR_ID = "market-monitor"


def replay_monitor_id(window: str) -> str:
    return f"market-replay-{window}"


class MarketActivity:
    OBSERVE = "market_observe"
    FAN_OUT = "market_fan_out"


# --- what the monitor reads -------------------------------------------------------------------


class HttpVenue(BaseModel):
    """A venue's public ticker API (see `loanflow.prices.http`)."""

    name: str = Field(min_length=1, max_length=32)
    shape: Literal["bitstamp", "coinbase"]
    base_url: str
    currency: str = "USD"


class ReplayFeed(BaseModel):
    """Historical candles of one window, several venues (see `loanflow.prices.replay`).
    `data_dir` is read by the worker; None means the worker's default."""

    window: str
    venues: list[str] | None = None
    field: Literal["open", "high", "low", "close"] = "close"
    data_dir: str | None = None


class FeedSpec(BaseModel):
    """The sources asked on every scheduled tick. Manual ticks bring their own quotes too."""

    replay: ReplayFeed | None = None
    http: list[HttpVenue] = Field(default_factory=list)


class ReplayPlan(BaseModel):
    """Walk historical time from `start` to `end` (both included) in `step_seconds`, one tick
    per step, `speed` times faster than history (None: as fast as the ticks run).

    `anchor` pins the replay to the server's clock: tick i is due at `anchor + i x pause`
    exactly (not one pause after the previous tick happened to start) and is stamped with that
    time, so history maps onto server time by a fixed offset and every candle is observed at
    its own shifted moment (`loanflow stress`, where the loans' timers run on the same clock).
    Needs a speed."""

    start: datetime
    end: datetime
    step_seconds: int = Field(3600, gt=0)
    speed: Decimal | None = None
    anchor: datetime | None = None

    @field_validator("speed")
    @classmethod
    def _positive(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and (not v.is_finite() or v <= 0):
            raise ValueError("speed must be positive (or omitted for as fast as possible)")
        return v

    @model_validator(mode="after")
    def _anchored_needs_speed(self) -> ReplayPlan:
        if self.anchor is not None and self.speed is None:
            raise ValueError("anchor needs a speed: an anchored replay ticks on a fixed clock")
        return self

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.step_seconds)

    @property
    def total_ticks(self) -> int:
        return int((self.end - self.start) / self.step) + 1

    def at(self, index: int) -> datetime:
        return self.start + index * self.step

    def pause(self) -> timedelta:
        """Time between two ticks."""
        if self.speed is None:
            return timedelta(0)
        return timedelta(seconds=float(Decimal(self.step_seconds) / self.speed))

    def due(self, index: int) -> datetime | None:
        """When tick `index` is due on the server's clock if the plan is anchored (else None:
        each tick is due one pause after the previous one started)."""
        if self.anchor is None:
            return None
        return self.anchor + index * self.pause()


class LastPrice(BaseModel):
    price: Decimal
    observation_id: int
    observed_at: datetime


class DarkPeriod(BaseModel):
    """A run of ticks without a price for one asset (too few fresh venues), for the Web UI.
    `end` is None while it lasts. Times are the ticks' (historical time in a replay)."""

    asset: str
    start: datetime
    end: datetime | None = None
    ticks: int = 1
    reason: str = ""


# The Web UI lists this many of the latest no-price periods (the database keeps them all).
DARK_PERIODS_SHOWN = 5


class MonitorState(BaseModel):
    """Carried across continue-as-new: the tick counter (tick keys), the last price per asset
    (the start of the next crossing band), the replay position and running totals."""

    chain: str | None = None
    seq: int = 0
    last: dict[str, LastPrice] = Field(default_factory=dict)
    replay_index: int = 0
    next_due: datetime | None = None
    runs: int = 1
    priced: int = 0
    no_price: int = 0
    signalled: int = 0
    disputed: int = 0
    unconfirmed: int = 0
    dark: list[DarkPeriod] = Field(default_factory=list)

    def record_dark(self, asset: str, at: datetime, priced: bool, reason: str) -> None:
        """Extend or close the asset's current no-price period (or open a new one)."""
        current = next((d for d in reversed(self.dark) if d.asset == asset), None)
        if priced:
            if current is not None and current.end is None:
                current.end = at
            return
        if current is not None and current.end is None:
            current.ticks += 1
            return
        self.dark.append(DarkPeriod(asset=asset, start=at, reason=reason))
        del self.dark[:-DARK_PERIODS_SHOWN]


class MonitorInput(BaseModel):
    """Start input of `MarketMonitor`. No `interval_seconds` and no `replay`: the monitor only
    ticks when asked (update `tick`)."""

    assets: list[str] = Field(default_factory=lambda: ["BTC", "ETH"])
    feed: FeedSpec = Field(default_factory=FeedSpec)
    interval_seconds: int | None = Field(None, gt=0)
    replay: ReplayPlan | None = None
    rules: AggregationRules = Field(default_factory=AggregationRules)
    fan_out_concurrency: int = Field(64, gt=0, le=1000)
    # Continue as new after this many ticks (Temporal's own suggestion is honoured too).
    ticks_per_run: int = Field(200, gt=0)
    state: MonitorState = Field(default_factory=MonitorState)


class ManualTick(BaseModel):
    """Update `tick`: tick now, with these quotes on top of the monitor's own sources. Only the
    assets named (default: those the quotes are for; all of the monitor's if no quotes).
    Quotes of `USDT` in USD are the USDT/USD rate for venues quoting in USDT."""

    quotes: list[Quote] = Field(default_factory=list, max_length=100)
    assets: list[str] | None = Field(None, max_length=10)

    def problem(self, now: datetime) -> str | None:
        """Why the tick must be refused (naming the field), or None. Checked by the update's
        validator so a bad quote never reaches the monitor's activity."""
        for i, quote in enumerate(self.quotes):
            where = f"quotes[{i}] ({quote.venue} {quote.asset})"
            if quote.asset not in (*ASSETS, USDT):
                return f"{where}.asset: {quote.asset!r} is not supported ({', '.join(ASSETS)})"
            if quote.currency not in ("USD", USDT) or (quote.asset == USDT and quote.currency != "USD"):
                return f"{where}.currency: {quote.currency!r}: a price in USD (or USDT for BTC/ETH)"
            problem = price_problem(quote.asset, quote.price)
            if problem:
                return f"{where}.price: {problem}"
            if quote.at is not None and quote.at - now > MAX_CLOCK_SKEW:
                return (f"{where}.at: {quote.at.isoformat()} is in the future (at most "
                        f"{int(MAX_CLOCK_SKEW.total_seconds())}s ahead of the monitor's clock)")
        return None

    def assets_to_tick(self, default: list[str]) -> list[str]:
        """The assets named, else those the quotes are for (not the USDT rate), else `default`."""
        if self.assets:
            return self.assets
        priced = sorted({q.asset for q in self.quotes if q.asset != USDT})
        return priced or list(default)


# --- monitor <-> activities ---------------------------------------------------------------------


class ObserveRequest(BaseModel):
    monitor_id: str
    chain: str
    seq: int
    at: datetime
    replay_at: datetime | None = None
    assets: list[str]
    previous: dict[str, Decimal] = Field(default_factory=dict)
    feed: FeedSpec = Field(default_factory=FeedSpec)
    manual: list[Quote] = Field(default_factory=list)
    rules: AggregationRules = Field(default_factory=AggregationRules)

    def key(self, asset: str) -> str:
        """The tick's idempotency key: a retried observation stores nothing twice."""
        return f"{self.monitor_id}:{self.chain}:{self.seq}:{asset}"


class AssetTick(BaseModel):
    """One asset's outcome of a tick, as stored (`market_ticks`). `unconfirmed`: the price
    jumped past the limit from the last accepted one; stored, but nobody was signalled and
    it is not the monitor's last price until a second observation confirms it."""

    tick_id: int
    asset: str
    status: Literal["price", "no_price", "unconfirmed"]
    unconfirmed: bool = False
    observation: PriceUpdate | None = None
    previous_price: Decimal | None = None
    reasons: list[str] = Field(default_factory=list)
    used: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    targets: int = 0


class ObserveResult(BaseModel):
    ticks: list[AssetTick]


class FanOutRequest(BaseModel):
    tick_ids: list[int]
    concurrency: int = 64


class FanOutResult(BaseModel):
    signalled: int = 0
    gone: int = 0


class TickSummary(BaseModel):
    seq: int
    at: datetime
    replay_at: datetime | None = None
    ticks: list[AssetTick]
    signalled: int = 0


class MonitorProgress(BaseModel):
    """Query `progress`."""

    state: MonitorState
    mode: str
    total_ticks: int | None = None
    replay_at: datetime | None = None
    done: bool = False
    last: TickSummary | None = None
