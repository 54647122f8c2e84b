"""The market monitor's activities.

`market_observe`: for each asset of a tick, ask the sources, aggregate, and store in one
transaction the observation (if there is a price), the tick row (with the no-price condition
and its reasons if there is none) and the loans whose published trigger prices the move from
the previous price crossed (one range query per trigger kind, each on its own index).

`market_fan_out`: signal `price_update` to each of those loans (`loan-<id>`) through the Temporal
client, with bounded concurrency, and record how many were reached. It signals the list stored
with the tick, so a retry signals at most the same loans again; a loan ignores an observation
that is not newer than the one it has, so a repeated signal changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.support import write_once
from loanflow.db import Database
from loanflow.money import ASSETS, fmt_usd, tidy
from loanflow.prices import jumps
from loanflow.prices.aggregate import USDT, NoPrice, Outcome, Priced, aggregate
from loanflow.prices.http import HttpTickerSource
from loanflow.prices.messages import (
    AssetTick,
    FanOutRequest,
    FanOutResult,
    FeedSpec,
    MarketActivity,
    ObserveRequest,
    ObserveResult,
)
from loanflow.prices.replay import ReplaySource, default_data_dir
from loanflow.prices.sources import PriceSource, Quote, gather_quotes
from loanflow.prices.triggers import (
    SERVING_STATES,
    LoanTriggers,
    band,
    select_crossed,
)
from loanflow.schema import Loan, MarketTick, PriceObservation, utcnow
from loanflow.store.prices import as_update, jump_reference, newest

log = logging.getLogger("loanflow.market")

CENT = Decimal("0.01")
TRIGGER_COLUMNS = {
    "warning": Loan.warning_price,
    "margin_call": Loan.margin_call_price,
    "liquidation": Loan.liquidation_price,
    "cure": Loan.cure_price,
}
# Signal errors worth retrying inside the activity before giving the whole attempt up.
TRANSIENT_RPC = {RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE,
                 RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.ABORTED}
T = TypeVar("T")


class Signaller(Protocol):
    """What the fan-out signals loans through: a Temporal `Client`, or anything else that
    hands out a loan's workflow handle (a stress run reaches loans on several servers)."""

    def get_workflow_handle(self, workflow_id: str) -> WorkflowHandle[Any, Any]: ...


