"""`loanflow market ...`: drive and watch the market monitor.

    loanflow market replay --live --usdt-usd 1 --window 2022-11 --speed 3600   # on THIS desk
    loanflow market replay --live --window 2022-11 --from 2022-11-08T00:00Z --to 2022-11-10T00:00Z
    loanflow market tick BTC --quote bitstamp=16000 --quote coinbase=16010
    loanflow market status
    loanflow market start --interval 60 --venue bitstamp=bitstamp:https://www.bitstamp.net \\
                          --venue coinbase=coinbase:https://api.exchange.coinbase.com
    loanflow market stop

Exported as `market_app` (a Typer app) for the root command to mount.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import typer
from rich.console import Console

from loanflow import event_loop
from loanflow.cli.output import number, print_json, usd
from loanflow.cli.params import AsJson
from loanflow.prices.aggregate import AggregationRules
from loanflow.prices.messages import (
    LIVE_MONITOR_ID,
    FeedSpec,
    HttpVenue,
    ManualTick,
    MonitorInput,
    MonitorProgress,
    ReplayFeed,
    ReplayPlan,
    TickSummary,
    replay_monitor_id,
)
from loanflow.prices.replay import parse_time
from loanflow.prices.sources import Quote
from loanflow.settings import SettingsError, get_settings

market_app = typer.Typer(
    name="market",
    help="Market data: replay history, tick by hand, watch the price and the no-price condition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
T = TypeVar("T")


class MarketCliError(Exception):
    """A failure the operator can act on; printed as one line."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    try:
        return event_loop.run(coro)
    except (MarketCliError, SettingsError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except WorkflowUpdateFailedError as err:  # the monitor's validator refused the tick
        cause = err.cause.message if err.cause is not None else str(err)
        typer.secho(f"error: {cause}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except RPCError as err:
        from loanflow.failures import temporal_problem

        typer.secho(f"error: {temporal_problem(err) or f'Temporal: {err}'}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def client() -> Any:
    from loanflow.failures import StartupError
    from loanflow.temporal_client import connect, require_namespace

    try:
        connected = await connect()
        await require_namespace(connected)
        return connected
    except (SettingsError, StartupError):
        raise  # no usable payload key, a server out of reach: each its own line
    except Exception as err:  # the SDK raises several kinds for "cannot connect"
        raise MarketCliError(f"cannot reach Temporal: {err}") from None


# --- replay -----------------------------------------------------------------------------------


@market_app.command()
def replay(
    window: str = typer.Option(..., "--window", help="Data window, e.g. 2022-11, 2022-05-06, 2023-07."),
    start: str = typer.Option(None, "--from", metavar="TIME", help="First historical moment (ISO 8601 UTC)."),
    end: str = typer.Option(None, "--to", metavar="TIME", help="Last historical moment (ISO 8601 UTC)."),
    speed: str = typer.Option("3600", help="Times faster than history (3600: an hour a second), or 'max'."),
    assets: str = typer.Option("BTC,ETH", help="Comma-separated assets."),
    venues: str = typer.Option(None, help="Only these venues (comma-separated), e.g. bitstamp,binance."),
    usdt_usd: str = typer.Option(None, "--usdt-usd", help="USDT/USD rate for venues quoting in "
                                 "USDT (the data set has none); without it they are left out."),
    live: bool = typer.Option(False, "--live", help="Yes, replay into THIS desk: its loans act "
                              "on the historical prices as if they were today's."),
    detach: bool = typer.Option(False, "--detach", help="Start it and return; it runs in Temporal."),
    as_json: AsJson = False,
) -> None:
    """Drive this desk's market monitor through a historical window, with a progress bar.
    Refused without --live: for what-if questions use `loanflow stress`. With --json no bar:
    one JSON object once the replay is done (or started, with --detach)."""
    if not live:
        typer.secho(f"error: {LIVE_REFUSAL}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    plan = replay_plan(window, start, end, speed, venues)
    spec = MonitorInput(
        assets=[a.strip().upper() for a in assets.split(",") if a.strip()],
        feed=FeedSpec(replay=ReplayFeed(window=window, venues=split(venues))),
        replay=plan,
        rules=AggregationRules(usdt_usd=parse_rate(usdt_usd)),
    )
    notes = usdt_notes(window, venues, spec.rules.usdt_usd)
    if not as_json:
        for note in notes:
            console.print(note)
    answer = run(start_replay(replay_monitor_id(window), spec, detach, as_json))
    if as_json:
        print_json({**answer, "notes": notes})


LIVE_REFUSAL = (
    "market replay feeds the window's historical prices to THIS desk (its Temporal and its "
    "database) as if they were today's: every open loan acts on them (run unasked, it sold "
    "live loans at 2022 prices). For what-if questions use `loanflow stress`, which runs the "
    "same workflows on a private server and database; pass --live only on a desk meant for it.")


def parse_rate(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return AggregationRules(usdt_usd=Decimal(text)).usdt_usd
    except (InvalidOperation, ValueError) as err:
        message = str(err).splitlines()[-1] if isinstance(err, ValueError) else "not a number"
        raise typer.BadParameter(f"--usdt-usd {text!r}: {message}") from None


def usdt_notes(window: str, venues: str | None, rate: Decimal | None) -> list[str]:
    """Say up front which venues quote in USDT and what becomes of them."""
    from loanflow.prices.replay import ReplaySource

    source = ReplaySource.for_window(window, venues=split(venues))
    in_usdt = sorted({f"{s.venue} ({s.asset})" for s in source.series if s.currency == "USDT"})
    if not in_usdt:
        return []
    if rate is None:
        return [f"note: {', '.join(in_usdt)} quote in USDT and no --usdt-usd was given: left out"]
    return [f"note: {', '.join(in_usdt)} quote in USDT: converted at {number(rate)} USD"]


def split(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def replay_plan(window: str, start: str | None, end: str | None, speed: str,
                venues: str | None) -> ReplayPlan:
    from loanflow.prices.replay import ReplaySource

    try:
        source = ReplaySource.for_window(window, venues=split(venues))
        first, last = source.span()
        begin = parse_time(start) if start else first
        finish = parse_time(end) if end else last
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    if finish < begin:
        raise typer.BadParameter(f"--to {finish:%Y-%m-%dT%H:%MZ} is before --from")
    step = int(source.step().total_seconds())
    try:
        pace = None if speed == "max" else Decimal(speed)
        return ReplayPlan(start=begin, end=finish, step_seconds=step, speed=pace)
    except (InvalidOperation, ValueError) as err:
        raise typer.BadParameter(f"--speed: {err}") from None


async def start_replay(workflow_id: str, spec: MonitorInput, detach: bool,
                       as_json: bool = False) -> dict[str, Any]:
    """Start (or join) the replay; unless detached, follow it to the end. Returns what --json
    prints: the replay's identity and plan, and once done its totals."""
    from temporalio.common import WorkflowIDConflictPolicy

    temporal = await client()
    settings = get_settings()
    handle = await temporal.start_workflow(
        "MarketMonitor", spec, id=workflow_id, task_queue=settings.market_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"market replay {spec.feed.replay.window if spec.feed.replay else ''}",
    )
    plan = spec.replay
    answer: dict[str, Any] = {
        "monitor": workflow_id, "task_queue": settings.market_queue,
        "run_id": handle.result_run_id,
        "window": spec.feed.replay.window if spec.feed.replay else None,
        "from": plan.start if plan else None, "to": plan.end if plan else None,
        "step_seconds": plan.step_seconds if plan else None,
        "speed": plan.speed if plan else None,
        "total_ticks": plan.total_ticks if plan else None, "detached": detach, "done": False}
    if not as_json:
        console.print(f"replay [bold]{workflow_id}[/] on task queue '{settings.market_queue}' "
                      f"(run {handle.result_run_id})")
    if detach:
        return answer
    total = plan.total_ticks if plan else 0
    final = await (wait_done(handle) if as_json else watch(handle, total))
    return {**answer, **totals(final)}


def totals(final: MonitorProgress) -> dict[str, Any]:
    """A finished replay's figures for --json."""
    state = final.state
    return {"done": final.done, "ticks": state.seq, "prices": state.priced,
            "no_price": state.no_price, "disputed": state.disputed,
            "unconfirmed": state.unconfirmed, "signalled": state.signalled,
            "last": {asset: last for asset, last in sorted(state.last.items())}}


async def wait_done(handle: Any) -> MonitorProgress:
    """The replay's progress once it is done, without a bar (--json)."""
    while True:
        progress: MonitorProgress = await handle.query("progress", result_type=MonitorProgress)
        if progress.done:
            return progress
        await asyncio.sleep(0.5)


async def watch(handle: Any, total: int) -> MonitorProgress:
    """A progress bar over the replay until it is done (Ctrl-C leaves it running)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("replaying", total=total)
        try:
            while True:
                progress = await handle.query("progress", result_type=MonitorProgress)
                bar.update(task, completed=progress.state.replay_index,
                           description=describe_progress(progress))
                if progress.done:
                    break
                await asyncio.sleep(0.5)
        except (KeyboardInterrupt, asyncio.CancelledError):
            console.print(f"detached: the replay goes on in Temporal; `loanflow market stop "
                          f"--monitor {handle.id}` ends it")
            raise
    final: MonitorProgress = await handle.query("progress", result_type=MonitorProgress)
    console.print(f"done: {final.state.seq} ticks, {final.state.priced} prices, "
                  f"{final.state.no_price} without a price, {final.state.signalled} loan signals")
    return final


def describe_progress(progress: MonitorProgress) -> str:
    at = f"{progress.replay_at:%Y-%m-%d %H:%M}" if progress.replay_at else "starting"
    prices = " ".join(f"{asset} {usd(last.price)}"
                      for asset, last in sorted(progress.state.last.items()))
    return f"{at} {prices} · signalled {progress.state.signalled}"


# --- manual tick ------------------------------------------------------------------------------


@market_app.command()
def tick(
    asset: str = typer.Argument(..., metavar="ASSET", help="BTC or ETH.", show_default=False),
    quote: list[str] = typer.Option([], "--quote", metavar="VENUE=PRICE",
                                    help="A venue's quote in USD; give one per venue (quorum 2)."),
    monitor: str = typer.Option(LIVE_MONITOR_ID, metavar="WORKFLOW_ID",
                                help="The monitor's workflow id."),
    as_json: AsJson = False,
) -> None:
    """One tick now, with manual quotes (plus the monitor's own sources)."""
    from loanflow.cli.visibility import check_asset

    asset = check_asset(asset)  # an unknown one is one line here, not the monitor's refusal
    quotes = [parse_quote(asset.upper(), text) for text in quote]
    summary = run(manual_tick(monitor, ManualTick(quotes=quotes, assets=[asset.upper()])))
    if as_json:
        print_json(summary)
        return
    print_summary(summary)


def parse_quote(asset: str, text: str) -> Quote:
    from loanflow.money import price_problem

    venue, _, price = text.partition("=")
    try:
        value = Decimal(price)
    except InvalidOperation:
        raise typer.BadParameter(f"--quote {text!r}: expected venue=price, e.g. bitstamp=16000") from None
    if not venue or not value.is_finite() or value <= 0:
        raise typer.BadParameter(f"--quote {text!r}: expected venue=price with a positive price")
    problem = price_problem(asset, value)
    if problem:
        raise typer.BadParameter(f"--quote {text!r}: price {problem}")
    return Quote(venue=venue.strip(), asset=asset, price=value)


async def manual_tick(monitor_id: str, manual: ManualTick) -> TickSummary:
    """The update `tick`, starting a manual-only monitor if none runs under that id."""
    from loanflow.prices import manual as ticks

    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

    settings = get_settings()
    tick = ticks.manual_tick(await client(), manual, monitor_id=monitor_id,
                             task_queue=settings.market_queue)
    # Without a worker on the market's queue the update would wait for ever.
    try:
        return await asyncio.wait_for(tick, settings.cli_answer_seconds)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise MarketCliError(
            f"no worker answered the market monitor within {settings.cli_answer_seconds:g} s: "
            f"start one for task queue '{settings.market_queue}' with `loanflow worker` (or "
            "`loanflow up`)") from None


def print_summary(summary: TickSummary) -> None:
    for asset_tick in summary.ticks:
        if asset_tick.observation is None:
            console.print(f"[bold red]{asset_tick.asset}: NO PRICE[/] - {'; '.join(asset_tick.reasons)}")
        else:
            obs = asset_tick.observation
            console.print(f"[bold]{asset_tick.asset} {usd(obs.price)}[/]"
                          f"{flags(obs, asset_tick.unconfirmed)} from {', '.join(asset_tick.used)} "
                          f"(observation #{obs.observation_id}); previous "
                          f"{usd(asset_tick.previous_price)}")
            for reason in asset_tick.reasons:
                console.print(f"  {reason}")
        for dropped in asset_tick.dropped:
            console.print(f"  dropped {dropped}")
    console.print(f"signalled {summary.signalled} loan(s)")


# --- status -----------------------------------------------------------------------------------


@market_app.command()
def status(as_json: AsJson = False) -> None:
    """The last price of each asset and the monitor's last tick, including a no-price condition."""
    reports = run(market_status())
    if as_json:
        print_json({"assets": reports})
        return
    for report in reports:
        lines = status_lines(report.asset, report.latest, report.last_tick)
        for line in lines + dark_lines(report.no_price_periods):
            console.print(line, soft_wrap=True)


def flags(observation: Any, unconfirmed: bool = False) -> str:
    """' DISPUTED (low .. high ..)' / ' UNCONFIRMED' after a price, or nothing."""
    text = ""
    if observation.disputed:
        text += (f" [bold yellow]DISPUTED[/] (venues {usd(observation.low)} to "
                 f"{usd(observation.high)}: calls act on the lowest, sales wait for agreement)")
    if unconfirmed:
        text += " [bold yellow]UNCONFIRMED[/] (a jump: signalled to no loan until confirmed)"
    return text


@dataclass
class LastTick:
    """The monitor's last tick of an asset, as `market status` shows it."""

    at: datetime
    monitor_id: str
    status: str
    price: Decimal | None
    previous_price: Decimal | None
    reasons: list[str]
    target_count: int
    signalled: int | None
    observation_id: int | None

    @classmethod
    def of(cls, row: Any) -> LastTick | None:
        if row is None:
            return None
        return cls(at=row.at, monitor_id=row.monitor_id, status=row.status, price=row.price,
                   previous_price=row.previous_price, reasons=list(row.reasons or []),
                   target_count=row.target_count or 0, signalled=row.signalled,
                   observation_id=row.observation_id)


@dataclass
class AssetReport:
    """One asset in `market status`: its latest usable price (None: none stored yet), whether
    that is stale, the monitor's last tick and every no-price period."""

    asset: str
    latest: Any
    stale: bool | None
    last_tick: LastTick | None
    no_price_periods: list[Any] = field(default_factory=list)


async def market_status() -> list[AssetReport]:
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from loanflow.db import Database
    from loanflow.money import ASSETS
    from loanflow.prices.periods import no_price_periods
    from loanflow.schema import MarketTick
    from loanflow.store.prices import latest_observation

    db = Database(get_settings().db_url)
    try:
        reports = []
        for asset in ASSETS:
            latest = await latest_observation(db, asset)
            async with db.transaction() as session:
                tick_row = await session.scalar(select(MarketTick).where(MarketTick.asset == asset)
                                                .order_by(MarketTick.id.desc()).limit(1))
            reports.append(AssetReport(asset, latest, is_stale(latest), LastTick.of(tick_row),
                                       await no_price_periods(db, asset)))
        return reports
    except DBAPIError as err:
        raise MarketCliError(f"cannot read the market tables ({db.url}): {err.orig}") from None
    finally:
        await db.dispose()


# A price older than this is stale: no loan acts on it (the default policy's staleness).
STALE_SECONDS = 900


def is_stale(latest: Any) -> bool | None:
    if latest is None:
        return None
    return (datetime.now(timezone.utc) - latest.observed_at).total_seconds() > STALE_SECONDS


def status_lines(asset: str, latest: Any, tick_row: LastTick | None) -> list[str]:
    now = datetime.now(timezone.utc)
    if latest is None:
        lines = [f"[bold]{asset}[/]: no price stored yet"]
    else:
        seconds = int((now - latest.observed_at).total_seconds())
        stale = " [bold red]STALE[/]" if seconds > STALE_SECONDS else ""
        lines = [f"[bold]{asset} {usd(latest.price)}[/]{flags(latest)} observed "
                 f"{latest.observed_at:%Y-%m-%d %H:%M:%S}Z ({seconds}s ago{stale}) from "
                 f"{latest.source}, observation #{latest.observation_id}"]
    if tick_row is None:
        return lines + ["  no monitor tick yet"]
    when = f"{tick_row.at:%Y-%m-%d %H:%M:%S}Z by {tick_row.monitor_id}"
    if tick_row.status == "no_price":
        lines.append(f"  last tick {when}: [bold red]NO PRICE[/]: {'; '.join(tick_row.reasons)}")
    elif tick_row.status == "unconfirmed":
        lines.append(f"  last tick {when}: price {usd(tick_row.price)} [bold yellow]UNCONFIRMED[/]: "
                     f"{'; '.join(tick_row.reasons)}")
    else:
        signalled = "pending" if tick_row.signalled is None else tick_row.signalled
        if not tick_row.target_count:
            signalled = 0
        lines.append(f"  last tick {when}: price {usd(tick_row.price)}, {tick_row.target_count} loan(s) "
                     f"crossed, signalled {signalled}")
    return lines


# How many of an asset's latest no-price periods `market status` lists.
PERIODS_SHOWN = 5


def dark_lines(periods: list[Any]) -> list[str]:
    if not periods:
        return ["  no-price periods: none"]
    shown = periods[-PERIODS_SHOWN:]
    lines = [f"  no-price periods: {len(periods)} ({sum(p.ticks for p in periods)} tick(s))"
             + (f", the latest {len(shown)}:" if len(shown) < len(periods) else ":")]
    for p in shown:
        until = f"{p.until:%Y-%m-%d %H:%M}Z" if p.until else "[bold red]still no price[/]"
        lines.append(f"    {p.start:%Y-%m-%d %H:%M}Z to {until} ({p.ticks} tick(s), "
                     f"{p.monitor_id}): {'; '.join(p.reasons)}")
    return lines


# --- the live monitor -------------------------------------------------------------------------


@market_app.command()
def start(
    interval: int = typer.Option(60, metavar="SECONDS", help="Seconds between ticks."),
    venue: list[str] = typer.Option([], "--venue", metavar="NAME=SHAPE:URL",
                             help="A venue's ticker API; SHAPE is bitstamp or coinbase."),
    assets: str = typer.Option("BTC,ETH", help="Comma-separated assets."),
    as_json: AsJson = False,
) -> None:
    """Start the live monitor: ticks every --interval seconds from the venues' ticker APIs."""
    venues = [parse_venue(text) for text in venue]
    if len(venues) < 2:
        raise typer.BadParameter("give at least two --venue: a single venue is never a price")
    spec = MonitorInput(assets=[a.strip().upper() for a in assets.split(",")],
                        feed=FeedSpec(http=venues), interval_seconds=interval)
    handle_id, run_id = run(start_live(spec))
    if as_json:
        print_json({"monitor": handle_id, "run_id": run_id,
                    "task_queue": get_settings().market_queue,
                    "interval_seconds": spec.interval_seconds, "assets": spec.assets,
                    "venue_names": [v.name for v in venues]})
        return
    console.print(f"started {handle_id} (every {spec.interval_seconds}s)")


def parse_venue(text: str) -> HttpVenue:
    name, _, rest = text.partition("=")
    shape, _, url = rest.partition(":")
    if not (name and shape and url):
        raise typer.BadParameter(f"--venue {text!r}: expected name=shape:base_url")
    try:
        return HttpVenue(name=name, shape=shape, base_url=url)  # type: ignore[arg-type]
    except ValueError as err:
        raise typer.BadParameter(f"--venue {text!r}: {err}") from None


async def start_live(spec: MonitorInput) -> tuple[str, str | None]:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    temporal = await client()
    try:
        handle = await temporal.start_workflow(
            "MarketMonitor", spec, id=LIVE_MONITOR_ID, task_queue=get_settings().market_queue,
            static_summary="live market monitor")
    except WorkflowAlreadyStartedError:
        raise MarketCliError(f"{LIVE_MONITOR_ID} is already running "
                             "(`loanflow market stop` first)") from None
    return handle.id, handle.result_run_id


@market_app.command()
def stop(monitor: str = typer.Option(LIVE_MONITOR_ID, metavar="WORKFLOW_ID",
                                     help="The monitor's workflow id."),
         as_json: AsJson = False) -> None:
    """Ask a monitor (live or replay) to finish its tick and end."""

    async def send() -> None:
        await (await client()).get_workflow_handle(monitor).signal("stop")

    run(send())
    if as_json:
        print_json({"monitor": monitor, "stop_requested": True})
        return
    console.print(f"asked {monitor} to stop")