class MarketActivities:
    def __init__(self, db: Database, client: Signaller | None = None, *,
                 data_dir: Path | None = None, http_timeout: float = 5.0) -> None:
        self.db = db
        self.client = client
        self.data_dir = data_dir
        self.http_timeout = http_timeout
        self._replays: dict[tuple[str, str, str, tuple[str, ...]], ReplaySource] = {}

    # --- observe ------------------------------------------------------------------------------

    @activity.defn(name=MarketActivity.OBSERVE)
    async def observe(self, request: ObserveRequest) -> ObserveResult:
        """Form and store this tick's price of each asset (or the no-price condition)."""
        unknown = [a for a in request.assets if a not in ASSETS]
        if unknown:
            raise ApplicationError(f"unknown asset(s) {unknown}", type="UnknownAsset",
                                   non_retryable=True)
        replay, live = self.sources(request.feed)
        ticks = [await self.observe_asset(request, asset, replay, live) for asset in request.assets]
        return ObserveResult(ticks=ticks)

    async def observe_asset(
        self, request: ObserveRequest, asset: str, replay: ReplaySource | None,
        live: Sequence[PriceSource],
    ) -> AssetTick:
        key = request.key(asset)
        stored = await find_tick(self.db, key)
        if stored is not None:
            return stored  # a retry: the tick already happened
        quotes, problems = await self.quotes(request, asset, replay, live)
        outcome = form_price(request, asset, quotes, problems)
        if isinstance(outcome, NoPrice):
            log.warning("no %s price at %s: %s", asset, request.at.isoformat(),
                        "; ".join(outcome.reasons))
        tick, _ = await write_once(
            self.db,
            lambda s: store_tick(s, request, asset, outcome),
            lambda s: _tick_by_key(s, key),
        )
        return tick

    async def quotes(
        self, request: ObserveRequest, asset: str, replay: ReplaySource | None,
        live: Sequence[PriceSource],
    ) -> tuple[list[Quote], list[str]]:
        """The asset's quotes from every source, and the USDT/USD rate quotes if a venue
        quoted the asset in USDT (asked only then: most ticks need no rate)."""
        quotes, problems = await self.quotes_of(request, asset, replay, live)
        if any(q.currency == USDT for q in quotes):
            usd_venues = [s for s in live if getattr(s, "currency", "USD") == "USD"]
            rates, rate_problems = await self.quotes_of(request, USDT, replay, usd_venues)
            quotes += [q for q in rates if q.currency == "USD"]
            problems += [f"USDT/USD rate: {p}" for p in rate_problems]
        return quotes, problems

    async def quotes_of(
        self, request: ObserveRequest, asset: str, replay: ReplaySource | None,
        live: Sequence[PriceSource],
    ) -> tuple[list[Quote], list[str]]:
        quotes, problems = await gather_quotes(live, asset, request.at)
        quotes += [q.stamped(request.at) for q in request.manual if q.asset == asset]
        if replay is not None and request.replay_at is not None:
            # Replayed history is played as if it were happening now: every quote keeps its
            # age relative to the historical moment, so staleness works as it would have.
            shift = request.at - request.replay_at
            for quote in await replay.quotes(asset, request.replay_at):
                assert quote.at is not None
                quotes.append(quote.model_copy(update={"at": quote.at + shift}))
        return quotes, problems

    def sources(self, feed: FeedSpec) -> tuple[ReplaySource | None, list[PriceSource]]:
        live: list[PriceSource] = [
            HttpTickerSource(v.name, v.shape, v.base_url, currency=v.currency,
                             timeout=self.http_timeout)
            for v in feed.http
        ]
        if feed.replay is None:
            return None, live
        spec = feed.replay
        data_dir = Path(spec.data_dir) if spec.data_dir else (self.data_dir or default_data_dir())
        cache_key = (str(data_dir), spec.window, spec.field, tuple(spec.venues or ()))
        if cache_key not in self._replays:  # parsing the CSVs once per worker is plenty
            self._replays[cache_key] = ReplaySource.for_window(
                spec.window, data_dir, venues=spec.venues, field=spec.field
            )
        return self._replays[cache_key], live

    # --- fan-out ------------------------------------------------------------------------------

    @activity.defn(name=MarketActivity.FAN_OUT)
    async def fan_out(self, request: FanOutRequest) -> FanOutResult:
        """Signal every loan the ticks selected; returns how many were reached and how many
        had already ended (a closed loan cannot be signalled and needs nothing)."""
        if self.client is None:
            # Retryable on purpose: a worker started without a client is a deployment mistake
            # an operator can fix; the tick's signals then still go out.
            raise ApplicationError("market_fan_out needs a Temporal client (build_activities("
                                   "..., client=...))", type="NoTemporalClient")
        total = FanOutResult()
        for tick_id in request.tick_ids:
            targets, update_payload = await load_fan_out(self.db, tick_id)
            result = await signal_loans(self.client, targets, update_payload, request.concurrency)
            await record_fan_out(self.db, tick_id, result)
            total.signalled += result.signalled
            total.gone += result.gone
        return total


def form_price(request: ObserveRequest, asset: str, quotes: list[Quote],
               problems: list[str]) -> Outcome:
    """`aggregate`, and never a failed activity whatever a source sent: an input that breaks
    the arithmetic is a tick without a price (with the reason), so the monitor goes on."""
    try:
        return aggregate(asset, quotes, request.at, request.rules, problems)
    except (ArithmeticError, ValueError, OverflowError) as err:
        log.exception("cannot form a %s price at %s", asset, request.at.isoformat())
        reason = f"cannot form a price from these quotes: {type(err).__name__}: {err}"[:500]
        return NoPrice(asset, request.at, (reason, *problems))


# --- storing a tick ---------------------------------------------------------------------------


async def find_tick(db: Database, key: str) -> AssetTick | None:
    async with db.transaction() as session:
        return await _tick_by_key(session, key)


async def _tick_by_key(session: AsyncSession, key: str) -> AssetTick | None:
    row = await session.scalar(select(MarketTick).where(MarketTick.key == key))
    if row is None:
        return None
    observation = None
    if row.observation_id is not None:
        stored = await session.get(PriceObservation, row.observation_id)
        observation = as_update(stored) if stored is not None else None
    return as_asset_tick(row, observation)


async def store_tick(
    session: AsyncSession, request: ObserveRequest, asset: str, outcome: Outcome
) -> AssetTick:
    """The observation, the tick and its target loans, in the caller's transaction."""
    previous = request.previous.get(asset)
    if previous is None:
        previous = await latest_price(session, asset)
    observation, targets, status = None, {}, "no_price"
    reasons = list(outcome.reasons) if isinstance(outcome, NoPrice) else list(outcome.notes)
    if isinstance(outcome, Priced):
        jump = await jump_check(session, request, outcome)
        status = "price" if jump is None else "unconfirmed"
        reasons += [jump] if jump else []
        row = PriceObservation(
            asset=asset, price=outcome.price, observed_at=outcome.observed_at,
            sources={venue: str(price) for venue, price in outcome.sources.items()},
            disputed=outcome.disputed, low=outcome.low, high=outcome.high,
            unconfirmed=jump is not None,
        )
        session.add(row)
        await session.flush()
        observation = as_update(row)
        if jump is None:
            # No earlier price at all: nothing can have been crossed, but a loan past its
            # liquidation level still gets this observation.
            start = previous if previous is not None else outcome.price
            targets = await crossed_loans(session, asset, start, outcome.price)
    tick = MarketTick(
        key=request.key(asset),
        monitor_id=request.monitor_id,
        seq=request.seq,
        asset=asset,
        at=request.at,
        replay_at=request.replay_at,
        status=status,
        observation_id=observation.observation_id if observation is not None else None,
        price=outcome.price if isinstance(outcome, Priced) else None,
        previous_price=previous,
        reasons=reasons,
        quotes=describe_quotes(outcome),
        targets=targets,
        target_count=len(targets),
    )
    session.add(tick)
    await session.flush()
    return as_asset_tick(tick, observation)


async def jump_check(session: AsyncSession, request: ObserveRequest,
                     outcome: Priced) -> str | None:
    """None if the price is acted on now; else why it waits for a confirming observation."""
    last, pending = await jump_reference(session, outcome.asset, outcome.observed_at)
    if jumps.accepted(outcome.price, last, pending, request.rules.max_jump):
        return None
    assert last is not None
    return (f"unconfirmed: {jumps.move(last, outcome.price):.1%} from the last accepted "
            f"{fmt_usd(last)} (limit {request.rules.max_jump:.0%}); not signalled until a second "
            f"observation confirms it")


async def latest_price(session: AsyncSession, asset: str) -> Decimal | None:
    """The newest accepted price: where a monitor's first tick measures its move from."""
    row = await newest(session, asset)
    return None if row is None else row.price


def describe_quotes(outcome: Outcome) -> list[dict[str, Any]]:
    rows = [_quote_row(q, used=True, reason=None) for q in outcome.used]
    rows += [_quote_row(d.quote, used=False, reason=d.reason) for d in outcome.dropped]
    if isinstance(outcome, NoPrice):
        for row in rows:
            row["used"] = False  # nothing was used: there is no price
    return rows


def _quote_row(quote: Quote, *, used: bool, reason: str | None) -> dict[str, Any]:
    return {
        "venue": quote.venue,
        "price": str(quote.price),
        "at": quote.at.isoformat() if quote.at else None,
        "currency": quote.currency,
        "quoted": quote.quoted,
        "used": used,
        "reason": reason,
    }


def as_asset_tick(row: MarketTick, observation: Any) -> AssetTick:
    return AssetTick(
        tick_id=row.id,
        asset=row.asset,
        status=row.status,  # type: ignore[arg-type]
        unconfirmed=row.status == "unconfirmed",
        observation=observation,
        previous_price=None if row.previous_price is None else tidy(row.previous_price),
        reasons=list(row.reasons or []),
        used=[q["venue"] for q in row.quotes if q["used"]],
        dropped=[f"{q['venue']}: {q['reason']}" for q in row.quotes if q["reason"]],
        targets=row.target_count,
    )


# --- which loans a move crosses ---------------------------------------------------------------


async def crossed_loans(
    session: AsyncSession, asset: str, old: Decimal, new: Decimal
) -> dict[str, list[str]]:
    """{loan_id: crossed kinds}: one index range scan per trigger kind that matters for the
    direction of the move (and one for loans still past their liquidation level), then the
    exact Decimal rule of `triggers` on the candidates."""
    # Trigger prices are a NUMERIC that SQLite compares as a float: fetch a cent either side
    # and let the exact rule decide.
    columns = [Loan.loan_id, Loan.state, *TRIGGER_COLUMNS.values()]
    selects = [  # loans at or past their liquidation level: this tick confirms their breach
        select(*columns).where(
            Loan.collateral_asset == asset,
            Loan.liquidation_price >= new - CENT,
            Loan.state.in_(SERVING_STATES),
        )
    ]
    move = band(old, new)
    low = move.low - CENT if move else new
    high = move.high + CENT if move else new
    for kind in move.kinds if move else ():
        # ACTIVE and MARGIN_CALL alike: the read model can lag behind the loan (a cure not yet
        # published), so the monitor does not judge the state; the loan decides.
        column = TRIGGER_COLUMNS[kind]
        selects.append(
            select(*columns).where(
                Loan.collateral_asset == asset,
                column >= low,
                column <= high,
                Loan.state.in_(SERVING_STATES),
            )
        )
    rows = (await session.execute(union_all(*selects))).all()
    loans = {row[0]: _loan_triggers(row) for row in rows}
    return select_crossed(loans.values(), old, new)


def _loan_triggers(row: Any) -> LoanTriggers:
    loan_id, state, *prices = row
    values = dict(zip(TRIGGER_COLUMNS, (None if p is None else Decimal(p) for p in prices)))
    return LoanTriggers(loan_id=loan_id, state=state, triggers=values)


# --- signalling the loans ---------------------------------------------------------------------


async def load_fan_out(db: Database, tick_id: int) -> tuple[list[str], dict[str, Any]]:
    """The loans a tick selected and the `price_update` they get (with the observation id,
    so each loan's decisions record which observation they used)."""
    async with db.transaction() as session:
        tick = await session.get(MarketTick, tick_id)
        if tick is None or tick.observation_id is None:
            raise ApplicationError(f"tick {tick_id} has no observation to send",
                                   type="NoObservation", non_retryable=True)
        observation = await session.get(PriceObservation, tick.observation_id)
        assert observation is not None
        return sorted(tick.targets), as_update(observation).payload()


async def record_fan_out(db: Database, tick_id: int, result: FanOutResult) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(MarketTick)
            .where(MarketTick.id == tick_id)
            .values(signalled=result.signalled, gone=result.gone, fanned_out_at=utcnow())
        )


def loan_workflow_id(loan_id: str) -> str:
    return f"loan-{loan_id}"


async def signal_loans(
    client: Signaller, loan_ids: Sequence[str], payload: dict[str, Any], concurrency: int
) -> FanOutResult:
    """`price_update` to every loan, at most `concurrency` in flight, heartbeating progress."""
    result = FanOutResult()
    beat = Heartbeat()

    async def one(loan_id: str) -> None:
        handle = client.get_workflow_handle(loan_workflow_id(loan_id))
        try:
            await _with_retries(lambda: handle.signal("price_update", payload))
            result.signalled += 1
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            result.gone += 1  # the loan has ended: nothing to tell it
        beat(result.signalled + result.gone)

    await bounded(loan_ids, concurrency, one)
    return result


class Heartbeat:
    """Tell Temporal the fan-out is alive (and how far it got) about once a second."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every and activity.in_activity():
            self.last = now
            activity.heartbeat(done)


async def _with_retries(call: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
    """A rate-limited or briefly unavailable server is waited out here, loan by loan, rather
    than by retrying the whole fan-out."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return await call()
        except RPCError as err:
            if err.status not in TRANSIENT_RPC or attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


async def bounded(
    items: Iterable[T], concurrency: int, work: Callable[[T], Awaitable[None]]
) -> None:
    """Run `work` on every item with at most `concurrency` running at once: a fixed pool of
    runners pulling from one iterator (no task per item waiting on a semaphore)."""
    pending = iter(items)

    async def runner() -> None:
        for item in pending:
            await work(item)

    await asyncio.gather(*(runner() for _ in range(max(concurrency, 1))))
